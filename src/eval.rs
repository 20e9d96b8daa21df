//! Offline evaluation (`gsdnet eval`): simulated dropouts on a recording at seeded missing rates
//! and fixed patterns, every completion mode on the same masks, metrics averaged over seeds:
//! acc2, weighted F1 and MAE of the labels, and the confidence metrics of the published
//! (calibrated) probabilities (`metrics::Scored`: nll, brier, ece, acc_cov50, acc_cov80, aurc),
//! each the mean over seeds of its per-seed value.
//!
//! Work is split into (conversation, scenario) tasks run by a rayon pool; each worker thread owns
//! one `Pipeline`. Results are gathered in task order, so the numbers do not depend on
//! scheduling.

use std::sync::Mutex;

use serde::Serialize;
use thiserror::Error;

use crate::diffusion::SeededNoise;
use crate::masks::{self, Avail, Pattern};
use crate::metrics::{self, ConfidenceMetrics, MetricsError, Scored};
use crate::pipeline::{Completion, Pipeline, PipelineError, Utterance, Window};
use crate::recording::{Conversation, Recording};

#[derive(Debug, Error)]
pub enum EvalError {
    #[error("the recording holds no labelled utterance")]
    NoLabels,
    #[error("conversation `{conv}`, window {window}, {scenario}, seed {seed}, {completion}: {source}")]
    Pipeline {
        conv: String,
        window: usize,
        scenario: String,
        seed: u64,
        completion: Completion,
        source: Box<PipelineError>,
    },
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    #[error("worker {0}: {1}")]
    Worker(usize, String),
    #[error("{scenario}, seed {seed}, {completion}: {source}")]
    Metrics {
        scenario: String,
        seed: u64,
        completion: Completion,
        source: MetricsError,
    },
}

/// One evaluation condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scenario {
    /// Seeded random masks at this missing rate.
    Rate(f64),
    /// The same availability on every utterance.
    Pattern(Pattern),
}

impl Scenario {
    /// The `scenario` label of the sampler stream key.
    pub fn key(self) -> u64 {
        match self {
            Scenario::Rate(r) => masks::rate_millis(r),
            Scenario::Pattern(p) => 1000 + p.bits(),
        }
    }

    fn mask(self, seed: u64, conv_id: &str, n: usize) -> Vec<Avail> {
        match self {
            Scenario::Rate(r) => masks::random_mask(seed, r, conv_id, n),
            Scenario::Pattern(p) => vec![p.avail(); n],
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scenario::Rate(r) => write!(f, "rate {r:.1}"),
            Scenario::Pattern(p) => write!(f, "pattern {p}"),
        }
    }
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub completions: Vec<Completion>,
    pub seeds: Vec<u64>,
    pub scenarios: Vec<Scenario>,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

impl EvalConfig {
    /// Rates 0.0..=0.7 by 0.1, then every fixed pattern.
    pub fn default_scenarios() -> Vec<Scenario> {
        let rates = (0..=7).map(|i| Scenario::Rate(f64::from(i) / 10.0));
        rates
            .chain(Pattern::ALL.into_iter().map(Scenario::Pattern))
            .collect()
    }
}

/// One line of the results (the JSON shape of the issue).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResultRow {
    pub missing_rate: Option<f64>,
    pub pattern: Option<String>,
    pub completion: String,
    pub acc2: f64,
    pub f1_weighted: f64,
    pub mae: Option<f64>,
    /// Confidence metrics of the published probabilities (JSON: keys next to the others).
    #[serde(flatten)]
    pub confidence: ConfidenceMetrics,
    /// Labelled utterances scored per seed.
    pub n: usize,
}

/// Predictions of one (scenario, seed, completion) over some utterances. Invariant: `probs`
/// holds `classes` values per entry of `label` (row-major), in the same utterance order.
#[derive(Debug, Clone, Default)]
struct Preds {
    label: Vec<u8>,
    probs: Vec<f32>,
    classes: usize,
    reg: Vec<f32>,
    truth_bin: Vec<u8>,
    truth_cont: Vec<f32>,
}

