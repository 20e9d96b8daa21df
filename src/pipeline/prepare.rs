//! A call's window inputs: validation (`check`), standardised and masked encoder inputs with
//! availability and node masks (`prepare`), and each window's condition, graph and spectra
//! (`condition`).

use super::batch::Sizes;
use super::{BatchItem, Pipeline, PipelineError, Window};
use crate::modality::Modality;
use crate::spectral::Spectral;

impl Pipeline {
    /// Whether `window` can run: 1..=W utterances, only the model's modalities, each of its
    /// size and finite.
    pub fn check(&self, window: &Window) -> Result<(), PipelineError> {
        let w = self.model.manifest.dims.window;
        let n = window.utterances.len();
        if n == 0 || n > w {
            return Err(PipelineError::WindowSize { n, w });
        }
        for (index, utt) in window.utterances.iter().enumerate() {
            for (m, f) in Modality::ALL.into_iter().zip(utt.features.iter()) {
                let Some(f) = f else { continue };
                let modality = m.name();
                let Some(want) = self.mods.size(m) else {
                    let has = self.mods.letters();
                    return Err(PipelineError::NoSuchModality { index, modality, has });
                };
                if f.len() != want {
                    return Err(PipelineError::FeatureSize {
                        index,
                        modality,
                        got: f.len(),
                        want,
                    });
                }
                if !f.iter().all(|v| v.is_finite()) {
                    return Err(PipelineError::NonFinite { index, modality });
                }
            }
        }
        Ok(())
    }

    /// Standardised, masked encoder inputs of every window (`Normalisation::standardise`:
    /// finite, |z| <= Z_CLIP whatever the finite raw input); `zero_fill` puts standardised raw
    /// zeros at missing entries of valid rows instead of 0 (the mean).
    pub(super) fn prepare(&mut self, items: &[BatchItem<'_, '_>], zero_fill: bool) {
        let (n, mm) = (self.n, self.slots.len());
        let man = &self.model.manifest;
        let sizes = Sizes {
            m: mm,
            dims: &self.dims,
            d: man.dims.latent,
            k: man.dims.k,
            classes: man.model.classes.len(),
            reg: man.model.has_regression,
        };
        self.batch.shape_windows(sizes, items.len(), n);
        let norm = &self.model.manifest.norm;
        for (b, it) in items.iter().enumerate() {
            for (slot, modality) in self.slots.iter().enumerate() {
                let (m, dim) = (modality.index(), self.dims[slot]);
                let buf = self.batch.inputs[slot].data_mut();
                for (i, utt) in it.window.utterances.iter().enumerate() {
                    let row = &mut buf[(b * n + i) * dim..(b * n + i + 1) * dim];
                    match utt.features[m] {
                        Some(f) => {
                            for c in 0..dim {
                                row[c] = norm.standardise(m, c, f[c]);
                            }
                            self.batch.avail.data_mut()[(b * n + i) * mm + slot] = 1.0;
                        }
                        None if zero_fill => (0..dim).for_each(|c| row[c] = norm.standardise(m, c, 0.0)),
                        None => {}
                    }
                }
            }
            self.batch.node_mask.data_mut()[b * n..b * n + it.window.utterances.len()].fill(1.0);
        }
    }

    /// Window `b`'s `cond`, graph, `u` and `lam_obs`.
    pub(super) fn condition(&mut self, b: usize, window: &Window) -> Result<(), PipelineError> {
        let (mm, n, d, k) = (self.slots.len(), self.n, self.scratch.len(), self.model.manifest.dims.k);
        let per = mm * n * d;
        let (h, avail, mask) = (
            self.batch.h[0].data(),
            self.batch.avail.data(),
            self.batch.node_mask.data(),
        );
        let cond = &mut self.batch.cond.data_mut()[b * per..(b + 1) * per];
        for m in 0..mm {
            for i in 0..n {
                let keep = avail[(b * n + i) * mm + m] * mask[b * n + i];
                let row = (m * n + i) * d;
                for j in row..row + d {
                    cond[j] = h[b * per + j] * keep;
                }
            }
        }
        if self.spectra.len() <= b {
            let dm = self.model.manifest.dims;
            self.spectra.resize_with(b + 1, || Spectral::new(dm.window, dm.k));
        }
        self.speakers.clear();
        self.speakers.extend(window.utterances.iter().map(|u| u.speaker));
        let spectral = &mut self.spectra[b];
        self.graphs
            .build(&self.speakers, &self.model.manifest.graph, spectral)?;
        self.batch.u.data_mut()[b * n * k..(b + 1) * n * k].copy_from_slice(&spectral.u[..n * k]);
        let cond = &self.batch.cond.data()[b * per..(b + 1) * per];
        let lam = &mut self.batch.lam_obs.data_mut()[b * mm * k..(b + 1) * mm * k];
        spectral.spectrum(cond, n, d, &mut self.scratch, lam);
        Ok(())
    }
}
