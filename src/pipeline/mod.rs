//! The inference pipeline of one window (DESIGN.md "Conditioning" to fusion): standardise and
//! mask raw features, encode, build the graph and spectra, complete missing entries (GSDNet's
//! spectral diffusion, mean fill or zero fill), reconstruct raw features and classify.
//!
//! Probabilities are `softmax(logits / T)` with the manifest's calibration temperature T of the
//! utterance's availability pattern (`calibration`; T = 1 is the uncalibrated softmax); labels
//! are their argmax.
//!
//! A call runs a batch of windows (`run_batch`; `run` is a batch of one) at one window size N,
//! the smallest of the manifest's `[dims] buckets` holding its longest window, with one call of
//! each part per stage for all windows and completion samples (`batch` has the layout). A
//! window's outputs never depend on its batch-mates or on N: padded rows are masked in every
//! part, noise is drawn per window at the model's W and cut to N.
//!
//! Synchronous and single-threaded; the daemon and `eval` call it. Buffers keep their largest
//! size across calls, so once every bucket and batch size has been seen a call allocates only
//! inside the engine and the eigensolver; window 0 of the last call stays readable through
//! `Pipeline::intermediates` (golden tests compare it).

use crate::backend::rows::{call_rows, RowCaller};
use crate::backend::Shape;
use crate::capacity::MAX_CALL_ROWS;
use crate::diffusion::{
    BatchNoise, Condition, Draw, NoiseError, NoiseSource, Sampler, SamplerError, SamplerKind, SdeParams,
};
use crate::modality::{Modalities, Modality};
use crate::model::{Model, Part};
use crate::multisample::check_samples;
use crate::spectral::{GraphCache, Spectral};
use crate::tensor::Tensor;

mod batch;
mod output;
mod prepare;
mod types;

use batch::{copy_row, gather, Batch, Sizes};

pub use crate::completion::Completion;
pub use crate::stage::{NoObserver, Stage, StageObserver};

pub use types::{Intermediates, PipelineError, Utterance, UtteranceOutput, Window, WindowOutput};

/// Speaker sequences whose graphs a pipeline keeps (about 30 KiB each at W = 64, k = 16).
const GRAPH_CACHE: usize = 32;

/// A model plus every buffer a batch of windows needs.
pub struct Pipeline {
    model: Model,
    mods: Modalities,
    /// The model's modalities in slot order, and each slot's feature size.
    slots: Vec<Modality>,
    dims: Vec<usize>,
    sde: SdeParams,
    /// The manifest's calibration temperature per availability bits, as f32 (the reference
    /// divides f32 logits by it).
    temperatures: [f32; 8],
    samples: usize,
    max_batch: usize,
    /// The graph of each window of the batch, at the model's W, and the last graphs built.
    spectra: Vec<Spectral>,
    graphs: GraphCache,
    sampler: Sampler,
    scratch: Vec<f64>,
    speakers: Vec<u32>,
    lam_mean: Vec<f64>,
    batch: Batch,
    /// (window, sample) of each fusion row (see `batch`), and which of them the sampler runs.
    rows: Vec<(usize, usize)>,
    sampler_rows: Vec<usize>,
    /// The window of each sampler row.
    sampler_windows: Vec<usize>,
    /// Per window of the batch: whether its missing entries are sampled.
    sampled: Vec<bool>,
    /// Window size N of the last call.
    n: usize,
    /// Row-count adaptation of the encoders, recon and fusion calls.
    callers: [RowCaller; 3],
}

/// How a pipeline runs a model; every `None` is the manifest's value. The one place where
/// `eval`, the bench and the daemon say so (`Pipeline::new`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PipelineOptions {
    /// Sampler steps (`[sde] steps`).
    pub steps: Option<usize>,
    /// Integrator (`[sde] sampler`).
    pub sampler: Option<SamplerKind>,
    /// Completion samples S of the `gsdnet` mode (`[sde] samples`), 1..=`MAX_SAMPLES`.
    pub samples: Option<usize>,
    /// Most windows `run_batch` runs as one call of each part (0 and 1: one at a time;
    /// always 1 for parts exported with a fixed batch).
    pub max_batch: usize,
}

/// One window of a `run_batch` call and the noise it draws from.
pub struct BatchItem<'a, 'w> {
    pub window: &'a Window<'w>,
    pub noise: &'a mut dyn NoiseSource,
}

/// Sampler row j draws from window `windows[rows[j]].0`'s noise, sample `.1`.
struct ItemNoise<'x, 'a, 'w> {
    items: &'x mut [BatchItem<'a, 'w>],
    rows: &'x [(usize, usize)],
    pick: &'x [usize],
}

