//! Subcommands of the `gsdnet` binary: `eval`, `import`, `bench` and `check` (`run_bench` is
//! also the whole of the `gsdnet-bench` binary). Argument parsing with clap, errors with anyhow
//! context; the work itself is in the library. `check` and `daemon` hold the `check` and
//! daemon-side subcommands (`serve`, `check-config`, `warmup`, `record`, `replay`).

pub mod bench_frontend;
pub mod check;
pub mod daemon;
pub mod exit;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{BackendKind, BackendOptions};
use crate::bench;
use crate::diffusion::SamplerKind;
use crate::eval::{self, EvalConfig, Scenario};
use crate::frontend::{self, TextFrontend};
use crate::manifest::{CompletionChoice, Manifest};
use crate::masks::{check_rate, Pattern};
use crate::modality::Modalities;
use crate::model::Model;
use crate::paths::{bundled, DEFAULT_DATA, DEFAULT_MODEL};
use crate::pipeline::{Pipeline, PipelineError, PipelineOptions};
use crate::{dataset, recording::Recording};

#[derive(Debug, Parser)]
#[command(
    name = "gsdnet",
    version,
    about = "GSDNet edge runtime: multimodal sentiment with missing-modality completion"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate a model on a recording or a split folder under simulated dropouts.
    Eval(EvalArgs),
    /// Convert a split folder (utterances.csv + text/audio/visual.f32) into a recording file.
    Import(ImportArgs),
    #[command(flatten)]
    Daemon(daemon::DaemonCommand),
    /// Latency (p50/p99, whole window and per stage) and peak memory per backend; allocation
    /// counts need the `gsdnet-bench` binary (same options).
    Bench(BenchArgs),
    /// Cost of the text frontend (tokenise + encoder) per utterance, batch 1 and batched.
    BenchFrontend(bench_frontend::BenchFrontendArgs),
    /// Compiled backends, ONNX Runtime library, provider per part, golden parity, window latency.
    Check(check::CheckArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Recording file or split folder [default: the bundled data/mosi-val.gsdrec]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model folder with manifest.toml [default: the bundled models/gsdnet-mosi]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Engines, comma separated [default: every compiled one]
    #[arg(long, value_delimiter = ',')]
    pub backend: Option<Vec<BackendKind>>,
    /// Valid utterances per window, comma separated
    #[arg(long, value_delimiter = ',', default_value = "16,32,64")]
    pub sizes: Vec<usize>,
    /// Sampler steps, comma separated
    #[arg(long, value_delimiter = ',', default_value = "10,25,50,100")]
    pub steps: Vec<usize>,
    /// Integrator: euler_maruyama_inpaint (em) or pf_ode_heun_inpaint (heun) [default: the
    /// manifest's]
    #[arg(long)]
    pub sampler: Option<SamplerKind>,
    /// Completion samples per window, 1..=64 [default: the manifest's `[sde] samples`]
    #[arg(long)]
    pub samples: Option<usize>,
    /// Only window 32 at the manifest's steps, 20 windows (a smoke run)
    #[arg(long)]
    pub quick: bool,
    /// Timed windows per configuration [default: as many as fit in --budget-ms, at least 10]
    #[arg(long, default_value_t = 0)]
    pub iters: usize,
    /// Time per configuration when --iters is not given
    #[arg(long, default_value_t = 250)]
    pub budget_ms: u64,
    /// Untimed windows before each configuration
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Missing rate of the seeded mask
    #[arg(long, default_value_t = 0.3)]
    pub rate: f64,
    /// Mask and sampler seed
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Engine and rayon threads (1 = single core) [default: engine's choice]
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write the rows and peak memory as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Recording file or split folder [default: the bundled data/mosi-val.gsdrec]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model folder with manifest.toml [default: the bundled models/gsdnet-mosi]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Completion modes, comma separated; `default` is the manifest's [completion] policy
    #[arg(long, value_delimiter = ',', default_value = "default,gsdnet,meanfill,zero")]
    pub completion: Vec<CompletionChoice>,
    /// Mask and sampler seeds, comma separated
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Sampler steps [default: the manifest's]
    #[arg(long)]
    pub steps: Option<usize>,
    /// Integrator: euler_maruyama_inpaint (em) or pf_ode_heun_inpaint (heun) [default: the
    /// manifest's]
    #[arg(long)]
    pub sampler: Option<SamplerKind>,
    /// Completion samples per window of the gsdnet mode, 1..=64 (probabilities averaged)
    /// [default: the manifest's `[sde] samples`]
    #[arg(long)]
    pub samples: Option<usize>,
    /// Missing rates, comma separated [default: 0.0,...,0.7 unless --patterns is given]
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Fixed patterns (T, A, V, TA, TV, AV, TAV), comma separated [default: all unless --rates
    /// is given]
    #[arg(long, value_delimiter = ',')]
    pub patterns: Option<Vec<Pattern>>,
    /// Write the results as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Inference engine: tract or ort
    #[arg(long, default_value = "tract")]
    pub backend: BackendKind,
    /// Worker threads [default: all cores]
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Split folder in the shared layout
    pub dir: PathBuf,
    /// Output recording file
    #[arg(short, long)]
    pub output: PathBuf,
    /// Model the recording is for: when its text modality is a frontend, the text vectors are
    /// the frontend's embeddings of the split's transcripts.csv (what a sensor sending the
    /// transcript gets), not the split's text.f32
    #[arg(long)]
    pub model: Option<PathBuf>,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eval(a) => run_eval(a),
        Command::Import(a) => run_import(a),
        Command::Daemon(c) => daemon::run(c),
        Command::Bench(a) => run_bench(a),
        Command::BenchFrontend(a) => bench_frontend::run(a),
        Command::Check(a) => check::run_check(a),
    }
}

fn scenarios(a: &EvalArgs, mods: &Modalities) -> Result<Vec<Scenario>> {
    if a.rates.is_none() && a.patterns.is_none() {
        return Ok(EvalConfig::default_scenarios(mods));
    }
    let mut out = Vec::new();
    for &r in a.rates.iter().flatten() {
        out.push(Scenario::Rate(check_rate(r)?));
    }
    out.extend(a.patterns.iter().flatten().map(|&p| Scenario::Pattern(p)));
    Ok(out)
}

fn run_eval(a: EvalArgs) -> Result<()> {
    let data = a.data.clone().unwrap_or_else(|| bundled(DEFAULT_DATA));
    let model_dir = a.model.clone().unwrap_or_else(|| bundled(DEFAULT_MODEL));
    if a.completion.is_empty() || a.seeds.is_empty() {
        return Err(exit::UsageError("--completion and --seeds need at least one value".into()).into());
    }
    let manifest = Manifest::load(&model_dir).with_context(|| format!("loading model {}", model_dir.display()))?;
    let cfg = EvalConfig {
        completions: a.completion.clone(),
        seeds: a.seeds.clone(),
        scenarios: scenarios(&a, &manifest.modalities)?,
        threads: a.threads,
    };
    let mut rec = dataset::load(&data).with_context(|| format!("loading data {}", data.display()))?;
    if rec.n_utterances() == 0 {
        bail!("{} holds no utterances", data.display());
    }
    // Fail early, on this thread, on anything the workers would fail on.
    let opts = BackendOptions::default();
    encode_text_view(&manifest, a.backend, &opts, &mut rec, &data)?;
    let popts = PipelineOptions {
        steps: a.steps,
        sampler: a.sampler,
        samples: a.samples,
        max_batch: 1,
    };
    let make = || -> Result<Pipeline, PipelineError> {
        Pipeline::new(Model::from_manifest(manifest.clone(), a.backend, &opts)?, &popts)
    };
    let (steps, sampler, samples) = make().map(|p| (p.sde().steps, p.sde().kind, p.samples()))?;
    eprintln!(
        "evaluating {} ({} conversations, {} utterances) with {} on {}: {} scenarios x {} seeds x {} completions, {sampler} {steps} steps, {samples} sample(s)",
        data.display(),
        rec.conversations.len(),
        rec.n_utterances(),
        manifest.model.name,
        a.backend.name(),
        cfg.scenarios.len(),
        cfg.seeds.len(),
        cfg.completions.len(),
    );
    let rows = evaluate_with_progress(&rec, &cfg, &make)?;
    println!(
        "classes (f1 per class in this order): {}",
        manifest.model.classes.join(" ")
    );
    print!("{}", eval::table(&rows));
    if let Some(path) = &a.json {
        let doc = eval_json(&manifest, &data, &cfg, (steps, sampler, samples), a.backend, &rows);
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The `--json` document of `gsdnet eval`: the model, the data, the seeds, the sampler the
/// pipeline resolved (steps, kind, samples), the backend and the result rows.
fn eval_json(
    manifest: &Manifest,
    data: &Path,
    cfg: &EvalConfig,
    (steps, sampler, samples): (usize, SamplerKind, usize),
    backend: BackendKind,
    rows: &[eval::ResultRow],
) -> serde_json::Value {
    serde_json::json!({
        "model": manifest.model.name,
        "model_version": manifest.model.version,
        "data": data.display().to_string(),
        "seeds": cfg.seeds,
        "steps": steps,
        "sampler": sampler.name(),
        "samples": samples,
        "temperature": manifest.calibration.temperature,
        "classes": manifest.model.classes,
        "modalities": manifest.modalities.letters(),
        "backend": backend.name(),
        "results": rows,
    })
}

/// `eval::evaluate` under a progress bar on stderr (cleared at the end), then its wall time.
fn evaluate_with_progress(
    rec: &Recording,
    cfg: &EvalConfig,
    make: &(dyn Fn() -> Result<Pipeline, PipelineError> + Sync),
) -> Result<Vec<eval::ResultRow>> {
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} tasks {elapsed_precise} eta {eta}",
    )?);
    let started = Instant::now();
    let progress = |total: usize| {
        bar.set_length(total as u64);
        bar.inc(1);
    };
    let rows = eval::evaluate(rec, cfg, make, &progress)?;
    bar.finish_and_clear();
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(rows)
}

/// Gives `rec` (read from `data`) the text view of `manifest`: when the model's text modality
/// is a frontend, every utterance's text vector becomes the frontend's embedding of its
/// transcript (the daemon's code path); otherwise nothing changes.
fn encode_text_view(
    manifest: &Manifest,
    backend: BackendKind,
    opts: &BackendOptions,
    rec: &mut Recording,
    data: &std::path::Path,
) -> Result<()> {
    let Some(mut front) = TextFrontend::for_manifest(manifest, backend, opts).context("loading the text frontend")?
    else {
        return Ok(());
    };
    let started = Instant::now();
    let n = frontend::recording::encode_split(rec, data, &mut front).context("encoding the transcripts")?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "text: {n} transcripts encoded by the text frontend on {} in {secs:.1} s",
        front.provider()
    );
    Ok(())
}

