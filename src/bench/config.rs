//! What to measure and what comes back: `BenchOptions` (what a caller asks for: the CLI maps
//! its arguments to it), `BenchConfig` (what is measured, read from it), `Extras` of `gsdnet-bench`, the `Stats` of one timing series, and the serialised rows
//! (`BenchRow`, `Speedup`, `BatchRow`, `Report`) whose field names are the JSON keys.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::BenchError;
use crate::backend::{BackendKind, BackendOptions};
use crate::capacity::MAX_BATCH;
use crate::diffusion::SamplerKind;
use crate::manifest::Manifest;

/// What `gsdnet bench` is asked to measure, before the model is read (`config_of`).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Recording file or split folder; `None` = the bundled recording.
    pub data: Option<PathBuf>,
    /// Model folder; `None` = the bundled model.
    pub model: Option<PathBuf>,
    /// Engines; `None` = every compiled one.
    pub backends: Option<Vec<BackendKind>>,
    /// Valid utterances per window.
    pub sizes: Vec<usize>,
    /// Sampler steps.
    pub steps: Vec<usize>,
    /// Integrator; `None` = the manifest's.
    pub sampler: Option<SamplerKind>,
    /// Completion samples per window; `None` = the manifest's.
    pub samples: Option<usize>,
    /// Only window 32 at the manifest's steps, 20 windows (a smoke run).
    pub quick: bool,
    /// Timed windows per configuration; 0 = as many as fit in `budget_ms` (at least 10).
    pub iters: usize,
    pub budget_ms: u64,
    /// Untimed windows before each configuration.
    pub warmup: usize,
    /// Missing rate of the seeded mask.
    pub rate: f64,
    /// Mask and sampler seed.
    pub seed: u64,
    /// Engine and rayon threads; 0 = the engine's choice.
    pub threads: usize,
    /// Where the JSON report goes, if anywhere.
    pub json: Option<PathBuf>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub backends: Vec<BackendKind>,
    /// Valid utterances per window (the model's W stays fixed).
    pub sizes: Vec<usize>,
    pub steps: Vec<usize>,
    /// Integrator; `None` = the manifest's.
    pub sampler: Option<SamplerKind>,
    /// Completion samples S; `None` = the manifest's.
    pub samples: Option<usize>,
    /// Timed windows per configuration; 0 = as many as fit in `budget` (at least 10).
    pub iters: usize,
    pub budget: Duration,
    /// Untimed windows first (caches, lazy engine state).
    pub warmup: usize,
    /// Missing rate of the seeded mask, so that the sampler has something to complete.
    pub rate: f64,
    pub seed: u64,
    pub opts: BackendOptions,
}

impl BenchConfig {
    /// Whether another timed run is due, `done` runs after `began`: exactly `iters` when set,
    /// else at least 10 and then until the budget is spent (at most 100 000).
    pub(super) fn more(&self, done: usize, began: Instant) -> bool {
        let (min_iters, cap) = if self.iters > 0 {
            (self.iters, self.iters)
        } else {
            (10, 100_000)
        };
        done < cap && (done < min_iters || began.elapsed() < self.budget)
    }
}

/// What `gsdnet-bench` measures beyond `gsdnet bench`.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Also every (size, steps) with every window padded to W, and the speedup per size.
    pub padded: bool,
    /// Batch mode: for each B, `run_batch` of the same max(B) windows (one per conversation)
    /// in calls of at most B windows.
    pub batches: Vec<usize>,
    /// ONNX Runtime execution providers in order; empty = the default.
    pub providers: Vec<crate::backend::ProviderKind>,
    /// ONNX Runtime: a fallback to the CPU provider is an error.
    pub require_accelerator: bool,
}

/// p50, p99, mean and max of one series, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Stats {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

