//! What a call publishes and exposes: per-utterance results of each window (calibrated
//! probabilities, label, regression, completed raw features; means over completion samples)
//! and the padded window-0 intermediates golden tests read.

use super::batch::window_of;
use super::{Intermediates, Pipeline, UtteranceOutput, Window, WindowOutput};
use crate::calibration::{argmax, softmax_tempered};
use crate::capacity::MAX_CLASSES;
use crate::modality::Modality;
use crate::multisample::SampleMean;
use crate::tensor::Tensor;

impl Pipeline {
    /// Per-utterance results of window `b` into `out` (its vectors reused): sample 0's, and
    /// with S > 1 samples of a sampled window the mean of the S samples' probabilities (f64
    /// sums in sample order) and regressions, the label their argmax.
    pub(super) fn outputs(&self, b: usize, window: &Window, out: &mut WindowOutput) {
        let norm = &self.model.manifest.norm;
        let n = self.n;
        let logits = self.batch.head[0].data();
        let reg = self.batch.head.get(1).map(Tensor::data);
        let k = self.model.manifest.model.classes.len();
        let len = window.utterances.len();
        out.sampled = self.sampled[b];
        out.utterances.truncate(len);
        out.utterances.resize_with(len, UtteranceOutput::default);
        for (i, (utt, o)) in window.utterances.iter().zip(out.utterances.iter_mut()).enumerate() {
            let bits: usize = utt
                .features
                .iter()
                .enumerate()
                .filter(|(_, f)| f.is_some())
                .map(|(m, _)| 1 << m)
                .sum();
            let temp = self.temperatures[bits];
            o.probs.resize(k, 0.0);
            let at = |row: usize| (row * n + i) * k;
            softmax_tempered(&logits[at(b)..at(b) + k], temp, &mut o.probs);
            o.regression = reg.map(|r| r[b * n + i]);
            if self.sampled[b] && self.samples > 1 {
                self.sample_mean(b, i, temp, o);
            }
            o.label = argmax(&o.probs);
            for m in Modality::ALL {
                o.imputed[m.index()] = self.mods.has(m) && utt.features[m.index()].is_none();
            }
            for f in o.features.iter_mut() {
                f.clear();
            }
            for (slot, modality) in self.slots.iter().enumerate() {
                let m = modality.index();
                let feat = &mut o.features[m];
                match utt.features[m] {
                    Some(f) => feat.extend_from_slice(f),
                    None => {
                        let dim = self.dims[slot];
                        let row = &self.batch.recon[slot].data()[(b * n + i) * dim..(b * n + i + 1) * dim];
                        feat.extend((0..dim).map(|c| norm.destandardise(m, c, row[c])));
                    }
                }
            }
        }
    }

    /// Utterance `i` of window `b`: `o.probs` (sample 0's) and `o.regression` become the means
    /// over the window's S sample rows (in sample order: rows are).
    fn sample_mean(&self, b: usize, i: usize, temp: f32, o: &mut UtteranceOutput) {
        let (n, k) = (self.n, o.probs.len());
        let logits = self.batch.head[0].data();
        let reg = self.batch.head.get(1).map(Tensor::data);
        let mut mean = SampleMean::default();
        let mut p = [0.0f32; MAX_CLASSES];
        for (row, _) in self.rows.iter().enumerate().filter(|(_, &(w, _))| w == b) {
            let at = (row * n + i) * k;
            softmax_tempered(&logits[at..at + k], temp, &mut p[..k]);
            mean.add(&p[..k], reg.map(|r| r[row * n + i]));
        }
        mean.finish(&mut o.probs, &mut o.regression);
    }

    /// Window 0 of the last call, padded to the model's W with batch 1 (owned copies; for
    /// golden tests and benchmarks, not the hot path).
    pub fn intermediates(&self) -> Intermediates<'_> {
        let (w, bt) = (self.model.manifest.dims.window, &self.batch);
        let one = |t: &Tensor, axes: &[usize]| window_of(t, 0, axes, w);
        Intermediates {
            inputs: bt.inputs.iter().map(|t| one(t, &[1])).collect(),
            avail: one(&bt.avail, &[1]),
            node_mask: one(&bt.node_mask, &[1]),
            h: one(&bt.h[0], &[2]),
            cond: one(&bt.cond, &[2]),
            spectral: &self.spectra[0],
            lam_obs: one(&bt.lam_obs, &[]),
            x0: one(&bt.x0, &[2]),
            lam0: one(&bt.lam0, &[]),
            adj_fusion: one(&bt.adj_fusion, &[2, 3]),
            recon: bt.recon.iter().map(|t| one(t, &[1])).collect(),
            logits: one(&bt.head[0], &[1]),
            reg: bt.head.get(1).map(|t| one(t, &[1])),
            window: self.n,
            rows: self.rows.len(),
        }
    }
}
