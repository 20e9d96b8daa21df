//! Our own tensor type at the engine boundary: a dense, row-major array with a fixed shape.
//! `Tensor` (f32) is what every GSDNet part takes and returns; `TensorI64` carries the token ids
//! and attention mask of the text frontend's encoder. Both are `TensorOf<T>`, one definition.
//!
//! Invariant: `data.len() == shape.iter().product()`. Engines (tract, ONNX Runtime) convert
//! from and to this type inside their backend module only.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum TensorError {
    #[error("shape {shape:?} holds {expected} values, got {got}")]
    Size {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("shape mismatch: expected {expected:?}, got {got:?}")]
    Shape { expected: Vec<usize>, got: Vec<usize> },
}

/// A dense row-major array of `T` values.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorOf<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

/// The f32 tensor of every GSDNet part.
pub type Tensor = TensorOf<f32>;
/// An int64 tensor (token ids, attention masks).
pub type TensorI64 = TensorOf<i64>;

impl<T: Copy + Default> TensorOf<T> {
    /// A zero-filled tensor of `shape`.
    pub fn zeros(shape: &[usize]) -> Self {
        TensorOf {
            shape: shape.to_vec(),
            data: vec![T::default(); shape.iter().product()],
        }
    }

    /// Wraps `data` (row-major) as a tensor of `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<T>) -> Result<Self, TensorError> {
        let expected: usize = shape.iter().product();
        if data.len() != expected {
            return Err(TensorError::Size {
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        Ok(TensorOf {
            shape: shape.to_vec(),
            data,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Copies `src` into `self` without reallocating; shapes must be equal.
    pub fn copy_from(&mut self, src: &TensorOf<T>) -> Result<(), TensorError> {
        self.expect_shape(&src.shape)?;
        self.data.copy_from_slice(&src.data);
        Ok(())
    }

    /// Errors unless the shape is exactly `shape`.
    pub fn expect_shape(&self, shape: &[usize]) -> Result<(), TensorError> {
        if self.shape != shape {
            return Err(TensorError::Shape {
                expected: shape.to_vec(),
                got: self.shape.clone(),
            });
        }
        Ok(())
    }

    /// Gives the tensor `shape` (same rank or not), keeping its buffer: values are kept up to
    /// the new length and zero beyond what was there. Allocates only when the buffer has never
    /// held that many values, so a tensor reshaped between buckets stops allocating once it has
    /// held the largest.
    pub fn set_shape(&mut self, shape: &[usize]) {
        if self.shape != shape {
            self.shape.clear();
            self.shape.extend_from_slice(shape);
            self.data.resize(shape.iter().product(), T::default());
        }
    }
}

impl Tensor {
    /// True when every value is finite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_shape_keeps_the_buffer() {
        let mut t = Tensor::from_vec(&[2, 3], vec![1.0; 6]).unwrap();
        let cap = t.data.capacity();
        t.set_shape(&[1, 2]);
        assert_eq!((t.shape(), t.len()), (&[1, 2][..], 2));
        t.set_shape(&[3, 2]);
        assert_eq!(t.data.capacity(), cap);
        assert_eq!(t.data(), &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn from_vec_checks_size() {
        assert!(Tensor::from_vec(&[2, 3], vec![0.0; 6]).is_ok());
        let err = Tensor::from_vec(&[2, 3], vec![0.0; 5]).unwrap_err();
        assert_eq!(
            err,
            TensorError::Size {
                shape: vec![2, 3],
                expected: 6,
                got: 5
            }
        );
    }

    #[test]
    fn copy_from_rejects_other_shape() {
        let mut a = Tensor::zeros(&[2, 2]);
        assert!(a.copy_from(&Tensor::zeros(&[4])).is_err());
        let b = Tensor::from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        a.copy_from(&b).unwrap();
        assert_eq!(a, b);
    }
}
