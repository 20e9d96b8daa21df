//! The inference pipeline of one window (DESIGN.md "Conditioning" to fusion): standardise and
//! mask raw features, encode, build the graph and spectra, complete missing entries (GSDNet's
//! spectral diffusion, mean fill or zero fill), reconstruct raw features and classify.
//!
//! Probabilities are `softmax(logits / T)` with the manifest's calibration temperature T of the
//! utterance's availability pattern (`calibration`; T = 1 is the uncalibrated softmax); labels
//! are their argmax.
//!
//! Synchronous and single-threaded; the daemon and `eval` call `Pipeline::run`. Every buffer is
//! allocated once in `Pipeline::new` and reused, so intermediates of the last run stay readable
//! through `Pipeline::intermediates` (golden tests compare them).

use crate::calibration::{argmax, softmax_tempered};
use crate::diffusion::{Condition, NoiseSource, Sampler, SamplerError, SamplerKind, SdeParams};
use crate::modality::{Modalities, Modality};
use crate::model::{Model, Part};
use crate::multisample::SampleMean;
use crate::spectral::Spectral;
use crate::tensor::Tensor;

mod types;

pub use crate::completion::Completion;
pub use crate::stage::{NoObserver, Stage, StageObserver};

pub use types::{Intermediates, PipelineError, Utterance, UtteranceOutput, Window, WindowOutput};

/// A model plus every buffer one window needs.
pub struct Pipeline {
    model: Model,
    mods: Modalities,
    /// The model's modalities in slot order.
    slots: Vec<Modality>,
    sde: SdeParams,
    /// The manifest's calibration temperature per availability bits, as f32 (the reference
    /// divides f32 logits by it).
    temperatures: [f32; 8],
    spectral: Spectral,
    sampler: Sampler,
    scratch: Vec<f64>,
    /// Speakers of the window and the mean recovered spectrum, reused across windows.
    speakers: Vec<u32>,
    lam_mean: Vec<f64>,
    /// Standardised encoder inputs `[1,W,dim]`, one per slot.
    inputs: Vec<Tensor>,
    /// `[1,W,M]`.
    avail: Tensor,
    node_mask: Tensor,
    h: [Tensor; 1],
    cond: Tensor,
    u: Tensor,
    lam_obs: Tensor,
    x0: Tensor,
    lam0: Tensor,
    adj_fusion: Tensor,
    recon: Vec<Tensor>,
    /// Fusion outputs: logits `[1,W,K]`, then reg `[1,W,1]` when the model has one.
    head: Vec<Tensor>,
    /// Per-sample results of the window and their mean (`samples()` = S).
    mean: SampleMean,
}