impl BatchNoise for ItemNoise<'_, '_, '_> {
    fn fill_row(&mut self, row: usize, draw: Draw, out: &mut [f32]) -> Result<(), NoiseError> {
        let (window, sample) = self.rows[self.pick[row]];
        let noise = &mut self.items[window].noise;
        noise.select_sample(sample)?;
        noise.fill(draw, out)
    }
}

impl Pipeline {
    /// A pipeline over `model` run as `opts` say.
    pub fn new(model: Model, opts: &PipelineOptions) -> Result<Pipeline, PipelineError> {
        let sde = model.sde(opts.steps, opts.sampler)?;
        let man = &model.manifest;
        let (mods, dm) = (man.modalities, man.dims);
        let slots: Vec<Modality> = mods.iter().collect();
        let dims: Vec<usize> = slots.iter().map(|x| mods.sizes()[x.index()]).collect();
        let samples = check_samples(opts.samples.unwrap_or(man.sde.samples))?;
        let max_batch = if man.batched { opts.max_batch.max(1) } else { 1 };
        let temperatures = man.calibration.by_avail.map(|t| t as f32);
        let sizes = Sizes {
            m: slots.len(),
            dims: &dims,
            d: dm.latent,
            k: dm.k,
            classes: man.model.classes.len(),
            reg: man.model.has_regression,
        };
        let batch = Batch::new(sizes, dm.window);
        Ok(Pipeline {
            sde,
            temperatures,
            samples,
            max_batch,
            spectra: vec![Spectral::new(dm.window, dm.k)],
            graphs: GraphCache::new(GRAPH_CACHE),
            sampler: Sampler::new(slots.len(), dm.window, dm.latent, dm.k),
            scratch: vec![0.0; dm.latent],
            speakers: Vec::with_capacity(dm.window),
            lam_mean: vec![0.0; dm.k],
            batch,
            rows: Vec::new(),
            sampler_rows: Vec::new(),
            sampler_windows: Vec::new(),
            sampled: Vec::new(),
            n: dm.window,
            callers: Default::default(),
            mods,
            slots,
            dims,
            model,
        })
    }

