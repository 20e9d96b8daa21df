//! Latency and memory benchmark of the inference pipeline (`gsdnet bench`): p50/p99 of one
//! window, whole and per `Stage`, over window sizes, sampler steps and compiled backends, on real
//! utterances of a recording; heap allocations per steady-state window and peak resident memory.
//!
//! Allocations are counted by `CountingAlloc`, which this module defines but never installs: only
//! a binary that declares it `#[global_allocator]` (`gsdnet-bench` does; the production `gsdnet`
//! binary does not, so the daemon pays no atomic per allocation) gets counts; without it
//! `allocations()` is `None` and the report says so. Timing uses the wall clock of the thread
//! that runs the windows; nothing here runs concurrently.
//!
//! This file owns the error type, the entry point of `gsdnet bench` and `gsdnet-bench`
//! (`run_and_report`) and the public paths (`crate::bench::*`, re-exported from the submodules):
//! - `alloc`: the counting allocator and peak resident memory;
//! - `config`: what to measure (`BenchOptions`, `BenchConfig`, `Extras`), `Stats`, the percentile rule
//!   (`nearest_rank`) and the serialised rows;
//! - `window`: single-window runs per (backend, size, steps) and bucketed vs padded;
//! - `batch`: the batch mode (`run_batch` of one window per conversation);
//! - `frontend`: the text frontend's cost per utterance (`gsdnet bench-frontend`);
//! - `table`: the text tables;
//! - `throughput`: `gsdnet bench-throughput`, windows per second through the daemon's
//!   inference step.

mod alloc;
mod batch;
mod config;
pub mod frontend;
mod table;
pub mod throughput;
mod window;

use thiserror::Error;

use crate::manifest::Manifest;
use crate::model::ModelError;
use crate::paths::{bundled, DEFAULT_DATA, DEFAULT_MODEL};
use crate::pipeline::PipelineError;

pub use alloc::{allocation_count, allocations, peak_rss_kib, CountingAlloc};
pub use batch::conversation_windows;
pub use config::{config_of, BatchRow, BenchConfig, BenchOptions, BenchRow, Extras, Report, Speedup, Stats};
pub use table::{batch_table, speedup_table, table};
pub use window::{masked_window, padded_manifest, run, run_extended, utterances};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("the recording holds {have} utterances, a window of {want} needs that many")]
    TooFewUtterances { have: usize, want: usize },
    #[error("window size {n} is outside 1..={w} (the model's W)")]
    WindowSize { n: usize, w: usize },
    #[error("nothing to measure: {0} is empty")]
    Empty(&'static str),
    #[error("{backend}: {source}")]
    Model {
        backend: &'static str,
        source: Box<ModelError>,
    },
    #[error("{backend}: {source}")]
    Setup {
        backend: &'static str,
        source: Box<PipelineError>,
    },
    #[error("batch size {0} is outside 1..={max}", max = crate::capacity::MAX_BATCH)]
    BatchSize(usize),
    #[error("the recording holds {have} conversations, a batch of {want} windows needs at least one")]
    TooFewConversations { have: usize, want: usize },
    #[error("{backend}, window {n}, {steps} steps: {source}")]
    Pipeline {
        backend: &'static str,
        n: usize,
        steps: usize,
        source: Box<PipelineError>,
    },
}

/// Told when the running binary has no counting allocator (the production `gsdnet`).
pub const ALLOCATIONS_HINT: &str =
    "allocations not counted: this binary uses the system allocator; run `gsdnet-bench` (same options) for allocation counts";

/// `gsdnet bench` (and `gsdnet-bench`, which installs the counting allocator first, and adds
/// `--padded` and `--batch`): measures, prints the tables and writes the JSON report (the
/// same keys either way, with the bucketed-vs-padded `speedups` and the batch mode's
/// `batch_rows`). Allocation columns are filled only when `allocations()` sees the counting
/// allocator.
pub fn run_and_report(a: &BenchOptions, extras: &Extras) -> anyhow::Result<()> {
    use anyhow::Context;
    let data = a.data.clone().unwrap_or_else(|| bundled(DEFAULT_DATA));
    let model_dir = a.model.clone().unwrap_or_else(|| bundled(DEFAULT_MODEL));
    if a.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(a.threads)
            .build_global()
            .context("rayon pool")?;
    }
    let manifest = Manifest::load(&model_dir).with_context(|| format!("loading model {}", model_dir.display()))?;
    let rec = crate::dataset::load(&data).with_context(|| format!("loading data {}", data.display()))?;
    let mut cfg = config_of(a, &manifest)?;
    if !extras.providers.is_empty() {
        cfg.opts.providers = extras.providers.clone();
    }
    cfg.opts.require_accelerator = extras.require_accelerator;
    // TensorRT's optimisation profile must cover the largest batch measured.
    cfg.opts.max_batch = extras.batches.iter().copied().max().unwrap_or(0);
    eprintln!(
        "bench {} on {} ({} utterances), missing rate {}, threads {}, buckets {:?}",
        manifest.model.name,
        data.display(),
        rec.n_utterances(),
        cfg.rate,
        if a.threads == 0 {
            "engine default".to_string()
        } else {
            a.threads.to_string()
        },
        manifest.buckets,
    );
    let report = run_extended(&manifest, &rec, &cfg, extras)?;
    let peak = peak_rss_kib();
    print_report(&report, &manifest, peak);
    let counted = allocations().is_some();
    if !counted {
        eprintln!("{ALLOCATIONS_HINT}");
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "model": manifest.model.name,
            "data": data.display().to_string(),
            "threads": a.threads,
            "missing_rate": cfg.rate,
            "seed": cfg.seed,
            "buckets": manifest.buckets,
            "peak_rss_kib": peak,
            "allocations_counted": counted,
            "rows": report.rows,
            "speedups": report.speedups,
            "batch_rows": report.batch_rows,
        });
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `run_cli`'s stdout: the tables of `report` and the peak resident memory.
fn print_report(report: &Report, manifest: &Manifest, peak: Option<u64>) {
    print!("{}", table(&report.rows));
    if !report.speedups.is_empty() {
        println!(
            "\nbucketed vs padded to W = {} (whole window p50, ms):",
            manifest.dims.window
        );
        print!("{}", speedup_table(&report.speedups));
    }
    if !report.batch_rows.is_empty() {
        println!(
            "\nbatch mode: {} windows, one per conversation (sizes {:?}):",
            report.batch_rows[0].windows, report.batch_rows[0].sizes
        );
        print!("{}", batch_table(&report.batch_rows));
    }
    println!(
        "peak resident memory (VmHWM): {}",
        peak.map_or("unknown".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    );
}
