//! Daemon subcommands of the `gsdnet` binary: `serve`, `warmup`, `check-config`, `record`,
//! `replay`, `bench-throughput`. Argument mapping and printing only; the work is in `service`
//! (loading, serving, process set-up), `client` (replay) and `bench::throughput`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::backend;
use crate::bench::throughput::{self, RunSpec, Stream, WindowSizes};
use crate::client::ledger::Ledger;
use crate::client::paced::{send_paced, PacedOptions};
use crate::client::replay::{self, DropSpan, ReplayOptions};
use crate::config::Settings;
use crate::daemon::inference::WindowRunner;
use crate::daemon::pipeline_runner::PipelineRunner;
use crate::daemon::recorder::RecorderRunner;
use crate::daemon::server::{warm_up_runner, warmup_job};
use crate::manifest::Manifest;
use crate::model::Model;
use crate::recording::{Recording, RecordingWriter};
use crate::service::process::{notifier, runtime};
use crate::service::{build_runner, load_for_serve, load_runner, manifest_model, model_section, run_daemon};

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Run the edge daemon: sensor frames in (serial, TCP, Unix), results out.
    Serve(ServeArgs),
    /// Load every part with the profile's engine options and run one window, so TensorRT
    /// engines and caches exist before the service starts; prints the provider of each part.
    Warmup(WarmupArgs),
    /// Validate a board profile and print the resolved settings and the model they serve.
    CheckConfig(CheckConfigArgs),
    /// Listen like the daemon and write every assembled utterance to a recording.
    Record(RecordArgs),
    /// Send a recording to a running daemon, optionally dropping modalities.
    Replay(ReplayArgs),
    /// Windows per second (and per core) through the daemon's inference step for C concurrent
    /// conversations of CMU-MOSI videos, one window at a time vs batched.
    BenchThroughput(BenchThroughputArgs),
}

