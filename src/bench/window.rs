//! Single-window runs: the windows measured (the first N utterances, seeded mask), the timed
//! loop over one (backend, size, steps) with per-stage marks and allocation counts, the
//! `BenchRow` it yields, and the bucketed-vs-padded comparison built on it (`run_extended`).

use std::time::Instant;

use super::batch::run_batches;
use super::config::{check_batches, check_config};
use super::{allocation_count, allocations, BenchConfig, BenchError, BenchRow, Extras, Report, Speedup, Stats};
use crate::backend::BackendKind;
use crate::diffusion::SeededNoise;
use crate::manifest::Manifest;
use crate::masks::{random_mask, Avail};
use crate::modality::Modalities;
use crate::model::Model;
use crate::pipeline::{
    Completion, Pipeline, PipelineError, PipelineOptions, Stage, StageObserver, Utterance, Window, WindowOutput,
};
use crate::recording::{Recording, UtteranceRecord};

/// Records when each stage of one window ends, and the allocation counter then (a plain load:
/// meaningful only when `CountingAlloc` is installed).
struct Marks {
    at: [Option<Instant>; 6],
    allocs: [u64; 6],
    start_allocs: u64,
}

impl StageObserver for Marks {
    fn finished(&mut self, stage: Stage) {
        self.allocs[stage as usize] = allocation_count();
        self.at[stage as usize] = Some(Instant::now());
    }
}

/// Timings of one configuration's timed windows, in ms.
struct Series {
    total: Vec<f64>,
    stages: [Vec<f64>; 6],
    allocs: Option<u64>,
    stage_allocs: [u64; 6],
}

/// The first `n` utterances of the recording in order (across conversation boundaries when
/// one conversation is shorter than `n`).
pub fn utterances(rec: &Recording, n: usize) -> Result<Vec<&UtteranceRecord>, BenchError> {
    let all: Vec<&UtteranceRecord> = rec.conversations.iter().flat_map(|c| &c.utterances).collect();
    if all.len() < n {
        return Err(BenchError::TooFewUtterances {
            have: all.len(),
            want: n,
        });
    }
    Ok(all[..n].to_vec())
}

/// A window over `utts` keeping only the features that `mask` marks available.
pub(super) fn window_of<'a>(utts: impl IntoIterator<Item = &'a UtteranceRecord>, mask: &[Avail]) -> Window<'a> {
    Window {
        utterances: utts
            .into_iter()
            .zip(mask)
            .map(|(u, a)| Utterance {
                speaker: u.speaker,
                features: std::array::from_fn(|m| u.features[m].as_deref().filter(|_| a[m])),
            })
            .collect(),
    }
}

/// A window over `utts` with the seeded mask of `rate` over the model's modalities.
pub fn masked_window<'a>(utts: &[&'a UtteranceRecord], rate: f64, seed: u64, mods: &Modalities) -> Window<'a> {
    let mask = random_mask(seed, rate, "bench", utts.len(), mods);
    window_of(utts.iter().copied(), &mask)
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
    marks.start_allocs = allocation_count();
    let start = Instant::now();
    pipe.run_into(window, Completion::Gsdnet, &mut noise, marks, out)?;
    std::hint::black_box(&*out);
    Ok(start)
}

impl Series {
    /// Adds the window that started at `start` and whose stages `marks` holds.
    fn push(&mut self, start: Instant, marks: &Marks) {
        let mut prev = start;
        let mut prev_allocs = marks.start_allocs;
        for (i, &a) in marks.allocs.iter().enumerate() {
            self.stage_allocs[i] += a.saturating_sub(prev_allocs);
            prev_allocs = a;
        }
        for (i, at) in marks.at.iter().enumerate() {
            // Invariant of run_observed: every stage is marked once, in order, on success.
            let at = at.unwrap_or(prev);
            self.stages[i].push(at.duration_since(prev).as_secs_f64() * 1e3);
            prev = at;
        }
        self.total.push(prev.duration_since(start).as_secs_f64() * 1e3);
    }
}

/// Warm-up, then timed windows until `iters` (or the time budget) is reached.
fn measure(pipe: &mut Pipeline, window: &Window, cfg: &BenchConfig) -> Result<Series, PipelineError> {
    let mut marks = Marks {
        at: [None; 6],
        allocs: [0; 6],
        start_allocs: 0,
    };
    let mut out = WindowOutput::default();
    for _ in 0..cfg.warmup.max(1) {
        run_one(pipe, window, cfg, &mut marks, &mut out)?;
    }
    let mut s = Series {
        total: Vec::new(),
        stages: Default::default(),
        allocs: None,
        stage_allocs: [0; 6],
    };
    let began = Instant::now();
    while cfg.more(s.total.len(), began) {
        let start = run_one(pipe, window, cfg, &mut marks, &mut out)?;
        s.push(start, &marks);
    }
    // Counted from the window's start to its last stage only, so the bench's own bookkeeping
    // (the pushes above) is not in it.
    s.allocs = allocations().map(|_| s.stage_allocs.iter().sum());
    Ok(s)
}

