//! Modality names and the modality layout of a model (DESIGN.md "Modalities").
//!
//! Names come from a fixed set (text, audio, visual; letters T, A, V; that canonical order).
//! A model has M >= 2 of them with its own feature sizes (manifest `[modalities]`); tensors hold
//! one slot per present modality, in canonical order restricted to the model's. Everything
//! outside the tensors (availability rows, features of an utterance) is indexed by the name
//! (`Modality::index`), and a modality the model lacks is simply never available.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::capacity::MAX_FEATURE_SIZE;

/// Modalities in canonical order; the wire value is the variant index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Modality {
    Text,
    Audio,
    Visual,
}

impl Modality {
    pub const ALL: [Modality; 3] = [Modality::Text, Modality::Audio, Modality::Visual];

    /// Index 0 = text, 1 = audio, 2 = visual.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Pattern-string letter (DESIGN.md): T, A or V.
    pub fn letter(self) -> char {
        ['T', 'A', 'V'][self.index()]
    }

    /// Lower-case name, as in manifests, file names and part I/O: text, audio, visual.
    pub fn name(self) -> &'static str {
        ["text", "audio", "visual"][self.index()]
    }

    /// Availability bit of the name (T = 1, A = 2, V = 4), independent of any model's slots.
    pub fn bit(self) -> u8 {
        1 << self.index()
    }

    /// The modality called `name` (text, audio, visual).
    pub fn from_name(name: &str) -> Option<Modality> {
        Modality::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The modalities of a model and their feature sizes. Invariant: at least two present, every
/// present size in 1..=`MAX_FEATURE_SIZE`, absent ones have size 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modalities {
    sizes: [usize; 3],
}

impl Modalities {
    /// From sizes by name (0 = absent); `None` unless at least two are present and every
    /// present size is within 1..=`MAX_FEATURE_SIZE`.
    pub fn new(sizes: [usize; 3]) -> Option<Modalities> {
        let present = sizes.iter().filter(|&&s| s > 0).count();
        (present >= 2 && sizes.iter().all(|&s| s <= MAX_FEATURE_SIZE)).then_some(Modalities { sizes })
    }

    /// Number of modalities M (tensor slots).
    pub fn count(&self) -> usize {
        self.sizes.iter().filter(|&&s| s > 0).count()
    }

    /// Whether the model has `m`.
    pub fn has(&self, m: Modality) -> bool {
        self.sizes[m.index()] > 0
    }

    /// Feature size of `m`, `None` when the model lacks it.
    pub fn size(&self, m: Modality) -> Option<usize> {
        Some(self.sizes[m.index()]).filter(|&s| s > 0)
    }

    /// Sizes by name, 0 for absent modalities.
    pub fn sizes(&self) -> [usize; 3] {
        self.sizes
    }

    /// Tensor slot of `m`, `None` when the model lacks it.
    pub fn slot(&self, m: Modality) -> Option<usize> {
        self.has(m)
            .then(|| Modality::ALL[..m.index()].iter().filter(|&&o| self.has(o)).count())
    }

    /// Present modalities in slot order.
    pub fn iter(&self) -> impl Iterator<Item = Modality> + '_ {
        Modality::ALL.into_iter().filter(|&m| self.has(m))
    }

    /// Letters of the present modalities in slot order, e.g. "TA".
    pub fn letters(&self) -> String {
        self.iter().map(Modality::letter).collect()
    }

    /// Availability bits (T = 1, A = 2, V = 4) of every present modality.
    pub fn all_bits(&self) -> u8 {
        self.iter().map(Modality::bit).sum()
    }
}

impl fmt::Display for Modalities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.iter().map(|m| format!("{m} {}", self.sizes[m.index()])).collect();
        f.write_str(&items.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_canonical_order() {
        let ta = Modalities::new([300, 47, 0]).unwrap();
        assert_eq!(ta.count(), 2);
        assert_eq!(ta.slot(Modality::Text), Some(0));
        assert_eq!(ta.slot(Modality::Audio), Some(1));
        assert_eq!(ta.slot(Modality::Visual), None);
        assert_eq!(ta.letters(), "TA");
        let av = Modalities::new([0, 73, 100]).unwrap();
        assert_eq!(av.slot(Modality::Audio), Some(0));
        assert_eq!(av.slot(Modality::Visual), Some(1));
        assert_eq!(av.all_bits(), 6);
        let tav = Modalities::new([100, 73, 100]).unwrap();
        assert_eq!(tav.slot(Modality::Visual), Some(2));
        assert_eq!(tav.to_string(), "text 100, audio 73, visual 100");
    }

    #[test]
    fn rejects_fewer_than_two_or_oversized() {
        assert!(Modalities::new([100, 0, 0]).is_none());
        assert!(Modalities::new([0, 0, 0]).is_none());
        assert!(Modalities::new([MAX_FEATURE_SIZE + 1, 10, 0]).is_none());
        assert!(Modalities::new([MAX_FEATURE_SIZE, 1024, 0]).is_some());
    }

    #[test]
    fn names_round_trip() {
        for m in Modality::ALL {
            assert_eq!(Modality::from_name(m.name()), Some(m));
        }
        assert_eq!(Modality::from_name("depth"), None);
    }
}
