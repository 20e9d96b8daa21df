//! Latency and memory benchmark of the inference pipeline (`gsdnet bench`): p50/p99 of one
//! window, whole and per `Stage`, over window sizes, sampler steps and compiled backends, on real
//! utterances of a recording; heap allocations per steady-state window and peak resident memory.
//!
//! Allocations are counted by `CountingAlloc`, which this module defines but never installs: only
//! a binary that declares it `#[global_allocator]` (`gsdnet-bench` does; the production `gsdnet`
//! binary does not, so the daemon pays no atomic per allocation) gets counts; without it
//! `allocations()` is `None` and the report says so. Timing uses the wall clock of the thread
//! that runs the windows; nothing here runs concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::backend::{BackendKind, BackendOptions};
use crate::diffusion::{SamplerKind, SeededNoise};
use crate::manifest::Manifest;
use crate::masks::random_mask;
use crate::modality::Modalities;
use crate::model::{Model, ModelError};
use crate::pipeline::{
    Completion, Pipeline, PipelineError, Stage, StageObserver, Utterance, Window, WindowOutput,
};
use crate::recording::{Recording, UtteranceRecord};

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
    #[error("{backend}, window {n}, {steps} steps: {source}")]
    Pipeline {
        backend: &'static str,
        n: usize,
        steps: usize,
        source: Box<PipelineError>,
    },
}

static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// A global allocator that counts allocations (alloc, alloc_zeroed, realloc) and defers to
/// `System`. Install it in a binary with `#[global_allocator]`.
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `System`; the counter has no effect on memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap allocations counted so far (one plain load, no probe): meaningful only once
/// `allocations()` has shown that `CountingAlloc` is installed.
pub fn allocation_count() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Heap allocations so far in this process, or `None` when `CountingAlloc` is not installed
/// (it allocates one probe to find out).
pub fn allocations() -> Option<u64> {
    let before = ALLOCS.load(Ordering::Relaxed);
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    let after = ALLOCS.load(Ordering::Relaxed);
    (after > before).then_some(after)
}

/// Peak resident set size (VmHWM) of this process in KiB, when /proc is there.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
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

/// p50, p99, mean and max of one series, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Stats {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    /// Nearest-rank percentiles; `ms` must be non-empty.
    pub fn of(ms: &mut [f64]) -> Stats {
        ms.sort_by(f64::total_cmp);
        let rank =
            |p: f64| ms[(((p * ms.len() as f64).ceil() as usize).max(1) - 1).min(ms.len() - 1)];
        Stats {
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
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
    pub window: usize,
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

/// Records when each stage of one window ends, and the allocation counter then (a plain load:
/// meaningful only when `CountingAlloc` is installed).
struct Marks {
    at: [Option<Instant>; 6],
    allocs: [u64; 6],
    start_allocs: u64,
}

impl StageObserver for Marks {
    fn finished(&mut self, stage: Stage) {
        self.allocs[stage as usize] = ALLOCS.load(Ordering::Relaxed);
        self.at[stage as usize] = Some(Instant::now());
    }
}

pub fn backend_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Tract => "tract",
        BackendKind::Ort => "ort",
    }
}

/// The first `n` utterances of the recording in order (across conversation boundaries when
/// one conversation is shorter than `n`).
pub fn utterances(rec: &Recording, n: usize) -> Result<Vec<&UtteranceRecord>, BenchError> {
    let all: Vec<&UtteranceRecord> = rec
        .conversations
        .iter()
        .flat_map(|c| &c.utterances)
        .collect();
    if all.len() < n {
        return Err(BenchError::TooFewUtterances {
            have: all.len(),
            want: n,
        });
    }
    Ok(all[..n].to_vec())
}

/// A window over `utts` with the seeded mask of `rate` over the model's modalities.
pub fn masked_window<'a>(utts: &[&'a UtteranceRecord], rate: f64, seed: u64, mods: &Modalities) -> Window<'a> {
    let mask = random_mask(seed, rate, "bench", utts.len(), mods);
    Window {
        utterances: utts
            .iter()
            .zip(&mask)
            .map(|(u, a)| Utterance {
                speaker: u.speaker,
                features: std::array::from_fn(|m| u.features[m].as_deref().filter(|_| a[m])),
            })
            .collect(),
    }
}