#[derive(Debug, Args)]
pub struct BenchThroughputArgs {
    #[command(flatten)]
    pub board: BoardArgs,
    /// Model folder, overriding the profile's `engine.models`
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// CMU-MOSI split folder (or recording) whose videos make the stream
    #[arg(long, default_value = "../shared/data/cmu-mosi/val")]
    pub data: PathBuf,
    /// Missing rate of `gsdnet eval`'s random mask over the stream (the sampler runs)
    #[arg(long, default_value_t = 0.3)]
    pub rate: f64,
    /// Concurrent conversations, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub conversations: Vec<usize>,
    /// `engine.max_batch` values to compare, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub max_batch: Vec<usize>,
    /// Windows measured per row (after --warmup windows)
    #[arg(long, default_value_t = 400)]
    pub windows: usize,
    /// Windows run before each row is measured
    #[arg(long, default_value_t = 32)]
    pub warmup: usize,
    /// whole: one window per video (N = its utterance count); sliding: one per utterance, as the daemon
    #[arg(long, value_enum, default_value = "whole")]
    pub window_sizes: WindowSizes,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also print the rows and the summary as one JSON line (last line of stdout)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BoardArgs {
    /// Board profile (boards/*.toml) [default: the built-in x86 development profile]
    #[arg(long)]
    pub board: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub board: BoardArgs,
    /// Model folder, overriding the profile's `engine.models`
    #[arg(long)]
    pub models: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub board: BoardArgs,
    /// Model folder, overriding the profile's `engine.models`
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Label of the sampler stream key (DESIGN.md); an eval scenario key reproduces `gsdnet eval`
    #[arg(long, default_value_t = 0)]
    pub noise_scenario: u64,
}

#[derive(Debug, Args)]
pub struct WarmupArgs {
    #[command(flatten)]
    pub board: BoardArgs,
    /// Model folder, overriding the profile's `engine.models`
    #[arg(long)]
    pub models: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub board: BoardArgs,
    /// Model folder whose manifest says which modalities and sizes to assemble, overriding the
    /// profile's `engine.models` (only the manifest is read)
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Output recording file
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Recording file
    pub recording: PathBuf,
    /// Daemon Unix socket
    #[arg(long, conflicts_with_all = ["tcp", "serial"])]
    pub unix: Option<PathBuf>,
    /// Daemon TCP address
    #[arg(long, conflicts_with = "serial")]
    pub tcp: Option<String>,
    /// Serial port (8N1), with --baud
    #[arg(long)]
    pub serial: Option<PathBuf>,
    #[arg(long, default_value_t = 921_600)]
    pub baud: u32,
    /// Send as fast as possible instead of at recorded speed
    #[arg(long)]
    pub max_speed: bool,
    /// Spacing of utterances without recorded timestamps, in milliseconds
    #[arg(long, default_value_t = 3000)]
    pub interval_ms: u64,
    /// Drop a modality over a span of the replay timeline, e.g. `visual:10-25` (seconds); repeatable
    #[arg(long = "drop")]
    pub drops: Vec<DropSpan>,
    /// Drop entries as `gsdnet eval`'s random mask at this rate would (with --mask-seed)
    #[arg(long)]
    pub mask_rate: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub mask_seed: u64,
    /// Model folder of the daemon: only its modalities are sent, and the mask is over them
    /// (default: the recording's modalities)
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Longest wait without any result (holding back an utterance, or for the last results)
    /// before what is still uncovered is reported as such, in milliseconds
    #[arg(long, default_value_t = 10_000)]
    pub stall_ms: u64,
}

pub fn run(cmd: DaemonCommand) -> Result<()> {
    match cmd {
        DaemonCommand::CheckConfig(a) => {
            let settings = load_settings(&a.board)?;
            crate::service::check_ros2_build(&settings)?;
            let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
            print!("{}", settings.to_toml());
            print!("{}", model_section(&settings, &models));
            Ok(())
        }
        DaemonCommand::Serve(a) => run_serve(a),
        DaemonCommand::Warmup(a) => run_warmup(a),
        DaemonCommand::Record(a) => run_record(a),
        DaemonCommand::Replay(a) => run_replay(a),
        DaemonCommand::BenchThroughput(a) => run_bench_throughput(a),
    }
}

fn load_settings(a: &BoardArgs) -> Result<Settings> {
    crate::service::load_settings(a.board.as_deref())
}

fn run_serve(a: ServeArgs) -> Result<()> {
    let settings = load_settings(&a.board)?;
    let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
    crate::service::check_ros2_build(&settings)?;
    let notifier = notifier();
    let runner = load_for_serve(&settings, &models, a.noise_scenario, notifier.as_ref())?;
    log::info!("board: {}; models: {}", settings.board, models.display());
    let model = runner.served_model().clone();
    run_daemon(&settings, Box::new(runner), model, notifier, true)
}

/// Loads part by part (timing each and printing its provider), then runs `serve`'s warm-up
/// window through the whole pipeline, and a batch of `max_batch` of it when batching, which is
/// when lazily built engines get built.
fn run_warmup(a: WarmupArgs) -> Result<()> {
    let settings = load_settings(&a.board)?;
    let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
    let kind = settings.engine.backend;
    let opts = settings.engine.backend_options();
    let manifest = Manifest::load(&models).with_context(|| format!("loading models from {}", models.display()))?;
    println!("board: {}", settings.board);
    println!("models: {} (backend {})", models.display(), settings.engine.backend);
    if let Some(dir) = &opts.cache_dir {
        println!("TensorRT cache: {}", dir.display());
    }
    let mut parts = Vec::with_capacity(manifest.parts.len());
    for spec in &manifest.parts {
        let started = Instant::now();
        let part = backend::load(kind, spec, &opts).with_context(|| format!("loading part {}", spec.name))?;
        println!(
            "{:<9} {:<44} loaded in {:.3} s",
            spec.name,
            part.provider(),
            started.elapsed().as_secs_f64()
        );
        for note in part.provider_notes() {
            println!("          note: {note}");
        }
        parts.push(part);
    }
    let model = Model::from_parts(manifest, kind, parts).context("assembling the model")?;
    let mut runner = build_runner(&settings, model, 0)?;
    let job = warmup_job(&runner.served_model().modalities);
    let (single, batch) = warm_up_runner(&mut runner, &job)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("warm-up window")?;
    println!(
        "warm-up window ({}) ran in {:.3} s",
        runner.describe(),
        single.as_secs_f64()
    );
    if let Some((n, took)) = batch {
        println!("warm-up batch of {n} windows ran in {:.3} s", took.as_secs_f64());
    }
    Ok(())
}

fn run_record(a: RecordArgs) -> Result<()> {
    let settings = load_settings(&a.board)?;
    let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
    let model = manifest_model(&models)?;
    let writer = RecordingWriter::create(&a.output).with_context(|| format!("creating {}", a.output.display()))?;
    run_daemon(
        &settings,
        Box::new(RecorderRunner::new(writer)),
        model,
        notifier(),
        false,
    )
}

fn run_replay(a: ReplayArgs) -> Result<()> {
    let rec = Recording::read(&a.recording).with_context(|| format!("reading {}", a.recording.display()))?;
    let modalities = match &a.models {
        Some(dir) => Some(manifest_model(dir)?.modalities),
        None => None,
    };
    let mask = match a.mask_rate {
        Some(r) => {
            let mods = modalities.or_else(|| replay::modalities_of(&rec));
            let mods = mods.context(
                "the mask needs the recording's modalities: it holds fewer than two (name the model with --models)",
            )?;
            Some((r, a.mask_seed, mods))
        }
        None => None,
    };
    let opts = ReplayOptions {
        interval_ms: a.interval_ms,
        drops: a.drops.clone(),
        mask,
        modalities,
    };
    let steps = replay::plan(&rec, &opts).context("planning the replay")?;
    let realtime = !a.max_speed;
    log::info!("replaying {} utterances ({} frames)", rec.n_utterances(), steps.len());
    let opts = PacedOptions {
        realtime,
        stall: Duration::from_millis(a.stall_ms),
        ..PacedOptions::default()
    };
    let started = Instant::now();
    let ledger = runtime()?.block_on(async {
        if let Some(path) = &a.unix {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .with_context(|| format!("connecting to {}", path.display()))?;
            send_paced(s, &steps, opts).await.context("replaying")
        } else if let Some(addr) = &a.tcp {
            let s = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            send_paced(s, &steps, opts).await.context("replaying")
        } else if let Some(path) = &a.serial {
            let port = crate::config::SerialPort {
                path: path.clone(),
                baud: a.baud,
            };
            let s = crate::io::serial::open(&port).with_context(|| format!("opening {}", path.display()))?;
            send_paced(s, &steps, opts).await.context("replaying")
        } else {
            Err(super::exit::UsageError("give one of --unix, --tcp or --serial".into()).into())
        }
    })?;
    report_replay(&ledger, started.elapsed())
}

/// Prints what the replay sent, what results covered and what the daemon refused; an error
/// (exit status 1) when anything was refused or not covered.
fn report_replay(ledger: &Ledger, took: Duration) -> Result<()> {
    let summary = ledger.summary();
    println!("{summary}");
    for n in ledger.notices() {
        let at = n.utterance.map_or(String::new(), |u| format!(" utterance {u}"));
        println!(
            "  notice: {:?} x{} ({}{at}): {}",
            n.reason, n.count, n.conversation, n.detail
        );
    }
    for r in ledger.rejects() {
        println!("  the daemon cannot read this sender: {:?}: {}", r.reason, r.detail);
    }
    let missing = ledger.uncovered(5);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(c, u)| format!("{c}/{u}")).collect();
        println!("  not covered, e.g.: {}", list.join(", "));
    }
    println!("took {:.1} s", took.as_secs_f64());
    if !summary.is_complete() || !ledger.rejects().is_empty() {
        bail!(
            "replay incomplete: {} refused, {} of {} utterances without a result",
            summary.total_refused(),
            summary.due - summary.covered,
            summary.due
        );
    }
    Ok(())
}

