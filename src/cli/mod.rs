//! Subcommands of the `gsdnet` binary: `eval`, `import`, `bench` and `check` (`run_bench` is
//! also the whole of the `gsdnet-bench` binary). Argument parsing with clap, errors with anyhow
//! context; the work itself is in the library. `check` and `daemon` hold the `check` and
//! daemon-side subcommands (`serve`, `check-config`, `warmup`, `record`, `replay`).

pub mod check;
pub mod daemon;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{BackendKind, BackendOptions};
use crate::bench;
use crate::eval::{self, EvalConfig, Scenario};
use crate::manifest::Manifest;
use crate::masks::{check_rate, Pattern};
use crate::modality::Modalities;
use crate::model::Model;
use crate::diffusion::SamplerKind;
use crate::pipeline::{Completion, Pipeline, PipelineError};
use crate::{dataset, recording::Recording};

/// Bundled defaults, relative to the repository root.
pub const DEFAULT_MODEL: &str = "models/gsdnet-mosi";
pub const DEFAULT_DATA: &str = "data/mosi-val.gsdrec";

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
    /// Completion modes, comma separated
    #[arg(long, value_delimiter = ',', default_value = "gsdnet,meanfill,zero")]
    pub completion: Vec<Completion>,
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
}

/// `rel` in the working directory, else next to this crate's sources (a fresh clone's
/// `cargo run` from elsewhere still finds the bundled files).
fn bundled(rel: &str) -> PathBuf {
    let here = PathBuf::from(rel);
    if here.exists() {
        return here;
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if beside.exists() {
        beside
    } else {
        here
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eval(a) => run_eval(a),
        Command::Import(a) => run_import(a),
        Command::Daemon(c) => daemon::run(c),
        Command::Bench(a) => run_bench(a),
        Command::Check(a) => check::run_check(a, bundled),
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
        bail!("--completion and --seeds need at least one value");
    }
    let manifest =
        Manifest::load(&model_dir).with_context(|| format!("loading model {}", model_dir.display()))?;
    let cfg = EvalConfig {
        completions: a.completion.clone(),
        seeds: a.seeds.clone(),
        scenarios: scenarios(&a, &manifest.modalities)?,
        threads: a.threads,
    };
    let rec = dataset::load(&data).with_context(|| format!("loading data {}", data.display()))?;
    if rec.n_utterances() == 0 {
        bail!("{} holds no utterances", data.display());
    }
    // Fail early, on this thread, on anything the workers would fail on.
    let opts = BackendOptions::default();
    let make = || -> Result<Pipeline, PipelineError> {
        let mut p = Pipeline::new(Model::from_manifest(manifest.clone(), a.backend, &opts)?, a.steps)?;
        p.set_sampler(a.sampler)?;
        p.set_samples(a.samples)?;
        Ok(p)
    };
    let (steps, sampler, samples) = make().map(|p| (p.sde().steps, p.sde().kind, p.samples()))?;
    eprintln!(
        "evaluating {} ({} conversations, {} utterances) with {} on {}: {} scenarios x {} seeds x {} completions, {sampler} {steps} steps, {samples} sample(s)",
        data.display(),
        rec.conversations.len(),
        rec.n_utterances(),
        manifest.model.name,
        a.backend_name(),
        cfg.scenarios.len(),
        cfg.seeds.len(),
        cfg.completions.len(),
    );
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} tasks {elapsed_precise} eta {eta}",
    )?);
    let started = Instant::now();
    let progress = |total: usize| {
        bar.set_length(total as u64);
        bar.inc(1);
    };
    let rows = eval::evaluate(&rec, &cfg, &make, &progress)?;
    bar.finish_and_clear();
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    println!("classes (f1 per class in this order): {}", manifest.model.classes.join(" "));
    print!("{}", eval::table(&rows));
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
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
            "backend": a.backend_name(),
            "results": rows,
        });
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

impl EvalArgs {
    fn backend_name(&self) -> &'static str {
        match self.backend {
            BackendKind::Tract => "tract",
            BackendKind::Ort => "ort",
        }
    }
}

fn run_import(a: ImportArgs) -> Result<()> {
    let rec: Recording =
        dataset::read_split(&a.dir).with_context(|| format!("reading {}", a.dir.display()))?;
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

/// Told when the running binary has no counting allocator (the production `gsdnet`).
pub const ALLOCATIONS_HINT: &str =
    "allocations not counted: this binary uses the system allocator; run `gsdnet-bench` (same options) for allocation counts";

/// `gsdnet bench` (and `gsdnet-bench`, which installs the counting allocator first): allocation
/// columns are filled only when `bench::allocations()` sees that allocator.
pub fn run_bench(a: BenchArgs) -> Result<()> {
    bench::run_cli(a, &bench::Extras::default())
}