impl Preds {
    fn extend(&mut self, other: &Preds) {
        self.label.extend(&other.label);
        self.probs.extend(&other.probs);
        self.classes = self.classes.max(other.classes);
        self.reg.extend(&other.reg);
        self.truth_bin.extend(&other.truth_bin);
        self.truth_cont.extend(&other.truth_cont);
    }

    fn push(&mut self, label: usize, probs: &[f32], reg: Option<f32>, truth: (u8, f32)) {
        self.label.push(label as u8);
        self.probs.extend_from_slice(probs);
        self.classes = probs.len();
        self.reg.push(reg.unwrap_or(f32::NAN));
        self.truth_bin.push(truth.0);
        self.truth_cont.push(truth.1);
    }
}

/// Runs every (seed, completion) of one scenario on one conversation; `out[seed][completion]`.
fn run_task(
    pipe: &mut Pipeline,
    conv: &Conversation,
    scenario: Scenario,
    cfg: &EvalConfig,
) -> Result<Vec<Vec<Preds>>, EvalError> {
    let w = pipe.model().manifest.dims.window;
    let utts = &conv.utterances;
    let mut out = vec![vec![Preds::default(); cfg.completions.len()]; cfg.seeds.len()];
    for (si, &seed) in cfg.seeds.iter().enumerate() {
        let mask = scenario.mask(seed, &conv.id, utts.len());
        for (wi, chunk) in utts.chunks(w).enumerate() {
            let window = Window {
                utterances: chunk
                    .iter()
                    .zip(&mask[wi * w..])
                    .map(|(u, a)| Utterance {
                        speaker: u.speaker,
                        features: std::array::from_fn(|m| u.features[m].as_deref().filter(|_| a[m])),
                    })
                    .collect(),
            };
            for (ci, &completion) in cfg.completions.iter().enumerate() {
                let mut noise = SeededNoise::for_window(seed, scenario.key(), &conv.id, wi as u64);
                let res =
                    pipe.run(&window, completion, &mut noise)
                        .map_err(|source| EvalError::Pipeline {
                            conv: conv.id.clone(),
                            window: wi,
                            scenario: scenario.to_string(),
                            seed,
                            completion,
                            source: Box::new(source),
                        })?;
                let p = &mut out[si][ci];
                for (u, r) in chunk.iter().zip(&res.utterances) {
                    let (Some(bin), Some(cont)) = (u.label_bin, u.label_cont) else {
                        continue;
                    };
                    p.push(r.label, &r.probs, r.regression, (bin, cont));
                }
            }
        }
    }
    Ok(out)
}

/// Evaluates `rec` with one pipeline per worker (built by `make_pipeline`). `progress` is
/// called once per finished task with the number of tasks.
pub fn evaluate(
    rec: &Recording,
    cfg: &EvalConfig,
    make_pipeline: &(dyn Fn() -> Result<Pipeline, PipelineError> + Sync),
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<ResultRow>, EvalError> {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| EvalError::Threads(e.to_string()))?;
    let workers: Vec<Mutex<Option<Pipeline>>> = (0..pool.current_num_threads())
        .map(|_| Mutex::new(None))
        .collect();
    let tasks: Vec<(usize, usize)> = (0..cfg.scenarios.len())
        .flat_map(|s| (0..rec.conversations.len()).map(move |c| (s, c)))
        .collect();
    let results: Vec<Result<Vec<Vec<Preds>>, EvalError>> = pool.install(|| {
        tasks
            .par_iter()
            .map(|&(s, c)| {
                let idx = rayon::current_thread_index().unwrap_or(0);
                let mut slot = workers[idx]
                    .lock()
                    .map_err(|e| EvalError::Worker(idx, e.to_string()))?;
                if slot.is_none() {
                    *slot = Some(make_pipeline().map_err(|e| EvalError::Worker(idx, e.to_string()))?);
                }
                let pipe = slot
                    .as_mut()
                    .ok_or_else(|| EvalError::Worker(idx, "no pipeline".into()))?;
                let r = run_task(pipe, &rec.conversations[c], cfg.scenarios[s], cfg);
                progress(tasks.len());
                r
            })
            .collect()
    });
    let mut merged =
        vec![vec![vec![Preds::default(); cfg.completions.len()]; cfg.seeds.len()]; cfg.scenarios.len()];
    for (&(s, _), r) in tasks.iter().zip(results) {
        for (si, per_seed) in r?.iter().enumerate() {
            for (ci, p) in per_seed.iter().enumerate() {
                merged[s][si][ci].extend(p);
            }
        }
    }
    aggregate(cfg, &merged)
}

