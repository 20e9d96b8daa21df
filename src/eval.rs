//! Offline evaluation (`gsdnet eval`): simulated dropouts on a recording at seeded missing rates
//! and fixed patterns over the model's modalities, every completion mode on the same masks
//! (and `default`, the manifest's `[completion]` policy resolved per window),
//! metrics averaged over seeds: accuracy, weighted F1 and per-class F1 of the K-class labels
//! (confusion counts summed over seeds), acc2 and MAE where the model has a regression head, and the confidence metrics of the published
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
use crate::manifest::{avail_bits, CompletionChoice};
use crate::masks::{self, Avail, Pattern};
use crate::metrics::{self, ConfidenceMetrics, MetricsError, Scored};
use crate::modality::{Modalities, Modality};
use crate::pipeline::{Completion, Pipeline, PipelineError, Utterance, Window};
use crate::recording::{Conversation, Recording};

#[derive(Debug, Error)]
pub enum EvalError {
    #[error("the recording holds no labelled utterance")]
    NoLabels,
    #[error("the model needs {modality} features and no utterance of the recording has any")]
    MissingModality { modality: Modality },
    #[error("conversation `{conv}`, utterance `{utt}`: label {label} is not one of the model's {k} classes")]
    Label {
        conv: String,
        utt: String,
        label: u32,
        k: usize,
    },
    #[error("{scenario} does not fit the model's modalities ({has})")]
    Scenario { scenario: String, has: String },
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
        completion: CompletionChoice,
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