/// Timings of one configuration's timed windows, in ms.
struct Series {
    total: Vec<f64>,
    stages: [Vec<f64>; 6],
    allocs: Option<u64>,
    stage_allocs: [u64; 6],
}

/// One window into the reused `out`, as a streaming caller runs it.
fn run_one(
    pipe: &mut Pipeline,
    window: &Window,
    cfg: &BenchConfig,
    marks: &mut Marks,
    out: &mut WindowOutput,
) -> Result<Instant, PipelineError> {
    let mut noise = SeededNoise::for_window(cfg.seed, 0, "bench", 0);
    marks.at = [None; 6];
    marks.start_allocs = ALLOCS.load(Ordering::Relaxed);
    let start = Instant::now();
    pipe.run_into(window, Completion::Gsdnet, &mut noise, marks, out)?;
    std::hint::black_box(&*out);
    Ok(start)
}

/// Warm-up, then timed windows until `iters` (or the time budget) is reached.
fn measure(
    pipe: &mut Pipeline,
    window: &Window,
    cfg: &BenchConfig,
) -> Result<Series, PipelineError> {
    let mut marks = Marks {
        at: [None; 6],
        allocs: [0; 6],
        start_allocs: 0,
    };
    let mut out = WindowOutput::default();
    for _ in 0..cfg.warmup.max(1) {
        run_one(pipe, window, cfg, &mut marks, &mut out)?;
    }
    let (min_iters, cap) = if cfg.iters > 0 {
        (cfg.iters, cfg.iters)
    } else {
        (10, 100_000)
    };
    let mut s = Series {
        total: Vec::new(),
        stages: Default::default(),
        allocs: None,
        stage_allocs: [0; 6],
    };
    let began = Instant::now();
    while s.total.len() < cap && (s.total.len() < min_iters || began.elapsed() < cfg.budget) {
        let start = run_one(pipe, window, cfg, &mut marks, &mut out)?;
        let mut prev = start;
        let mut prev_allocs = marks.start_allocs;
        for (i, &a) in marks.allocs.iter().enumerate() {
            s.stage_allocs[i] += a.saturating_sub(prev_allocs);
            prev_allocs = a;
        }
        for (i, at) in marks.at.iter().enumerate() {
            // Invariant of run_observed: every stage is marked once, in order, on success.
            let at = at.unwrap_or(prev);
            s.stages[i].push(at.duration_since(prev).as_secs_f64() * 1e3);
            prev = at;
        }
        s.total.push(prev.duration_since(start).as_secs_f64() * 1e3);
    }
    // Counted from the window's start to its last stage only, so the bench's own bookkeeping
    // (the pushes above) is not in it.
    s.allocs = allocations().map(|_| s.stage_allocs.iter().sum());
    Ok(s)
}

fn missing_entries(window: &Window) -> usize {
    window
        .utterances
        .iter()
        .map(|u| u.features.iter().filter(|f| f.is_none()).count())
        .sum()
}

fn row(kind: BackendKind, pipe: &Pipeline, window: &Window, mut s: Series) -> BenchRow {
    let steps = pipe.sde().steps;
    let mut per_step: Vec<f64> = s.stages[Stage::Sampler as usize]
        .iter()
        .map(|v| v / steps as f64)
        .collect();
    let iters = s.total.len();
    BenchRow {
        backend: backend_name(kind),
        provider: pipe.model().provider(),
        window: window.utterances.len(),
        sampler: pipe.sde().kind.name(),
        steps,
        samples: pipe.samples(),
        score_calls: pipe.samples() * pipe.sde().kind.score_calls(steps),
        iters,
        missing_entries: missing_entries(window),
        total: Stats::of(&mut s.total),
        stages: Stage::ALL
            .iter()
            .zip(s.stages.iter_mut())
            .map(|(st, v)| (st.name().to_string(), Stats::of(v)))
            .collect(),
        sampler_step: Stats::of(&mut per_step),
        allocs_per_window: s.allocs.map(|a| a as f64 / iters as f64),
        allocs_per_stage: s.allocs.map(|_| {
            Stage::ALL
                .iter()
                .zip(s.stage_allocs)
                .map(|(st, a)| (st.name().to_string(), a as f64 / iters as f64))
                .collect()
        }),
    }
}