fn run_import(a: ImportArgs) -> Result<()> {
    let mut rec: Recording = dataset::read_split(&a.dir).with_context(|| format!("reading {}", a.dir.display()))?;
    if let Some(dir) = &a.model {
        let manifest = Manifest::load(dir).with_context(|| format!("loading model {}", dir.display()))?;
        encode_text_view(
            &manifest,
            BackendKind::Tract,
            &BackendOptions::default(),
            &mut rec,
            &a.dir,
        )?;
    }
    rec.write(&a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "wrote {} ({} conversations, {} utterances)",
        a.output.display(),
        rec.conversations.len(),
        rec.n_utterances()
    );
    Ok(())
}

/// `gsdnet bench` (`gsdnet-bench` calls `bench::run_and_report` with its extras).
pub fn run_bench(a: BenchArgs) -> Result<()> {
    bench::run_and_report(&a.options(), &bench::Extras::default())
}

impl BenchArgs {
    /// The arguments as the bench's options.
    pub fn options(&self) -> bench::BenchOptions {
        bench::BenchOptions {
            data: self.data.clone(),
            model: self.model.clone(),
            backends: self.backend.clone(),
            sizes: self.sizes.clone(),
            steps: self.steps.clone(),
            sampler: self.sampler,
            samples: self.samples,
            quick: self.quick,
            iters: self.iters,
            budget_ms: self.budget_ms,
            warmup: self.warmup,
            rate: self.rate,
            seed: self.seed,
            threads: self.threads,
            json: self.json.clone(),
        }
    }
}
