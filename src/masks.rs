//! Missing-modality masks of the evaluation protocol (DESIGN.md "Missing masks"): seeded random
//! masks at a missing rate with GCNet's keep-one rule generalised to the model's M modalities,
//! and the fixed availability patterns.
//!
//! An availability row is `[bool; 3]` indexed by `Modality::index` (T, A, V); `true` means
//! observed; a modality the model lacks is always `false`. Draws follow the model's slots, so
//! M = 3 gives the three-modality masks of earlier versions bit for bit.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::modality::Modalities;
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

/// Largest protocol missing rate with `m` modalities: 0.7 for three (GCNet's protocol), 0.5 for
/// two (keep one, drop the other with probability 2r).
pub fn max_rate(m: usize) -> f64 {
    if m >= 3 {
        0.7
    } else {
        0.5
    }
}

/// The protocol's rates 0.0, 0.1, ... up to `max_rate(m)`.
pub fn protocol_rates(m: usize) -> Vec<f64> {
    let top = (10.0 * max_rate(m)).round() as u32;
    (0..=top).map(|i| f64::from(i) / 10.0).collect()
}

/// Seeded mask of a conversation of `n` utterances at missing rate `rate` over the model's
/// modalities: per utterance, uniforms at stride M + 1; `keep = min(floor(M u0), M - 1)` is
/// always observed, each other slot with probability `q = clamp(1 - M / (M - 1) rate, 0, 1)`.
///
/// Invariant: every utterance keeps at least one of the model's modalities.
pub fn random_mask(seed: u64, rate: f64, conv_id: &str, n: usize, mods: &Modalities) -> Vec<Avail> {
    let key = rng::derive(seed, &[1, rate_millis(rate), rng::fnv1a64(conv_id)]);
    let slots: Vec<usize> = mods.iter().map(|m| m.index()).collect();
    let mm = slots.len();
    let q = (1.0 - mm as f64 / (mm - 1) as f64 * rate).clamp(0.0, 1.0);
    (0..n)
        .map(|i| {
            let base = ((mm + 1) * i) as u64;
            let keep = ((mm as f64 * rng::uniform(key, base)).floor() as usize).min(mm - 1);
            let mut avail = [false; 3];
            for (s, &m) in slots.iter().enumerate() {
                avail[m] = s == keep || rng::uniform(key, base + 1 + s as u64) < q;
            }
            avail
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

    /// Every pattern over the model's modalities, in `ALL` order (two modalities T, A: T, A, TA).
    pub fn all_for(mods: &Modalities) -> Vec<Pattern> {
        Pattern::ALL.into_iter().filter(|p| p.fits(mods)).collect()
    }

    /// Whether every modality of the pattern is one the model has.
    pub fn fits(self, mods: &Modalities) -> bool {
        crate::modality::Modality::ALL
            .into_iter()
            .all(|m| !self.0[m.index()] || mods.has(m))
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

    fn tav() -> Modalities {
        Modalities::new([100, 73, 100]).unwrap()
    }

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
        let m = random_mask(0, 0.0, "c", 50, &tav());
        assert!(m.iter().all(|a| a.iter().all(|&x| x)));
    }

    #[test]
    fn every_utterance_keeps_one_and_rate_is_met() {
        let n = 20_000;
        for &r in &[0.1, 0.3, 0.5] {
            let m = random_mask(3, r, "conv", n, &tav());
            assert!(m.iter().all(|a| a.iter().any(|&x| x)));
            let missing = m.iter().flatten().filter(|&&x| !x).count() as f64 / (3 * n) as f64;
            assert!((missing - r).abs() < 0.01, "rate {r}: measured {missing}");
        }
        let m = random_mask(3, 0.7, "conv", 1000, &tav());
        assert!(m.iter().all(|a| a.iter().filter(|&&x| x).count() == 1));
    }

    #[test]
    fn masks_depend_on_seed_and_conversation() {
        assert_ne!(
            random_mask(0, 0.5, "a", 30, &tav()),
            random_mask(1, 0.5, "a", 30, &tav())
        );
        assert_ne!(
            random_mask(0, 0.5, "a", 30, &tav()),
            random_mask(0, 0.5, "b", 30, &tav())
        );
        assert_eq!(
            random_mask(0, 0.5, "a", 30, &tav()),
            random_mask(0, 0.5, "a", 30, &tav())
        );
    }

    #[test]
    fn two_modalities_keep_one_and_meet_the_rate() {
        let ta = Modalities::new([300, 47, 0]).unwrap();
        let n = 20_000;
        for &r in &[0.1, 0.3, 0.5] {
            let m = random_mask(5, r, "Ses04F_impro01", n, &ta);
            assert!(m.iter().all(|a| (a[0] || a[1]) && !a[2]));
            let missing = m.iter().map(|a| usize::from(!a[0]) + usize::from(!a[1])).sum::<usize>();
            let frac = missing as f64 / (2 * n) as f64;
            assert!((frac - r).abs() < 0.01, "rate {r}: measured {frac}");
        }
        assert!(random_mask(5, 0.5, "c", 1000, &ta).iter().all(|a| a[0] != a[1]));
        assert_eq!(protocol_rates(2), vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5]);
        assert_eq!(protocol_rates(3).len(), 8);
        let pats: Vec<String> = Pattern::all_for(&ta).iter().map(|p| p.to_string()).collect();
        assert_eq!(pats, ["T", "A", "TA"]);
    }
}