    fn sizes(&self) -> Sizes<'_> {
        let man = &self.model.manifest;
        Sizes {
            m: self.slots.len(),
            dims: &self.dims,
            d: man.dims.latent,
            k: man.dims.k,
            classes: man.model.classes.len(),
            reg: man.model.has_regression,
        }
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
        self.samples
    }

    /// The most windows `run_batch` runs as one call of each part.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Sets `max_batch` (at least 1; 1 for parts exported with a fixed batch).
    pub fn set_max_batch(&mut self, b: usize) {
        self.max_batch = if self.model.manifest.batched { b.max(1) } else { 1 };
    }

    /// The window size a window of `n` utterances runs at: the smallest bucket >= n.
    pub fn bucket(&self, n: usize) -> usize {
        let b = &self.model.manifest.buckets;
        b.iter()
            .copied()
            .find(|&s| s >= n)
            .unwrap_or(self.model.manifest.dims.window)
    }

    /// Builds every part's engine plan for calls of `rows` rows (windows x samples) at every
    /// bucket ahead of the first window (engines that specialise per shape otherwise do it on
    /// first use); `rows` are rounded as calls round them (`backend::rows`).
    pub fn warm(&mut self, rows: &[usize]) -> Result<(), PipelineError> {
        let buckets = self.model.manifest.buckets.clone();
        for &r in rows {
            let batch = call_rows(self.model.part(Part::Encoders), r.clamp(1, MAX_CALL_ROWS));
            for &window in &buckets {
                self.model.prepare(Shape::windows(batch, window))?;
            }
        }
        Ok(())
    }

    /// Runs several windows (of any conversations) as batches of at most `max_batch` windows
    /// of the same bucket (a batch runs at its longest window's bucket, so mixing buckets would
    /// cost the short windows the long ones' size); `outs` gets one output per item, in item
    /// order (its vectors reused). Each window's output is the one `run` gives it alone: nothing
    /// a window computes depends on its batch-mates. Every window must pass `check` (an invalid
    /// one fails the whole call; callers check first).
    pub fn run_batch(
        &mut self,
        items: &mut [BatchItem<'_, '_>],
        completion: Completion,
        outs: &mut Vec<WindowOutput>,
    ) -> Result<(), PipelineError> {
        outs.truncate(items.len());
        outs.resize_with(items.len(), WindowOutput::default);
        let mut order: Vec<(usize, &mut BatchItem<'_, '_>, &mut WindowOutput)> = items
            .iter_mut()
            .zip(outs.iter_mut())
            .map(|(it, out)| (self.bucket(it.window.utterances.len()), it, out))
            .collect();
        order.sort_by_key(|(bucket, _, _)| *bucket);
        let mut start = 0;
        while start < order.len() {
            let bucket = order[start].0;
            let same = order[start..].iter().take_while(|(b, _, _)| *b == bucket).count();
            let end = start + same.min(self.max_batch);
            let (mut chunk, mut outs): (Vec<BatchItem<'_, '_>>, Vec<&mut WindowOutput>) = order[start..end]
                .iter_mut()
                .map(|(_, it, o)| {
                    (
                        BatchItem {
                            window: it.window,
                            noise: &mut *it.noise,
                        },
                        &mut **o,
                    )
                })
                .unzip();
            self.run_chunk(&mut chunk, completion, &mut NoObserver, &mut outs)?;
            start = end;
        }
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

    /// `run_observed` writing into `out`, whose vectors are reused.
    pub fn run_into(
        &mut self,
        window: &Window,
        completion: Completion,
        noise: &mut dyn NoiseSource,
        obs: &mut dyn StageObserver,
        out: &mut WindowOutput,
    ) -> Result<(), PipelineError> {
        let mut item = [BatchItem { window, noise }];
        self.run_chunk(&mut item, completion, obs, &mut [out])
    }

    /// One batch of windows, all run at the bucket of the longest.
    fn run_chunk(
        &mut self,
        items: &mut [BatchItem<'_, '_>],
        completion: Completion,
        obs: &mut dyn StageObserver,
        outs: &mut [&mut WindowOutput],
    ) -> Result<(), PipelineError> {
        for it in items.iter() {
            self.check(it.window)?;
        }
        let longest = items.iter().map(|it| it.window.utterances.len()).max().unwrap_or(1);
        self.n = self.bucket(longest);
        self.prepare(items, completion == Completion::Zero);
        obs.finished(Stage::Prepare);
        {
            // At most three modality slots: references on the stack, nothing allocated.
            let inputs: heapless::Vec<&Tensor, 3> = self.batch.inputs.iter().collect();
            self.callers[0].run(self.model.part(Part::Encoders), &inputs, &mut self.batch.h)?;
        }
        finite(&self.batch.h[0], "encoders")?;
        obs.finished(Stage::Encoders);
        for (b, it) in items.iter().enumerate() {
            self.condition(b, it.window)?;
        }
        obs.finished(Stage::Graph);
        self.plan_rows(items, completion);
        self.complete(items)?;
        obs.finished(Stage::Sampler);
        self.recovered_graph();
        self.reconstruct(items.len())?;
        obs.finished(Stage::Recon);
        self.fuse()?;
        for (b, (it, out)) in items.iter().zip(outs.iter_mut()).enumerate() {
            self.outputs(b, it.window, out);
        }
        obs.finished(Stage::Fusion);
        Ok(())
    }

    /// Fusion rows (sample 0 of every window, then the other samples of sampled windows) and
    /// the rows the sampler runs.
    fn plan_rows(&mut self, items: &[BatchItem<'_, '_>], completion: Completion) {
        let (n, mm) = (self.n, self.slots.len());
        let avail = self.batch.avail.data();
        self.sampled.clear();
        self.sampled.extend(items.iter().enumerate().map(|(b, it)| {
            let len = it.window.utterances.len();
            completion == Completion::Gsdnet && avail[b * n * mm..(b * n + len) * mm].iter().any(|&a| a < 0.5)
        }));
        self.rows.clear();
        self.rows.extend((0..items.len()).map(|b| (b, 0)));
        for b in (0..items.len()).filter(|&b| self.sampled[b]) {
            self.rows.extend((1..self.samples).map(|s| (b, s)));
        }
        self.sampler_rows.clear();
        self.sampler_rows
            .extend((0..self.rows.len()).filter(|&r| self.sampled[self.rows[r].0]));
    }

    /// `x0`, `lam0` of every fusion row: sampled rows from the sampler, the others (baselines,
    /// complete windows) exact: `x0 = h * node_mask`, `lam0 = lam_obs`.
    fn complete(&mut self, items: &mut [BatchItem<'_, '_>]) -> Result<(), PipelineError> {
        let (r, n) = (self.rows.len(), self.n);
        let sizes = self.sizes();
        let sizes = Sizes { dims: &[], ..sizes };
        self.batch.shape_rows(sizes, r, n);
        let bt = &mut self.batch;
        for (row, &(b, _)) in self.rows.iter().enumerate() {
            copy_row(&mut bt.f_avail, row, &bt.avail, b);
            copy_row(&mut bt.f_mask, row, &bt.node_mask, b);
            if !self.sampled[b] {
                let per = bt.h[0].len() / bt.h[0].shape()[0];
                let (h, mask) = (
                    &bt.h[0].data()[b * per..(b + 1) * per],
                    &bt.node_mask.data()[b * n..(b + 1) * n],
                );
                mask_rows(&mut bt.x0.data_mut()[row * per..(row + 1) * per], h, mask, sizes.d);
                copy_row(&mut bt.lam0, row, &bt.lam_obs, b);
            }
        }
        if self.sampler_rows.is_empty() {
            return Ok(());
        }
        let rows = &self.rows;
        self.sampler_windows.clear();
        self.sampler_windows
            .extend(self.sampler_rows.iter().map(|&j| rows[j].0));
        bt.gather_sampler(self.sampler_windows.iter().copied());
        let cond = Condition {
            h: &bt.s_h,
            cond: &bt.s_cond,
            avail: &bt.s_avail,
            node_mask: &bt.s_mask,
            u: &bt.s_u,
            lam_obs: &bt.s_lam_obs,
            spectra: &self.spectra,
            graph_of: &self.sampler_windows,
        };
        let mut noise = ItemNoise {
            items,
            rows,
            pick: &self.sampler_rows,
        };
        let (s_theta, s_phi) = self.model.score_nets();
        self.sampler.run(
            &self.sde,
            &cond,
            [s_theta, s_phi],
            &mut noise,
            [&mut bt.s_x0, &mut bt.s_lam0],
        )?;
        for (j, &row) in self.sampler_rows.iter().enumerate() {
            copy_row(&mut bt.x0, row, &bt.s_x0, j);
            copy_row(&mut bt.lam0, row, &bt.s_lam0, j);
        }
        for it in items.iter_mut() {
            it.noise.select_sample(0).map_err(SamplerError::from)?;
        }
        Ok(())
    }

    /// The recovered graph of fusion per row, `adj_fusion = [A, u diag(mean_m lam0) u^T]`.
    fn recovered_graph(&mut self) {
        let (n, k, mm) = (self.n, self.model.manifest.dims.k, self.slots.len());
        for (row, &(b, _)) in self.rows.iter().enumerate() {
            let lam0 = &self.batch.lam0.data()[row * mm * k..(row + 1) * mm * k];
            // Mean over the M slots in f32, summed in slot order (as the reference); the
            // product in f64.
            for (j, m) in self.lam_mean.iter_mut().enumerate() {
                let sum = (1..mm).fold(lam0[j], |acc, s| acc + lam0[s * k + j]);
                *m = f64::from(sum / mm as f32);
            }
            let adj = &mut self.batch.adj_fusion.data_mut()[row * 2 * n * n..(row + 1) * 2 * n * n];
            let spectral = &self.spectra[b];
            spectral.adj_block(n, &mut adj[..n * n]);
            spectral.low_rank_f64(&self.lam_mean, n, &mut adj[n * n..]);
        }
    }

    /// Reconstruction of raw features from sample 0 of each of the `windows` windows.
    fn reconstruct(&mut self, windows: usize) -> Result<(), PipelineError> {
        let bt = &mut self.batch;
        gather(&mut bt.rec_in, &bt.x0, 0..windows);
        self.callers[1].run(self.model.part(Part::Recon), &[&bt.rec_in], &mut bt.recon)?;
        bt.recon.iter().try_for_each(|t| finite(t, "recon"))
    }

    /// Fusion and classification of every row over its recovered graph.
    fn fuse(&mut self) -> Result<(), PipelineError> {
        let bt = &mut self.batch;
        let inputs = [&bt.x0, &bt.f_avail, &bt.adj_fusion, &bt.f_mask];
        self.callers[2].run(self.model.part(Part::Fusion), &inputs, &mut bt.head)?;
        bt.head.iter().try_for_each(|t| finite(t, "fusion"))
    }
}

/// `x0 = h * node_mask` for one row: `h`, `out` `[M, N, d]`, `mask [N]`.
fn mask_rows(out: &mut [f32], h: &[f32], mask: &[f32], d: usize) {
    let n = mask.len();
    for (node, (o, src)) in out.chunks_exact_mut(d).zip(h.chunks_exact(d)).enumerate() {
        let keep = mask[node % n];
        for (o, &v) in o.iter_mut().zip(src) {
            *o = v * keep;
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