/// The nearest-rank percentile (`q` in 0..=1) of `sorted` (ascending, non-empty): the element
/// of rank ceil(q n), at least the first. Every percentile the benchmarks print comes from here.
pub fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> T {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Stats {
    /// Nearest-rank percentiles; `ms` must be non-empty.
    pub fn of(ms: &mut [f64]) -> Stats {
        ms.sort_by(f64::total_cmp);
        Stats {
            p50_ms: nearest_rank(ms, 0.50),
            p99_ms: nearest_rank(ms, 0.99),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// One (backend, window size, steps) configuration.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub backend: &'static str,
    pub provider: String,
    /// "bucketed" (the parts run at the smallest bucket >= N, as deployed) or "padded" (every
    /// window padded to the model's W, the behaviour before buckets).
    pub layout: &'static str,
    pub window: usize,
    /// Window size the parts ran at (the bucket, or W when padded).
    pub bucket: usize,
    pub sampler: &'static str,
    pub steps: usize,
    /// Completion samples S (each runs the whole sampler and fusion).
    pub samples: usize,
    /// Calls of each score network per window (all samples).
    pub score_calls: usize,
    pub iters: usize,
    /// Entries (utterance x modality) the sampler completes.
    pub missing_entries: usize,
    pub total: Stats,
    /// Per stage, `Stage::ALL` order.
    pub stages: Vec<(String, Stats)>,
    /// The sampler stage divided by its steps (a Heun step holds two calls of each network).
    pub sampler_step: Stats,
    /// Heap allocations per timed window; `None` without the counting allocator.
    pub allocs_per_window: Option<f64>,
    /// The same per stage (`Stage::ALL` order; the sampler's divided by nothing: all steps).
    pub allocs_per_stage: Option<Vec<(String, f64)>>,
}

/// Bucketed vs padded whole-window p50 of one (backend, size, steps).
#[derive(Debug, Clone, Serialize)]
pub struct Speedup {
    pub backend: &'static str,
    pub window: usize,
    pub steps: usize,
    pub bucket: usize,
    pub bucketed_p50_ms: f64,
    pub padded_p50_ms: f64,
    /// padded / bucketed (above 1 = buckets faster).
    pub speedup: f64,
}

/// One batch size of the batch mode.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRow {
    pub backend: &'static str,
    pub provider: String,
    pub steps: usize,
    /// Windows per `run_batch` call (max_batch).
    pub batch: usize,
    /// Windows per timed round (the same windows for every B).
    pub windows: usize,
    /// Utterances of each window (its conversation, truncated to W).
    pub sizes: Vec<usize>,
    /// Distinct conversations among the windows (fewer than `windows` when the recording has
    /// fewer conversations; the rest repeat them with other masks and noise).
    pub conversations: usize,
    /// Windows whose sampler runs (something missing).
    pub sampled_windows: usize,
    /// Timed rounds.
    pub iters: usize,
    /// Time of one call of B windows (a round divided by its calls).
    pub per_batch: Stats,
    /// A round's p50 divided by its windows.
    pub per_window_p50_ms: f64,
    pub windows_per_s: f64,
    /// Windows/s over that of B = 1 on the same windows (when B = 1 is measured).
    pub speedup_vs_1: Option<f64>,
    /// Heap allocations per window in steady state; `None` without the counting allocator.
    pub allocs_per_window: Option<f64>,
}

/// Everything `gsdnet-bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Bucketed rows, then padded ones (`layout`).
    pub rows: Vec<BenchRow>,
    pub speedups: Vec<Speedup>,
    pub batch_rows: Vec<BatchRow>,
}

/// Nothing of `cfg` is empty and every size is in 1..=W.
pub(super) fn check_config(manifest: &Manifest, cfg: &BenchConfig) -> Result<(), BenchError> {
    for (what, empty) in [
        ("backends", cfg.backends.is_empty()),
        ("sizes", cfg.sizes.is_empty()),
        ("steps", cfg.steps.is_empty()),
    ] {
        if empty {
            return Err(BenchError::Empty(what));
        }
    }
    let w = manifest.dims.window;
    for &n in &cfg.sizes {
        if n == 0 || n > w {
            return Err(BenchError::WindowSize { n, w });
        }
    }
    Ok(())
}

/// Every batch size is in 1..=`MAX_BATCH`.
pub(super) fn check_batches(batches: &[usize]) -> Result<(), BenchError> {
    match batches.iter().find(|&&b| b == 0 || b > MAX_BATCH) {
        Some(&b) => Err(BenchError::BatchSize(b)),
        None => Ok(()),
    }
}

/// `BenchOptions` as a `BenchConfig` for `manifest`.
pub fn config_of(a: &BenchOptions, manifest: &Manifest) -> Result<BenchConfig, crate::masks::MaskError> {
    let backends = match &a.backends {
        Some(b) => b.clone(),
        None => crate::backend::compiled().to_vec(),
    };
    let (sizes, steps, iters) = if a.quick {
        let iters = if a.iters > 0 { a.iters } else { 20 };
        (vec![32.min(manifest.dims.window)], vec![manifest.sde.steps], iters)
    } else {
        (a.sizes.clone(), a.steps.clone(), a.iters)
    };
    Ok(BenchConfig {
        backends,
        sizes,
        steps,
        sampler: a.sampler,
        samples: a.samples,
        iters,
        budget: Duration::from_millis(a.budget_ms),
        warmup: a.warmup,
        rate: crate::masks::check_rate(a.rate)?,
        seed: a.seed,
        opts: BackendOptions {
            threads: a.threads,
            ..BackendOptions::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Stats::of(&mut v);
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        assert!((s.mean_ms - 50.5).abs() < 1e-12);
        let s = Stats::of(&mut [3.0]);
        assert_eq!((s.p50_ms, s.p99_ms), (3.0, 3.0));
    }
}