pub(super) fn missing_entries(window: &Window) -> usize {
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
        backend: kind.name(),
        provider: pipe.model().provider(),
        layout: if pipe.model().manifest.buckets == [pipe.model().manifest.dims.window] {
            "padded"
        } else {
            "bucketed"
        },
        window: window.utterances.len(),
        bucket: pipe.bucket(window.utterances.len()),
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
pub fn run(manifest: &Manifest, rec: &Recording, cfg: &BenchConfig) -> Result<Vec<BenchRow>, BenchError> {
    check_config(manifest, cfg)?;
    let mut rows = Vec::new();
    for &kind in &cfg.backends {
        rows.extend(run_backend(manifest, rec, cfg, kind)?);
    }
    Ok(rows)
}

/// `manifest` with every window padded to W (one bucket, W): the behaviour before buckets.
pub fn padded_manifest(manifest: &Manifest) -> Manifest {
    let mut m = manifest.clone();
    m.buckets = vec![m.dims.window];
    m
}

/// A pipeline of `manifest` on `kind`, with `cfg`'s sampler and samples.
pub(super) fn pipeline(manifest: &Manifest, cfg: &BenchConfig, kind: BackendKind) -> Result<Pipeline, BenchError> {
    let backend = kind.name();
    let model = Model::from_manifest(manifest.clone(), kind, &cfg.opts).map_err(|source| BenchError::Model {
        backend,
        source: Box::new(source),
    })?;
    let setup = |source| BenchError::Setup {
        backend,
        source: Box::new(source),
    };
    let opts = PipelineOptions {
        steps: None,
        sampler: cfg.sampler,
        samples: cfg.samples,
        max_batch: 1,
    };
    Pipeline::new(model, &opts).map_err(setup)
}

/// Every (size, steps) of `cfg` on one backend, with `manifest`'s buckets.
fn run_backend(
    manifest: &Manifest,
    rec: &Recording,
    cfg: &BenchConfig,
    kind: BackendKind,
) -> Result<Vec<BenchRow>, BenchError> {
    let backend = kind.name();
    let mut windows = Vec::new();
    for &n in &cfg.sizes {
        windows.push(utterances(rec, n)?);
    }
    let mut pipe = pipeline(manifest, cfg, kind)?;
    // Engine plans for one-window calls at every bucket, outside the timings.
    pipe.warm(&[1]).map_err(|source| BenchError::Setup {
        backend,
        source: Box::new(source),
    })?;
    let mut rows = Vec::new();
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
    Ok(rows)
}

/// Bucketed vs padded p50 of each pair of rows (same backend, size and steps, in order).
fn speedups(bucketed: &[BenchRow], padded: &[BenchRow]) -> Vec<Speedup> {
    bucketed
        .iter()
        .zip(padded)
        .map(|(b, p)| Speedup {
            backend: b.backend,
            window: b.window,
            steps: b.steps,
            bucket: b.bucket,
            bucketed_p50_ms: b.total.p50_ms,
            padded_p50_ms: p.total.p50_ms,
            speedup: p.total.p50_ms / b.total.p50_ms,
        })
        .collect()
}

/// `run`, plus padded rows and the batch mode of `extras`.
pub fn run_extended(
    manifest: &Manifest,
    rec: &Recording,
    cfg: &BenchConfig,
    extras: &Extras,
) -> Result<Report, BenchError> {
    check_config(manifest, cfg)?;
    check_batches(&extras.batches)?;
    let padded = padded_manifest(manifest);
    let mut report = Report {
        rows: Vec::new(),
        speedups: Vec::new(),
        batch_rows: Vec::new(),
    };
    for &kind in &cfg.backends {
        // Bucketed and padded back to back per backend, so the ratio shares one machine state.
        let bucketed = run_backend(manifest, rec, cfg, kind)?;
        if extras.padded {
            let pad = run_backend(&padded, rec, cfg, kind)?;
            report.speedups.extend(speedups(&bucketed, &pad));
            report.rows.extend(bucketed);
            report.rows.extend(pad);
        } else {
            report.rows.extend(bucketed);
        }
        if !extras.batches.is_empty() {
            report
                .batch_rows
                .extend(run_batches(manifest, rec, cfg, kind, &extras.batches)?);
        }
    }
    Ok(report)
}