impl Pipeline {
    /// A pipeline over `model`; `steps` overrides the manifest's sampler steps.
    pub fn new(model: Model, steps: Option<usize>) -> Result<Pipeline, PipelineError> {
        let sde = model.sde(steps, None)?;
        let man = &model.manifest;
        let (mods, dm) = (man.modalities, man.dims);
        let (m, w, d, k, classes) = (mods.count(), dm.window, dm.latent, dm.k, man.model.classes.len());
        let slots: Vec<Modality> = mods.iter().collect();
        let feats: Vec<Tensor> = slots.iter().map(|&x| Tensor::zeros(&[1, w, mods.sizes()[x.index()]])).collect();
        let mut head = vec![Tensor::zeros(&[1, w, classes])];
        if man.model.has_regression {
            head.push(Tensor::zeros(&[1, w, 1]));
        }
        let samples = man.sde.samples;
        let temperatures = man.calibration.by_avail.map(|t| t as f32);
        Ok(Pipeline {
            sde,
            temperatures,
            spectral: Spectral::new(w, k),
            sampler: Sampler::new(m, w, d, k),
            scratch: vec![0.0; d],
            speakers: Vec::with_capacity(w),
            lam_mean: vec![0.0; k],
            inputs: feats.clone(),
            avail: Tensor::zeros(&[1, w, m]),
            node_mask: Tensor::zeros(&[1, w]),
            h: [Tensor::zeros(&[1, m, w, d])],
            cond: Tensor::zeros(&[1, m, w, d]),
            u: Tensor::zeros(&[1, w, k]),
            lam_obs: Tensor::zeros(&[1, m, k]),
            x0: Tensor::zeros(&[1, m, w, d]),
            lam0: Tensor::zeros(&[1, m, k]),
            adj_fusion: Tensor::zeros(&[1, 2, w, w]),
            recon: feats,
            head,
            mean: SampleMean::new(samples, w, classes)?,
            mods,
            slots,
            model,
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn sde(&self) -> &SdeParams {
        &self.sde
    }

    /// Changes the sampler steps (`None` = the manifest's) without reloading the model; keeps
    /// the integrator.
    pub fn set_steps(&mut self, steps: Option<usize>) -> Result<(), PipelineError> {
        self.sde = self.model.sde(steps, Some(self.sde.kind))?;
        Ok(())
    }

    /// Completion samples S of the `gsdnet` mode.
    pub fn samples(&self) -> usize {
        self.mean.samples()
    }

    /// Changes S (`None` = the manifest's `[sde] samples`), checked against 1..=MAX_SAMPLES;
    /// resizes the per-sample buffers (outside the steady state).
    pub fn set_samples(&mut self, samples: Option<usize>) -> Result<(), PipelineError> {
        let s = samples.unwrap_or(self.model.manifest.sde.samples);
        self.mean = SampleMean::new(s, self.spectral.w, self.model.manifest.model.classes.len())?;
        Ok(())
    }

    /// Changes the integrator (`None` = the manifest's); keeps the steps.
    pub fn set_sampler(&mut self, kind: Option<SamplerKind>) -> Result<(), PipelineError> {
        self.sde = self.model.sde(Some(self.sde.steps), kind)?;
        Ok(())
    }

    /// Runs one window. `noise` is only drawn from when the sampler runs; with S > 1 samples
    /// the pipeline selects each sample's streams through `NoiseSource::select_sample`.
    pub fn run(
        &mut self,
        window: &Window,
        completion: Completion,
        noise: &mut dyn NoiseSource,
    ) -> Result<WindowOutput, PipelineError> {
        self.run_observed(window, completion, noise, &mut NoObserver)
    }

    /// `run`, telling `obs` as each `Stage` ends (in `Stage::ALL` order, each exactly once on
    /// success).
    pub fn run_observed(
        &mut self,
        window: &Window,
        completion: Completion,
        noise: &mut dyn NoiseSource,
        obs: &mut dyn StageObserver,
    ) -> Result<WindowOutput, PipelineError> {
        let mut out = WindowOutput::default();
        self.run_into(window, completion, noise, obs, &mut out)?;
        Ok(out)
    }

    /// `run_observed` writing into `out`, whose vectors are reused: once they have grown to a
    /// window's size, a window allocates nothing outside the engine and the eigensolver.
    pub fn run_into(
        &mut self,
        window: &Window,
        completion: Completion,
        noise: &mut dyn NoiseSource,
        obs: &mut dyn StageObserver,
        out: &mut WindowOutput,
    ) -> Result<(), PipelineError> {
        self.check(window)?;
        self.prepare(window, completion == Completion::Zero);
        obs.finished(Stage::Prepare);
        {
            // At most three modality slots: references on the stack, nothing allocated.
            let inputs: heapless::Vec<&Tensor, 3> = self.inputs.iter().collect();
            self.model.part(Part::Encoders).run(&inputs, &mut self.h)?;
        }
        finite(&self.h[0], "encoders")?;
        obs.finished(Stage::Encoders);
        self.condition(window)?;
        obs.finished(Stage::Graph);
        let missing = self.any_missing(window.utterances.len());
        let sampled = completion == Completion::Gsdnet && missing;
        let several = sampled && self.mean.samples() > 1;
        if sampled {
            self.extra_samples(window, noise, out)?;
            noise.select_sample(0).map_err(SamplerError::from)?;
            self.sample(noise)?;
        } else {
            self.copy_exact();
        }
        obs.finished(Stage::Sampler);
        self.recovered_graph();
        self.reconstruct()?;
        obs.finished(Stage::Recon);
        self.fuse()?;
        self.outputs(window, sampled, out);
        if several {
            self.mean.record(0, out);
            self.mean.finish(out);
        }
        obs.finished(Stage::Fusion);
        Ok(())
    }

    /// Samples 1..S-1 of a sampled window, each completed, fused and its published outputs
    /// recorded; nothing for S = 1. Sample 0 runs last (in `run_into`), so the intermediates
    /// and the reconstructed features are exactly those of the single-sample run.
    fn extra_samples(
        &mut self,
        window: &Window,
        noise: &mut dyn NoiseSource,
        out: &mut WindowOutput,
    ) -> Result<(), PipelineError> {
        for s in 1..self.mean.samples() {
            noise.select_sample(s).map_err(SamplerError::from)?;
            self.sample(noise)?;
            self.recovered_graph();
            self.fuse()?;
            self.outputs(window, true, out);
            self.mean.record(s, out);
        }
        Ok(())
    }

    fn check(&self, window: &Window) -> Result<(), PipelineError> {
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

    /// Standardised, masked encoder inputs (`Normalisation::standardise`: finite, |z| <= Z_CLIP
    /// whatever the finite raw input); `zero_fill` puts standardised raw zeros at missing
    /// entries of valid rows instead of 0 (the mean).
    fn prepare(&mut self, window: &Window, zero_fill: bool) {
        let norm = &self.model.manifest.norm;
        let mm = self.slots.len();
        self.avail.data_mut().fill(0.0);
        self.node_mask.data_mut().fill(0.0);
        for (slot, modality) in self.slots.iter().enumerate() {
            let m = modality.index();
            let dim = norm.mean[m].len();
            let buf = self.inputs[slot].data_mut();
            buf.fill(0.0);
            for (i, utt) in window.utterances.iter().enumerate() {
                let row = &mut buf[i * dim..(i + 1) * dim];
                match utt.features[m] {
                    Some(f) => {
                        for c in 0..dim {
                            row[c] = norm.standardise(m, c, f[c]);
                        }
                        self.avail.data_mut()[i * mm + slot] = 1.0;
                    }
                    None if zero_fill => (0..dim).for_each(|c| row[c] = norm.standardise(m, c, 0.0)),
                    None => {}
                }
            }
        }
        for i in 0..window.utterances.len() {
            self.node_mask.data_mut()[i] = 1.0;
        }
    }

    /// `cond`, the graph, `u` and `lam_obs`.
    fn condition(&mut self, window: &Window) -> Result<(), PipelineError> {
        let (mm, w, d) = (self.slots.len(), self.spectral.w, self.scratch.len());
        let (h, avail, cond) = (self.h[0].data(), self.avail.data(), self.cond.data_mut());
        for m in 0..mm {
            for i in 0..w {
                let keep = avail[i * mm + m] * self.node_mask.data()[i];
                let row = (m * w + i) * d;
                for j in row..row + d {
                    cond[j] = h[j] * keep;
                }
            }
        }
        self.speakers.clear();
        self.speakers.extend(window.utterances.iter().map(|u| u.speaker));
        self.spectral.rebuild(&self.speakers, &self.model.manifest.graph)?;
        self.u.data_mut().copy_from_slice(&self.spectral.u);
        self.spectral
            .spectrum(self.cond.data(), d, &mut self.scratch, self.lam_obs.data_mut());
        Ok(())
    }

    fn any_missing(&self, n: usize) -> bool {
        self.avail.data()[..n * self.slots.len()].iter().any(|&a| a < 0.5)
    }

    /// Baselines and complete windows: `x0 = h * node_mask`, `lam0 = lam_obs`.
    fn copy_exact(&mut self) {
        let (w, d) = (self.spectral.w, self.scratch.len());
        let (h, mask, x0) = (self.h[0].data(), self.node_mask.data(), self.x0.data_mut());
        for (row, chunk) in x0.chunks_mut(d).enumerate() {
            let keep = mask[row % w];
            for (c, o) in chunk.iter_mut().enumerate() {
                *o = h[row * d + c] * keep;
            }
        }
        self.lam0.data_mut().copy_from_slice(self.lam_obs.data());
    }

    fn sample(&mut self, noise: &mut dyn NoiseSource) -> Result<(), PipelineError> {
        let cond = Condition {
            h: &self.h[0],
            cond: &self.cond,
            avail: &self.avail,
            node_mask: &self.node_mask,
            u: &self.u,
            lam_obs: &self.lam_obs,
            spectral: &self.spectral,
        };
        let (s_theta, s_phi) = self.model.score_nets();
        let out = [&mut self.x0, &mut self.lam0];
        self.sampler.run(&self.sde, &cond, [s_theta, s_phi], noise, out)?;
        Ok(())
    }

    /// The recovered graph of fusion, `adj_fusion = [A, u diag(mean_m lam0) u^T]`.
    fn recovered_graph(&mut self) {
        let (w, k) = (self.spectral.w, self.spectral.k);
        let lam0 = self.lam0.data();
        let mm = self.slots.len();
        // Mean over the M slots in f32, summed in slot order (as the reference); the product
        // in f64.
        for (j, m) in self.lam_mean.iter_mut().enumerate() {
            let sum = (1..mm).fold(lam0[j], |acc, s| acc + lam0[s * k + j]);
            *m = f64::from(sum / mm as f32);
        }
        let adj = self.adj_fusion.data_mut();
        adj[..w * w].copy_from_slice(&self.spectral.adj);
        self.spectral.low_rank_f64(&self.lam_mean, &mut adj[w * w..]);
    }

    /// Reconstruction of raw features from `x0`.
    fn reconstruct(&mut self) -> Result<(), PipelineError> {
        self.model.part(Part::Recon).run(&[&self.x0], &mut self.recon)?;
        for t in &self.recon {
            finite(t, "recon")?;
        }
        Ok(())
    }

    /// Fusion and classification over the recovered graph.
    fn fuse(&mut self) -> Result<(), PipelineError> {
        self.model.part(Part::Fusion).run(
            &[&self.x0, &self.avail, &self.adj_fusion, &self.node_mask],
            &mut self.head,
        )?;
        self.head.iter().try_for_each(|t| finite(t, "fusion"))
    }

    /// Per-utterance results into `out` (its vectors reused).
    fn outputs(&self, window: &Window, sampled: bool, out: &mut WindowOutput) {
        let norm = &self.model.manifest.norm;
        let logits = self.head[0].data();
        let reg = self.head.get(1).map(Tensor::data);
        let k = logits.len() / self.spectral.w;
        let n = window.utterances.len();
        out.sampled = sampled;
        out.utterances.truncate(n);
        while out.utterances.len() < n {
            out.utterances.push(UtteranceOutput::default());
        }
        for (i, (utt, o)) in window.utterances.iter().zip(out.utterances.iter_mut()).enumerate() {
            let bits: usize = utt.features.iter().enumerate().filter(|(_, f)| f.is_some()).map(|(m, _)| 1 << m).sum();
            o.probs.resize(k, 0.0);
            softmax_tempered(&logits[k * i..k * (i + 1)], self.temperatures[bits], &mut o.probs);
            o.label = argmax(&o.probs);
            o.regression = reg.map(|r| r[i]);
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
                        let dim = norm.mean[m].len();
                        let row = &self.recon[slot].data()[i * dim..(i + 1) * dim];
                        feat.extend((0..dim).map(|c| norm.destandardise(m, c, row[c])));
                    }
                }
            }
        }
    }

    /// Tensors of the last run.
    pub fn intermediates(&self) -> Intermediates<'_> {
        Intermediates {
            inputs: &self.inputs,
            avail: &self.avail,
            node_mask: &self.node_mask,
            h: &self.h[0],
            cond: &self.cond,
            spectral: &self.spectral,
            lam_obs: &self.lam_obs,
            x0: &self.x0,
            lam0: &self.lam0,
            adj_fusion: &self.adj_fusion,
            recon: &self.recon,
            logits: &self.head[0],
            reg: self.head.get(1),
        }
    }
}

fn finite(t: &Tensor, part: &'static str) -> Result<(), PipelineError> {
    if t.all_finite() {
        Ok(())
    } else {
        Err(PipelineError::NonFiniteOutput { part })
    }
}
