//! `BoundedVec<T, N>`: a heap vector of at most `N` elements for wire messages whose bound is
//! large (a feature vector holds up to 2048 values, a result up to 64 probabilities).
//!
//! Its postcard form is a plain sequence (varint length, then the elements), byte for byte what
//! `heapless::Vec<T, N>` would write, but it is sized to its data: a 73-value vector costs 292
//! bytes, not the 8 KiB of a fixed-capacity buffer, so a `Message` stays small in every queue.
//! Invariant: never more than `N` elements; decoding refuses a longer sequence from its length
//! prefix, before reading (or allocating) a single element.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A vector longer than the bound.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("{len} elements exceed the capacity of {cap}")]
pub struct CapacityError {
    pub len: usize,
    pub cap: usize,
}

/// At most `N` elements of `T`, on the heap.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BoundedVec<T, const N: usize>(Vec<T>);

impl<T, const N: usize> BoundedVec<T, N> {
    /// The bound `N`.
    pub const CAPACITY: usize = N;

    pub fn new() -> Self {
        BoundedVec(Vec::new())
    }

    /// Takes `v` when it holds at most `N` elements.
    pub fn from_vec(v: Vec<T>) -> Result<Self, CapacityError> {
        if v.len() > N {
            return Err(CapacityError { len: v.len(), cap: N });
        }
        Ok(BoundedVec(v))
    }

    pub fn into_vec(self) -> Vec<T> {
        self.0
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// Appends `x`; gives it back when the vector is full.
    pub fn push(&mut self, x: T) -> Result<(), T> {
        if self.0.len() == N {
            return Err(x);
        }
        self.0.push(x);
        Ok(())
    }

    /// Removes the last element.
    pub fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }

    /// Keeps the first `len` elements.
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

impl<T: Clone, const N: usize> BoundedVec<T, N> {
    /// Copies `s` when it holds at most `N` elements.
    pub fn from_slice(s: &[T]) -> Result<Self, CapacityError> {
        if s.len() > N {
            return Err(CapacityError { len: s.len(), cap: N });
        }
        Ok(BoundedVec(s.to_vec()))
    }
}

impl<T, const N: usize> Deref for BoundedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

/// Elements may change, the length may not grow past `N` (there is no `Vec` access).
impl<T, const N: usize> DerefMut for BoundedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T, const N: usize> TryFrom<Vec<T>> for BoundedVec<T, N> {
    type Error = CapacityError;
    fn try_from(v: Vec<T>) -> Result<Self, CapacityError> {
        BoundedVec::from_vec(v)
    }
}

impl<T, const N: usize> From<BoundedVec<T, N>> for Vec<T> {
    fn from(v: BoundedVec<T, N>) -> Vec<T> {
        v.0
    }
}

impl<'a, T, const N: usize> IntoIterator for &'a BoundedVec<T, N> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T, const N: usize> IntoIterator for BoundedVec<T, N> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<T: PartialEq, const N: usize> PartialEq<[T]> for BoundedVec<T, N> {
    fn eq(&self, other: &[T]) -> bool {
        self.0 == other
    }
}

impl<T: Serialize, const N: usize> Serialize for BoundedVec<T, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(&self.0)
    }
}

struct BoundedVisitor<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for BoundedVisitor<T, N> {
    type Value = BoundedVec<T, N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {N} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let hint = seq.size_hint().unwrap_or(0);
        if hint > N {
            return Err(A::Error::invalid_length(hint, &self));
        }
        let mut v = Vec::with_capacity(hint);
        while let Some(x) = seq.next_element()? {
            if v.len() == N {
                return Err(A::Error::invalid_length(N + 1, &self));
            }
            v.push(x);
        }
        Ok(BoundedVec(v))
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for BoundedVec<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(BoundedVisitor::<T, N>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_as_heapless_and_bounded_on_decode() {
        let v: BoundedVec<f32, 4> = BoundedVec::from_slice(&[1.0, -2.0]).unwrap();
        let h: heapless::Vec<f32, 4> = heapless::Vec::from_slice(&[1.0, -2.0]).unwrap();
        let bytes = postcard::to_stdvec(&v).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&h).unwrap());
        assert_eq!(postcard::from_bytes::<BoundedVec<f32, 4>>(&bytes).unwrap(), v);
        let five = postcard::to_stdvec(&vec![0.5f32; 5]).unwrap();
        assert!(postcard::from_bytes::<BoundedVec<f32, 4>>(&five).is_err());
        assert_eq!(
            BoundedVec::<u8, 2>::from_slice(&[1, 2, 3]),
            Err(CapacityError { len: 3, cap: 2 })
        );
        // A huge length prefix is refused before anything is allocated.
        assert!(postcard::from_bytes::<BoundedVec<f32, 4>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