/// One measurement per (max_batch, conversations) of `a`, each row printed as it comes.
fn measure_grid(
    runner: &mut PipelineRunner,
    stream: &Stream,
    a: &BenchThroughputArgs,
    settings: &Settings,
) -> Result<Vec<throughput::Measurement>> {
    let mut rows = Vec::new();
    for &b in &a.max_batch {
        runner.set_max_batch(b.clamp(1, crate::capacity::MAX_BATCH));
        for &c in &a.conversations {
            let spec = RunSpec {
                conversations: c,
                windows: a.windows,
                warmup: a.warmup,
                budget: settings.engine.batch_latency(),
            };
            let m = throughput::measure(runner, stream, &spec)
                .with_context(|| format!("{c} conversations, max_batch {b}"))?;
            println!("{}", throughput::table_row(&m));
            rows.push(m);
        }
    }
    Ok(rows)
}

/// The batched against one-at-a-time line and the single-window latency.
fn print_throughput_summary(s: &throughput::Summary) {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
    println!(
        "{} conversations: {} windows/core-s batched (max_batch {}) vs {} one at a time: ratio {}",
        s.conversations,
        fmt(s.batched_windows_per_core_s),
        s.max_batch,
        fmt(s.single_windows_per_core_s),
        s.ratio.map_or("-".into(), |r| format!("{r:.2}x"))
    );
    println!(
        "single-window latency p50: {}",
        s.single_window_latency_p50_us
            .map_or("-".into(), |us| format!("{:.2} ms", us as f64 / 1e3))
    );
}

/// `bench-throughput`: every `max_batch` x conversations row on the profile's engine, then the
/// summary (`throughput::summarize`). Stops, saying so, when the data is not there.
fn run_bench_throughput(a: BenchThroughputArgs) -> Result<()> {
    if !a.data.exists() {
        bail!(
            "{} does not exist (is ../shared missing?): no CMU-MOSI stream, nothing measured",
            a.data.display()
        );
    }
    let settings = load_settings(&a.board)?;
    let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
    let rec = crate::dataset::load(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    let mut runner = load_runner(&settings, &models, 0)?;
    let window = settings.assembly.window.min(runner.model_window());
    let stream = Stream::new(
        &rec,
        &runner.served_model().modalities,
        a.rate,
        a.seed,
        a.window_sizes,
        window,
    )?;
    let lengths = stream.video_lengths();
    println!(
        "board: {}; models: {}; data: {} ({} videos, {}-{} utterances, mean {:.1})",
        settings.board,
        models.display(),
        a.data.display(),
        lengths.len(),
        lengths.iter().min().unwrap_or(&0),
        lengths.iter().max().unwrap_or(&0),
        lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64
    );
    println!(
        "windows: {:?}, W = {window}, missing rate {}, latency budget {} ms",
        a.window_sizes, a.rate, settings.engine.batch_latency_ms
    );
    println!("{}", throughput::table_header());
    let rows = measure_grid(&mut runner, &stream, &a, &settings)?;
    let s = throughput::summarize(&rows);
    println!("engine: {}", runner.describe());
    print_throughput_summary(&s);
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "rows": rows, "summary": s, "window_sizes": a.window_sizes, "rate": a.rate, "videos": lengths })
        );
    }
    Ok(())
}
