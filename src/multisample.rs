//! Multi-sample completion (DESIGN.md "Multi-sample completion"): the per-sample results of one
//! window and their mean.
//!
//! The pipeline runs S completions of a window one after another (sample s drawing from
//! `diffusion::sample_key(K, s)`), fuses each, and hands each sample's published probabilities
//! (after the calibration temperature) and regression to `SampleMean::record`. `finish` writes
//! the mean into the window's output: `p = f32(sum_s f64(p_s) / S)` and the same for the
//! regression, summed in sample order s = 0, 1, ..., S-1 whatever order the samples ran in;
//! the label is the argmax of the mean (the first maximum on ties, as for one sample).
//!
//! Invariant: the buffers hold `samples x window` entries, sized in `new` and never resized,
//! so recording and averaging allocate nothing.

use thiserror::Error;

use crate::pipeline::WindowOutput;

/// Largest S a manifest, a board profile or `--samples` may ask for.
pub const MAX_SAMPLES: usize = 64;

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

/// Probabilities (`[S][W][K]`) and regression (`[S][W]`) of every sample of one window,
/// row-major.
#[derive(Debug, Clone)]
pub struct SampleMean {
    samples: usize,
    window: usize,
    classes: usize,
    probs: Vec<f32>,
    reg: Vec<f32>,
}

impl SampleMean {
    /// Buffers for `samples` samples of windows of up to `window` utterances and `classes`
    /// classes.
    pub fn new(samples: usize, window: usize, classes: usize) -> Result<SampleMean, SamplesError> {
        let samples = check_samples(samples)?;
        Ok(SampleMean {
            samples,
            window,
            classes,
            probs: vec![0.0; samples * window * classes],
            reg: vec![0.0; samples * window],
        })
    }

    /// S.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Stores sample `s`'s probabilities and regression from `out` (its first `window`
    /// utterances; a missing regression is stored as NaN and stays absent in `finish`).
    pub fn record(&mut self, s: usize, out: &WindowOutput) {
        debug_assert!(s < self.samples && out.utterances.len() <= self.window);
        let (base, k) = (s * self.window, self.classes);
        for (i, u) in out.utterances.iter().take(self.window).enumerate() {
            let at = (base + i) * k;
            self.probs[at..at + k].copy_from_slice(&u.probs[..k]);
            self.reg[base + i] = u.regression.unwrap_or(f32::NAN);
        }
    }

    /// Overwrites the probabilities, labels and regressions of `out` with the mean over the S
    /// recorded samples (every sample recorded for `out`'s utterances beforehand).
    pub fn finish(&self, out: &mut WindowOutput) {
        let (n, k) = (out.utterances.len().min(self.window), self.classes);
        let count = self.samples as f64;
        for (i, u) in out.utterances.iter_mut().take(n).enumerate() {
            for (c, p) in u.probs.iter_mut().enumerate().take(k) {
                let sum: f64 = (0..self.samples)
                    .map(|s| f64::from(self.probs[(s * self.window + i) * k + c]))
                    .sum();
                *p = (sum / count) as f32;
            }
            let r: f64 = (0..self.samples).map(|s| f64::from(self.reg[s * self.window + i])).sum();
            u.label = crate::calibration::argmax(&u.probs);
            u.regression = u.regression.map(|_| (r / count) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::UtteranceOutput;

    fn window(probs: &[[f32; 2]], reg: &[f32]) -> WindowOutput {
        WindowOutput {
            utterances: probs
                .iter()
                .zip(reg)
                .map(|(&p, &r)| UtteranceOutput {
                    probs: p.to_vec(),
                    label: usize::from(p[1] > p[0]),
                    regression: Some(r),
                    ..UtteranceOutput::default()
                })
                .collect(),
            sampled: true,
        }
    }

    #[test]
    fn mean_of_samples_by_hand() {
        let mut m = SampleMean::new(3, 4, 2).unwrap();
        // Two utterances; utterance 0 flips from class 0 to class 1 on average, utterance 1
        // ties exactly (the first maximum, class 0, wins).
        m.record(1, &window(&[[0.25, 0.75], [0.75, 0.25]], &[1.0, -2.0]));
        m.record(2, &window(&[[0.5, 0.5], [0.25, 0.75]], &[2.0, 0.0]));
        let mut out = window(&[[0.625, 0.375], [0.5, 0.5]], &[0.0, 0.5]);
        m.record(0, &out);
        m.finish(&mut out);
        let u = &out.utterances;
        assert_eq!(u[0].probs, [(1.375f64 / 3.0) as f32, (1.625f64 / 3.0) as f32]);
        assert_eq!(u[0].label, 1);
        assert_eq!(u[0].regression, Some(1.0));
        assert_eq!(u[1].probs, [0.5, 0.5]);
        assert_eq!(u[1].label, 0);
        assert_eq!(u[1].regression, Some(-0.5));
    }

    #[test]
    fn one_sample_is_unchanged_and_regression_may_be_absent() {
        let mut m = SampleMean::new(1, 2, 2).unwrap();
        let mut out = window(&[[0.1, 0.9], [0.7, 0.3]], &[0.3, 0.4]);
        out.utterances[1].regression = None;
        let before = out.clone();
        m.record(0, &out);
        m.finish(&mut out);
        assert_eq!(out, before);
    }

    #[test]
    fn sample_counts_are_checked() {
        assert_eq!(check_samples(0), Err(SamplesError::Range(0)));
        assert_eq!(check_samples(65), Err(SamplesError::Range(65)));
        assert_eq!(check_samples(64), Ok(64));
        assert!(SampleMean::new(0, 8, 2).is_err());
    }
}
