//! Multi-sample completion (DESIGN.md "Multi-sample completion"): S, and the mean of an
//! utterance's results over the samples.
//!
//! The pipeline runs the S completions of a window as rows of one batch (sample s drawing from
//! `diffusion::sample_key(K, s)`), fuses each, and adds each sample's published probabilities
//! (after the calibration temperature) and regression to a `SampleMean` in sample order
//! s = 0, 1, ..., S-1; the label is the argmax of the mean (the first maximum on ties, as for
//! one sample). A `SampleMean` lives on the stack: averaging allocates nothing.

use thiserror::Error;

use crate::capacity::{MAX_CLASSES, MAX_SAMPLES};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SamplesError {
    #[error("samples must be 1..={MAX_SAMPLES}, got {0}")]
    Range(usize),
}

/// Checks S against 1..=`MAX_SAMPLES`.
pub fn check_samples(s: usize) -> Result<usize, SamplesError> {
    if (1..=MAX_SAMPLES).contains(&s) {
        Ok(s)
    } else {
        Err(SamplesError::Range(s))
    }
}

/// The mean over completion samples of one utterance's probabilities and regression:
/// `p = f32(sum_s f64(p_s) / S)` and the same for the regression, summed in the order samples
/// are added (the pipeline adds them in sample order).
#[derive(Debug, Clone)]
pub struct SampleMean {
    sums: [f64; MAX_CLASSES],
    reg: f64,
    count: usize,
}

impl Default for SampleMean {
    fn default() -> Self {
        SampleMean {
            sums: [0.0; MAX_CLASSES],
            reg: 0.0,
            count: 0,
        }
    }
}

impl SampleMean {
    /// Adds one sample's K probabilities (K <= MAX_CLASSES) and regression.
    pub fn add(&mut self, probs: &[f32], reg: Option<f32>) {
        for (s, &p) in self.sums.iter_mut().zip(probs) {
            *s += f64::from(p);
        }
        self.reg += reg.map_or(0.0, f64::from);
        self.count += 1;
    }

    /// Writes the means into `probs` (its K entries) and `reg` (kept absent when absent).
    pub fn finish(&self, probs: &mut [f32], reg: &mut Option<f32>) {
        let count = self.count.max(1) as f64;
        for (p, s) in probs.iter_mut().zip(&self.sums) {
            *p = (s / count) as f32;
        }
        *reg = reg.map(|_| (self.reg / count) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_samples_by_hand() {
        // Utterance 0 flips from class 0 to class 1 on average; utterance 1 ties exactly (the
        // caller's argmax takes the first maximum).
        let mut a = SampleMean::default();
        for (p, r) in [([0.625, 0.375], 0.0), ([0.25, 0.75], 1.0), ([0.5, 0.5], 2.0)] {
            a.add(&p, Some(r));
        }
        let (mut p, mut r) = ([0.0f32; 2], Some(0.0));
        a.finish(&mut p, &mut r);
        assert_eq!(p, [(1.375f64 / 3.0) as f32, (1.625f64 / 3.0) as f32]);
        assert_eq!(r, Some(1.0));
        let mut b = SampleMean::default();
        for (p, r) in [([0.5, 0.5], 0.5), ([0.75, 0.25], -2.0), ([0.25, 0.75], 0.0)] {
            b.add(&p, Some(r));
        }
        b.finish(&mut p, &mut r);
        assert_eq!((p, r), ([0.5, 0.5], Some(-0.5)));
    }

    #[test]
    fn one_sample_is_unchanged_and_regression_may_be_absent() {
        let mut m = SampleMean::default();
        m.add(&[0.1, 0.9], None);
        let (mut p, mut r) = ([0.0f32; 2], None);
        m.finish(&mut p, &mut r);
        assert_eq!((p, r), ([0.1, 0.9], None));
    }

    #[test]
    fn sample_counts_are_checked() {
        assert_eq!(check_samples(0), Err(SamplesError::Range(0)));
        assert_eq!(check_samples(65), Err(SamplesError::Range(65)));
        assert_eq!(check_samples(64), Ok(64));
    }
}