/// The mean over seeds of the confidence metrics of one (scenario, completion).
fn mean_confidence(
    cfg: &EvalConfig,
    scenario: Scenario,
    completion: Completion,
    per_seed: &[&Preds],
) -> Result<ConfidenceMetrics, EvalError> {
    let mut all = Vec::with_capacity(per_seed.len());
    for (&seed, p) in cfg.seeds.iter().zip(per_seed) {
        let scored = Scored::new(&p.probs, p.classes, &p.truth_bin).map_err(|source| EvalError::Metrics {
            scenario: scenario.to_string(),
            seed,
            completion,
            source,
        })?;
        all.push(scored.confidence_metrics());
    }
    Ok(ConfidenceMetrics::mean(&all))
}

/// Mean over seeds of each (scenario, completion).
fn aggregate(cfg: &EvalConfig, merged: &[Vec<Vec<Preds>>]) -> Result<Vec<ResultRow>, EvalError> {
    let mut rows = Vec::new();
    for (s, scenario) in cfg.scenarios.iter().enumerate() {
        for (ci, completion) in cfg.completions.iter().enumerate() {
            let per_seed: Vec<&Preds> = merged[s].iter().map(|v| &v[ci]).collect();
            let n = per_seed.first().map_or(0, |p| p.label.len());
            if n == 0 {
                return Err(EvalError::NoLabels);
            }
            let mean = |f: &dyn Fn(&Preds) -> f64| {
                per_seed.iter().map(|p| f(p)).sum::<f64>() / per_seed.len() as f64
            };
            let has_reg = per_seed.iter().all(|p| p.reg.iter().all(|r| r.is_finite()));
            let (missing_rate, pattern) = match scenario {
                Scenario::Rate(r) => (Some(*r), None),
                Scenario::Pattern(p) => (None, Some(p.to_string())),
            };
            let confidence = mean_confidence(cfg, *scenario, *completion, &per_seed)?;
            rows.push(ResultRow {
                missing_rate,
                pattern,
                completion: completion.name().to_string(),
                acc2: mean(&|p| metrics::accuracy(&p.label, &p.truth_bin)),
                f1_weighted: mean(&|p| metrics::f1_weighted(&p.label, &p.truth_bin)),
                mae: has_reg.then(|| mean(&|p| metrics::mae(&p.reg, &p.truth_cont))),
                confidence,
                n,
            });
        }
    }
    Ok(rows)
}

fn scenario_label(r: &ResultRow) -> String {
    match (&r.missing_rate, &r.pattern) {
        (Some(rate), _) => format!("rate {rate:.1}"),
        (None, Some(p)) => format!("pattern {p}"),
        (None, None) => "-".into(),
    }
}

/// Readable tables, one line per scenario and completion: the label metrics, then the
/// confidence metrics of the probabilities.
pub fn table(rows: &[ResultRow]) -> String {
    let mut s = format!(
        "{:<12} {:<10} {:>7} {:>7} {:>7} {:>5}\n",
        "scenario", "completion", "acc2", "f1_w", "mae", "n"
    );
    for r in rows {
        let mae = r.mae.map_or("-".to_string(), |m| format!("{m:.4}"));
        s += &format!(
            "{:<12} {:<10} {:>7.4} {:>7.4} {:>7} {:>5}\n",
            scenario_label(r), r.completion, r.acc2, r.f1_weighted, mae, r.n
        );
    }
    s += &format!(
        "\nconfidence (ECE: {} bins; acc@c: the c most confident):\n",
        metrics::ECE_BINS
    );
    s += &format!(
        "{:<12} {:<10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
        "scenario", "completion", "nll", "brier", "ece", "acc@50", "acc@80", "aurc"
    );
    for r in rows {
        let cols: Vec<String> = r.confidence.values().iter().map(|v| format!("{v:>7.4}")).collect();
        s += &format!("{:<12} {:<10} {}\n", scenario_label(r), r.completion, cols.join(" "));
    }
    s
}