    fn mask(self, seed: u64, conv_id: &str, n: usize, mods: &Modalities) -> Vec<Avail> {
        match self {
            Scenario::Rate(r) => masks::random_mask(seed, r, conv_id, n, mods),
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
    /// Modes, or `Default` (the manifest's `[completion]`, per window).
    pub completions: Vec<CompletionChoice>,
    pub seeds: Vec<u64>,
    pub scenarios: Vec<Scenario>,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

impl EvalConfig {
    /// Rates 0.0, 0.1, ... up to the model's maximum (`masks::max_rate`), then every pattern
    /// over its modalities.
    pub fn default_scenarios(mods: &Modalities) -> Vec<Scenario> {
        let rates = masks::protocol_rates(mods.count()).into_iter().map(Scenario::Rate);
        rates
            .chain(Pattern::all_for(mods).into_iter().map(Scenario::Pattern))
            .collect()
    }

    /// Refuses scenarios the model cannot have: a pattern naming a modality it lacks, a rate
    /// above its maximum.
    pub fn check_scenarios(&self, mods: &Modalities) -> Result<(), EvalError> {
        let max = masks::max_rate(mods.count());
        for sc in &self.scenarios {
            let fits = match sc {
                Scenario::Rate(r) => *r <= max + 1e-9,
                Scenario::Pattern(p) => p.fits(mods),
            };
            if !fits {
                let has = format!("{}, rates up to {max:.1}", mods.letters());
                return Err(EvalError::Scenario {
                    scenario: sc.to_string(),
                    has,
                });
            }
        }
        Ok(())
    }
}

/// One line of the results (the JSON shape of the issue).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResultRow {
    pub missing_rate: Option<f64>,
    pub pattern: Option<String>,
    pub completion: String,
    pub accuracy: f64,
    pub f1_weighted: f64,
    /// Binary accuracy, where the model has a regression head (CMU-MOSI: equals `accuracy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    /// F1 of each class (mean over seeds), in the manifest's class order.
    pub f1_per_class: Vec<f64>,
    /// Confusion counts `[truth][predicted]`, summed over seeds.
    pub confusion: Vec<Vec<u64>>,
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
    truth: Vec<u8>,
    /// NaN where the data has no continuous label.
    truth_cont: Vec<f32>,
}

impl Preds {
    fn extend(&mut self, other: &Preds) {
        self.label.extend(&other.label);
        self.probs.extend(&other.probs);
        self.classes = self.classes.max(other.classes);
        self.reg.extend(&other.reg);
        self.truth.extend(&other.truth);
        self.truth_cont.extend(&other.truth_cont);
    }

    fn push(&mut self, label: usize, probs: &[f32], reg: Option<f32>, truth: (u8, Option<f32>)) {
        self.label.push(label as u8);
        self.probs.extend_from_slice(probs);
        self.classes = probs.len();
        self.reg.push(reg.unwrap_or(f32::NAN));
        self.truth.push(truth.0);
        self.truth_cont.push(truth.1.unwrap_or(f32::NAN));
    }
}

/// Runs every (seed, completion) of one scenario on one conversation; `out[seed][completion]`.
fn run_task(
    pipe: &mut Pipeline,
    conv: &Conversation,
    scenario: Scenario,
    cfg: &EvalConfig,
) -> Result<Vec<Vec<Preds>>, EvalError> {
    let (w, mods) = (pipe.model().manifest.dims.window, pipe.model().manifest.modalities);
    let utts = &conv.utterances;
    let mut out = vec![vec![Preds::default(); cfg.completions.len()]; cfg.seeds.len()];
    for (si, &seed) in cfg.seeds.iter().enumerate() {
        let mask = scenario.mask(seed, &conv.id, utts.len(), &mods);
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
            let bits = window.utterances.iter().map(|u| avail_bits(&u.features));
            let policy = &pipe.model().manifest.completion;
            let resolved: Vec<Completion> = cfg
                .completions
                .iter()
                .map(|c| c.resolve(policy, bits.clone()))
                .collect();
            for (ci, &completion) in resolved.iter().enumerate() {
                let mut noise = SeededNoise::for_window(seed, scenario.key(), &conv.id, wi as u64);
                let res = pipe
                    .run(&window, completion, &mut noise)
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
                    if let Some(label) = u.label {
                        p.push(r.label, &r.probs, r.regression, (label as u8, u.label_cont));
                    }
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
    let first = make_pipeline().map_err(|e| EvalError::Worker(0, e.to_string()))?;
    let man = &first.model().manifest;
    check_recording(rec, &man.modalities, man.model.classes.len())?;
    cfg.check_scenarios(&man.modalities)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| EvalError::Threads(e.to_string()))?;
    let mut first = Some(first);
    let workers: Vec<Mutex<Option<Pipeline>>> = (0..pool.current_num_threads())
        .map(|_| Mutex::new(first.take()))
        .collect();
    let tasks: Vec<(usize, usize)> = (0..cfg.scenarios.len())
        .flat_map(|s| (0..rec.conversations.len()).map(move |c| (s, c)))
        .collect();
    let results: Vec<Result<Vec<Vec<Preds>>, EvalError>> = pool.install(|| {
        tasks
            .par_iter()
            .map(|&(s, c)| {
                let idx = rayon::current_thread_index().unwrap_or(0);
                let mut slot = workers[idx].lock().map_err(|e| EvalError::Worker(idx, e.to_string()))?;
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
    let mut merged = vec![vec![vec![Preds::default(); cfg.completions.len()]; cfg.seeds.len()]; cfg.scenarios.len()];
    for (&(s, _), r) in tasks.iter().zip(results) {
        for (si, per_seed) in r?.iter().enumerate() {
            for (ci, p) in per_seed.iter().enumerate() {
                merged[s][si][ci].extend(p);
            }
        }
    }
    aggregate(cfg, &merged)
}

/// Refuses a recording the model cannot score: a modality the model needs absent from every
/// utterance, a class label outside the model's K classes.
fn check_recording(rec: &Recording, mods: &Modalities, k: usize) -> Result<(), EvalError> {
    let utts = || rec.conversations.iter().flat_map(|c| &c.utterances);
    for modality in mods.iter() {
        if !utts().any(|u| u.features[modality.index()].is_some()) {
            return Err(EvalError::MissingModality { modality });
        }
    }
    if let Some(u) = utts().find(|u| u.label.is_some_and(|l| l as usize >= k)) {
        return Err(EvalError::Label {
            conv: u.conversation.clone(),
            utt: u.id.clone(),
            label: u.label.unwrap_or_default(),
            k,
        });
    }
    Ok(())
}

/// The mean over seeds of the confidence metrics of one (scenario, completion).
fn mean_confidence(
    cfg: &EvalConfig,
    scenario: Scenario,
    completion: CompletionChoice,
    per_seed: &[&Preds],
) -> Result<ConfidenceMetrics, EvalError> {
    let mut all = Vec::with_capacity(per_seed.len());
    for (&seed, p) in cfg.seeds.iter().zip(per_seed) {
        let scored = Scored::new(&p.probs, p.classes, &p.truth).map_err(|source| EvalError::Metrics {
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
            let mean = |f: &dyn Fn(&Preds) -> f64| per_seed.iter().map(|p| f(p)).sum::<f64>() / per_seed.len() as f64;
            let has_reg = per_seed
                .iter()
                .all(|p| p.reg.iter().chain(&p.truth_cont).all(|r| r.is_finite()));
            let (missing_rate, pattern) = match scenario {
                Scenario::Rate(r) => (Some(*r), None),
                Scenario::Pattern(p) => (None, Some(p.to_string())),
            };
            let confidence = mean_confidence(cfg, *scenario, *completion, &per_seed)?;
            let k = per_seed.iter().map(|p| p.classes).max().unwrap_or(0);
            let accuracy = mean(&|p| metrics::accuracy(&p.label, &p.truth));
            let (f1_per_class, confusion) = per_class(&per_seed, k);
            rows.push(ResultRow {
                missing_rate,
                pattern,
                completion: completion.to_string(),
                accuracy,
                f1_weighted: mean(&|p| metrics::f1_weighted(&p.label, &p.truth)),
                acc2: has_reg.then_some(accuracy),
                mae: has_reg.then(|| mean(&|p| metrics::mae(&p.reg, &p.truth_cont))),
                f1_per_class,
                confusion,
                confidence,
                n,
            });
        }
    }
    Ok(rows)
}

/// Per-class F1 (mean over seeds) and confusion counts (summed over seeds) over k classes.
fn per_class(per_seed: &[&Preds], k: usize) -> (Vec<f64>, Vec<Vec<u64>>) {
    let mut f1 = vec![0.0; k];
    let mut conf = vec![vec![0u64; k]; k];
    for p in per_seed {
        for (s, v) in f1.iter_mut().zip(metrics::f1_per_class(&p.label, &p.truth, k)) {
            *s += v / per_seed.len() as f64;
        }
        for (row, add) in conf.iter_mut().zip(metrics::confusion(&p.label, &p.truth, k)) {
            row.iter_mut().zip(add).for_each(|(c, a)| *c += a);
        }
    }
    (f1, conf)
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
        "{:<12} {:<10} {:>7} {:>7} {:>7} {:>5}   {}\n",
        "scenario", "completion", "acc", "f1_w", "mae", "n", "f1 per class"
    );
    for r in rows {
        let mae = r.mae.map_or("-".to_string(), |m| format!("{m:.4}"));
        let per: Vec<String> = r.f1_per_class.iter().map(|f| format!("{f:.3}")).collect();
        s += &format!(
            "{:<12} {:<10} {:>7.4} {:>7.4} {:>7} {:>5}   {}\n",
            scenario_label(r),
            r.completion,
            r.accuracy,
            r.f1_weighted,
            mae,
            r.n,
            per.join(" ")
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
