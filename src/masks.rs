//! Missing-modality masks of the evaluation protocol (DESIGN.md "Missing masks"): seeded random
//! masks at a missing rate with GCNet's keep-one rule, and the fixed availability patterns.
//!
//! An availability row is `[bool; 3]` in T, A, V order; `true` means observed.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::rng;

/// Availability of one utterance, T, A, V order.
pub type Avail = [bool; 3];

#[derive(Debug, Error, PartialEq)]
pub enum MaskError {
    #[error("missing rate {0} is outside [0, 1]")]
    Rate(f64),
    #[error("pattern `{0}` is not a non-empty combination of T, A, V in that order (e.g. T, AV, TAV)")]
    Pattern(String),
}

/// `round(1000 * rate)`, the rate's label in stream keys.
pub fn rate_millis(rate: f64) -> u64 {
    (1000.0 * rate).round() as u64
}

/// Checks a missing rate.
pub fn check_rate(rate: f64) -> Result<f64, MaskError> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(MaskError::Rate(rate))
    }
}

/// Seeded mask of a conversation of `n` utterances at missing rate `rate`.
///
/// Invariant: every utterance keeps at least one modality.
pub fn random_mask(seed: u64, rate: f64, conv_id: &str, n: usize) -> Vec<Avail> {
    let key = rng::derive(seed, &[1, rate_millis(rate), rng::fnv1a64(conv_id)]);
    let q = (1.0 - 1.5 * rate).clamp(0.0, 1.0);
    (0..n)
        .map(|i| {
            let base = 4 * i as u64;
            let keep = ((3.0 * rng::uniform(key, base)).floor() as usize).min(2);
            std::array::from_fn(|m| m == keep || rng::uniform(key, base + 1 + m as u64) < q)
        })
        .collect()
}

/// A fixed availability pattern: the set of observed modalities, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pattern(Avail);

impl Pattern {
    /// Every pattern in the order T, A, V, TA, TV, AV, TAV.
    pub const ALL: [Pattern; 7] = [
        Pattern([true, false, false]),
        Pattern([false, true, false]),
        Pattern([false, false, true]),
        Pattern([true, true, false]),
        Pattern([true, false, true]),
        Pattern([false, true, true]),
        Pattern([true, true, true]),
    ];

    pub fn avail(self) -> Avail {
        self.0
    }

    /// T=1, A=2, V=4.
    pub fn bits(self) -> u64 {
        self.0
            .iter()
            .enumerate()
            .map(|(m, &a)| if a { 1 << m } else { 0 })
            .sum()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (m, c) in ['T', 'A', 'V'].iter().enumerate() {
            if self.0[m] {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Pattern {
    type Err = MaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MaskError::Pattern(s.to_string());
        let mut avail = [false; 3];
        let mut last: Option<usize> = None;
        for c in s.trim().chars() {
            let m = match c.to_ascii_uppercase() {
                'T' => 0,
                'A' => 1,
                'V' => 2,
                _ => return Err(bad()),
            };
            if last.is_some_and(|l| l >= m) {
                return Err(bad());
            }
            avail[m] = true;
            last = Some(m);
        }
        if last.is_none() {
            return Err(bad());
        }
        Ok(Pattern(avail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_round_trip() {
        for p in Pattern::ALL {
            assert_eq!(p.to_string().parse::<Pattern>().unwrap(), p);
        }
        assert_eq!("TA".parse::<Pattern>().unwrap().bits(), 3);
        assert_eq!("TAV".parse::<Pattern>().unwrap().bits(), 7);
        for bad in ["", "X", "AT", "TT", "TAVV"] {
            assert!(bad.parse::<Pattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_zero_keeps_everything() {
        let m = random_mask(0, 0.0, "c", 50);
        assert!(m.iter().all(|a| a.iter().all(|&x| x)));
    }

    #[test]
    fn every_utterance_keeps_one_and_rate_is_met() {
        let n = 20_000;
        for &r in &[0.1, 0.3, 0.5] {
            let m = random_mask(3, r, "conv", n);
            assert!(m.iter().all(|a| a.iter().any(|&x| x)));
            let missing = m.iter().flatten().filter(|&&x| !x).count() as f64 / (3 * n) as f64;
            assert!((missing - r).abs() < 0.01, "rate {r}: measured {missing}");
        }
        let m = random_mask(3, 0.7, "conv", 1000);
        assert!(m.iter().all(|a| a.iter().filter(|&&x| x).count() == 1));
    }

    #[test]
    fn masks_depend_on_seed_and_conversation() {
        assert_ne!(random_mask(0, 0.5, "a", 30), random_mask(1, 0.5, "a", 30));
        assert_ne!(random_mask(0, 0.5, "a", 30), random_mask(0, 0.5, "b", 30));
        assert_eq!(random_mask(0, 0.5, "a", 30), random_mask(0, 0.5, "a", 30));
    }
}