/// Measures every (backend, size, steps) of `cfg` on utterances of `rec`; one model load per
/// backend.
pub fn run(
    manifest: &Manifest,
    rec: &Recording,
    cfg: &BenchConfig,
) -> Result<Vec<BenchRow>, BenchError> {
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
    let mut windows = Vec::new();
    for &n in &cfg.sizes {
        if n == 0 || n > w {
            return Err(BenchError::WindowSize { n, w });
        }
        windows.push(utterances(rec, n)?);
    }
    let mut rows = Vec::new();
    for &kind in &cfg.backends {
        let backend = backend_name(kind);
        let model = Model::from_manifest(manifest.clone(), kind, &cfg.opts).map_err(|source| {
            BenchError::Model {
                backend,
                source: Box::new(source),
            }
        })?;
        let setup = |source| BenchError::Setup { backend, source: Box::new(source) };
        let mut pipe = Pipeline::new(model, None).map_err(setup)?;
        pipe.set_sampler(cfg.sampler).map_err(setup)?;
        pipe.set_samples(cfg.samples).map_err(setup)?;
        for utts in &windows {
            let window = masked_window(utts, cfg.rate, cfg.seed, &pipe.model().manifest.modalities);
            for &steps in &cfg.steps {
                let err = |source| BenchError::Pipeline {
                    backend,
                    n: utts.len(),
                    steps,
                    source: Box::new(source),
                };
                pipe.set_steps(Some(steps)).map_err(err)?;
                let series = measure(&mut pipe, &window, cfg).map_err(err)?;
                log::debug!(
                    "{backend} n={} steps={steps}: {} windows",
                    utts.len(),
                    series.total.len()
                );
                rows.push(row(kind, &pipe, &window, series));
            }
        }
    }
    Ok(rows)
}

/// A readable table of `rows`: whole-window and per-stage p50 / p99 in ms.
pub fn table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<6} {:>3} {:>4} {:>5} {:>6} {:>17} {:>17} {:>17} {:>17} {:>17} {:>17} {:>9}\n",
        "engine",
        "N",
        "int",
        "steps",
        "iters",
        "window p50/p99",
        "encoders",
        "graph+eigen",
        "sampler step",
        "recon",
        "fusion",
        "allocs/w"
    );
    for r in rows {
        let stage = |name: &str| r.stages.iter().find(|(n, _)| n == name).map(|(_, st)| *st);
        let cell = |st: Option<Stats>| {
            st.map_or("-".to_string(), |st| {
                format!("{:.3}/{:.3}", st.p50_ms, st.p99_ms)
            })
        };
        let allocs = r
            .allocs_per_window
            .map_or("n/a".to_string(), |a| format!("{a:.0}"));
        s += &format!(
            "{:<6} {:>3} {:>4} {:>5} {:>6} {:>17} {:>17} {:>17} {:>17} {:>17} {:>17} {:>9}\n",
            r.backend,
            r.window,
            if r.sampler == SamplerKind::PfOdeHeun.name() { "heun" } else { "em" },
            r.steps,
            r.iters,
            cell(Some(r.total)),
            cell(stage("encoders")),
            cell(stage("graph+eigen")),
            cell(Some(r.sampler_step)),
            cell(stage("recon")),
            cell(stage("fusion")),
            allocs
        );
    }
    s
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

    #[test]
    fn reads_vm_hwm() {
        let status = "Name:\tgsdnet\nVmPeak:\t  9000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12345));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB\n"), None);
        assert!(peak_rss_kib().is_some_and(|k| k > 0));
    }

    #[test]
    fn library_tests_do_not_count_allocations() {
        // The test harness does not install CountingAlloc, so counts must be absent, not zero.
        assert_eq!(allocations(), None);
    }
}
