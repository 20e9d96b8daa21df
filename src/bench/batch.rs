//! Batch mode of `gsdnet-bench`: the same max(B) windows, one per conversation, run through
//! `run_batch` in calls of at most B windows for each B, timed per round, with the speedup of
//! each B over B = 1 on the same windows.

use std::time::Instant;

use super::window::{missing_entries, pipeline, window_of};
use super::{allocation_count, allocations, BatchRow, BenchConfig, BenchError, Stats};
use crate::backend::BackendKind;
use crate::diffusion::SeededNoise;
use crate::manifest::Manifest;
use crate::masks::random_mask;
use crate::modality::Modalities;
use crate::pipeline::{BatchItem, Completion, Pipeline, PipelineError, Window, WindowOutput};
use crate::recording::Recording;

/// `count` windows, one per conversation in order (each truncated to W), with its own seeded
/// mask and noise key (the conversation id). Past the recording's last conversation they start
/// over from the first, keyed `id#1`, `id#2`, ... (other masks and noise on the same features).
pub fn conversation_windows<'a>(
    rec: &'a Recording,
    count: usize,
    w: usize,
    rate: f64,
    seed: u64,
    mods: &Modalities,
) -> Result<Vec<(String, Window<'a>)>, BenchError> {
    let convs = &rec.conversations;
    if convs.is_empty() {
        return Err(BenchError::TooFewConversations { have: 0, want: count });
    }
    Ok((0..count)
        .map(|i| {
            let c = &convs[i % convs.len()];
            let lap = i / convs.len();
            let id = if lap == 0 {
                c.id.clone()
            } else {
                format!("{}#{lap}", c.id)
            };
            let utts = &c.utterances[..c.utterances.len().min(w)];
            let mask = random_mask(seed, rate, &id, utts.len(), mods);
            (id, window_of(utts, &mask))
        })
        .collect())
}

/// The windows of one backend's batch mode and what every row of it reports about them.
struct Batch<'a> {
    backend: &'static str,
    windows: Vec<(String, Window<'a>)>,
    sizes: Vec<usize>,
    /// Distinct conversations among `windows`.
    conversations: usize,
    sampled_windows: usize,
}

impl Batch<'_> {
    /// A pipeline failure at `steps` on these windows, as `BenchError`.
    fn error(&self, steps: usize) -> impl Fn(PipelineError) -> BenchError + '_ {
        move |source| BenchError::Pipeline {
            backend: self.backend,
            n: self.windows.len(),
            steps,
            source: Box::new(source),
        }
    }
}

/// Every (steps, B) on one backend: `BatchRow`s in `cfg.steps` order, then `batches` order.
pub(super) fn run_batches(
    manifest: &Manifest,
    rec: &Recording,
    cfg: &BenchConfig,
    kind: BackendKind,
    batches: &[usize],
) -> Result<Vec<BatchRow>, BenchError> {
    let backend = kind.name();
    let count = batches.iter().copied().max().unwrap_or(1);
    let mut pipe = pipeline(manifest, cfg, kind)?;
    let windows = conversation_windows(
        rec,
        count,
        manifest.dims.window,
        cfg.rate,
        cfg.seed,
        &manifest.modalities,
    )?;
    let batch = Batch {
        backend,
        sizes: windows.iter().map(|(_, w)| w.utterances.len()).collect(),
        conversations: count.min(rec.conversations.len()),
        sampled_windows: windows.iter().filter(|(_, w)| missing_entries(w) > 0).count(),
        windows,
    };
    let mut out = Vec::new();
    for &steps in &cfg.steps {
        pipe.set_steps(Some(steps)).map_err(batch.error(steps))?;
        let mut rows: Vec<BatchRow> = Vec::new();
        for &b in batches {
            rows.push(batch_row(&mut pipe, &batch, cfg, steps, b)?);
        }
        let one = rows.iter().find(|r| r.batch == 1).map(|r| r.per_window_p50_ms);
        for r in &mut rows {
            r.speedup_vs_1 = one.map(|o| o / r.per_window_p50_ms);
        }
        out.extend(rows);
    }
    Ok(out)
}

/// One round: every window of `batch` through `run_batch` (in calls of the pipeline's
/// max_batch) into the reused `outs`, with fresh noise keyed per window. Its time in ms and,
/// when `count_allocs`, the allocations during it (0 otherwise).
fn round(
    pipe: &mut Pipeline,
    batch: &Batch,
    cfg: &BenchConfig,
    outs: &mut Vec<WindowOutput>,
    count_allocs: bool,
) -> Result<(f64, u64), PipelineError> {
    let mut noises: Vec<SeededNoise> = batch
        .windows
        .iter()
        .map(|(id, _)| SeededNoise::for_window(cfg.seed, 0, id, 0))
        .collect();
    let mut items: Vec<BatchItem> = batch
        .windows
        .iter()
        .zip(noises.iter_mut())
        .map(|((_, w), n)| BatchItem { window: w, noise: n })
        .collect();
    let a0 = if count_allocs { allocation_count() } else { 0 };
    let start = Instant::now();
    pipe.run_batch(&mut items, Completion::Gsdnet, outs)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let a1 = if count_allocs { allocation_count() } else { 0 };
    std::hint::black_box(&*outs);
    Ok((ms, a1 - a0))
}

/// Warm-up, then timed rounds until `iters` (or the time budget) is reached: each round's ms
/// and the allocations of all timed rounds.
fn time_rounds(
    pipe: &mut Pipeline,
    batch: &Batch,
    cfg: &BenchConfig,
    steps: usize,
) -> Result<(Vec<f64>, u64), BenchError> {
    let err = batch.error(steps);
    let mut outs: Vec<WindowOutput> = Vec::new();
    for _ in 0..cfg.warmup.max(1) {
        round(pipe, batch, cfg, &mut outs, false).map_err(&err)?;
    }
    let mut ms = Vec::new();
    let mut allocs = 0u64;
    let began = Instant::now();
    while cfg.more(ms.len(), began) {
        let (t, a) = round(pipe, batch, cfg, &mut outs, true).map_err(&err)?;
        ms.push(t);
        allocs += a;
    }
    Ok((ms, allocs))
}

/// The row of batch size `b` at `steps` (its `speedup_vs_1` is left to the caller).
fn batch_row(
    pipe: &mut Pipeline,
    batch: &Batch,
    cfg: &BenchConfig,
    steps: usize,
    b: usize,
) -> Result<BatchRow, BenchError> {
    pipe.set_max_batch(b);
    let b_eff = pipe.max_batch();
    let count = batch.windows.len();
    let calls = count.div_ceil(b_eff);
    let (mut ms, allocs) = time_rounds(pipe, batch, cfg, steps)?;
    let iters = ms.len();
    let mut per_batch: Vec<f64> = ms.iter().map(|t| t / calls as f64).collect();
    let round_p50 = Stats::of(&mut ms).p50_ms;
    let per_window = round_p50 / count as f64;
    Ok(BatchRow {
        backend: batch.backend,
        provider: pipe.model().provider(),
        steps,
        batch: b_eff,
        windows: count,
        sizes: batch.sizes.clone(),
        conversations: batch.conversations,
        sampled_windows: batch.sampled_windows,
        iters,
        per_batch: Stats::of(&mut per_batch),
        per_window_p50_ms: per_window,
        windows_per_s: 1e3 / per_window,
        speedup_vs_1: None,
        allocs_per_window: allocations().map(|_| allocs as f64 / (iters * count) as f64),
    })
}
