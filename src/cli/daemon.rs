//! Daemon subcommands of the `gsdnet` binary: `serve`, `warmup`, `check-config`, `record`,
//! `replay`, `bench-throughput`. Parsing and error context only; the work is in `daemon`, `io`
//! and `config`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::backend::{self, BackendKind};
use crate::config::Settings;
use crate::daemon::inference::WindowRunner;
use crate::daemon::model_info::ServedModel;
use crate::daemon::notify::{announce_loading, NoNotifier, Notifier, SystemdNotifier};
use crate::daemon::pipeline_runner::PipelineRunner;
use crate::daemon::replay::{self, DropSpan, RecorderRunner, ReplayOptions};
use crate::daemon::server::{serve, warm_up_runner, warmup_job, Endpoints, ServeOptions};
use crate::daemon::throughput::{self, RunSpec, Stream, WindowSizes};
use crate::io::{listeners, serial::SerialInput};
use crate::manifest::Manifest;
use crate::model::Model;
use crate::pipeline::{Completion, Pipeline};
use crate::recording::{Recording, RecordingWriter};

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
}

pub fn run(cmd: DaemonCommand) -> Result<()> {
    match cmd {
        DaemonCommand::CheckConfig(a) => {
            let settings = load_settings(&a.board)?;
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
    let board = a.board.clone().or_else(|| std::env::var_os("GSDNET_BOARD").map(PathBuf::from));
    match &board {
        Some(p) => Ok(Settings::load(p)?),
        None => Settings::default_profile().context("built-in board profile"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the tokio runtime")
}

fn notifier() -> Arc<dyn Notifier> {
    match SystemdNotifier::from_env() {
        Some(n) => Arc::new(n),
        None => Arc::new(NoNotifier),
    }
}

/// `check-config`'s `[model]` table: what the profile's model takes and returns (or why it
/// cannot be read: the profile itself is still valid).
fn model_section(s: &Settings, models: &Path) -> String {
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let m = match Manifest::load(models) {
        Ok(m) => m,
        Err(e) => return format!("\n# model: cannot read {}: {}\n", models.display(), e.to_string().replace('\n', " ")),
    };
    let mods: Vec<String> = m.modalities.iter().map(|x| format!("{x} = {}", m.modalities.size(x).unwrap_or(0))).collect();
    let classes: Vec<String> = m.model.classes.iter().map(|c| q(c)).collect();
    let bound = crate::protocol::max_result_frame_len(s.assembly.window, &m.model.classes, &s.engine.completion);
    let mut out = format!(
        "\n[model]\ndir = {}\nname = {}\nversion = {}\nmodalities = {{ {} }}\nclasses = [{}]\nhas_regression = {}\nwindow = {}\nmax_result_frame_bytes = {bound}\n",
        q(&models.display().to_string()),
        q(&m.model.name),
        q(&m.model.version),
        mods.join(", "),
        classes.join(", "),
        m.model.has_regression,
        m.dims.window,
    );
    if s.assembly.window > m.dims.window {
        out += &format!("# error: assembly.window = {} exceeds the model's window {}: serve refuses to start\n", s.assembly.window, m.dims.window);
    }
    if bound > crate::protocol::MAX_FRAME_LEN {
        out += &format!("# error: results may exceed the protocol's {} bytes: serve refuses to start\n", crate::protocol::MAX_FRAME_LEN);
    }
    out
}

fn serve_options(s: &Settings, model: ServedModel, warm_up: bool) -> ServeOptions {
    let heartbeat = SystemdNotifier::watchdog_interval().map_or(Duration::from_secs(5), |w| w / 2);
    ServeOptions {
        assembly: s.assembly_settings(),
        model,
        queue_capacity: s.engine.queue_capacity,
        max_frames_per_second: s.inputs.max_frames_per_second,
        burst: s.inputs.burst,
        heartbeat,
        max_consecutive_errors: s.engine.max_consecutive_errors,
        batch_latency: s.engine.batch_latency(),
        limits: s.inputs.connection_limits(),
        abstain_below: s.engine.abstain_below,
        result_backlog: 256,
        warm_up,
    }
}

fn load_runner(s: &Settings, models: &Path, noise_scenario: u64) -> Result<PipelineRunner> {
    let kind: BackendKind = s.engine.backend.parse().context("engine.backend")?;
    let model = Model::load(models, kind, &s.engine.backend_options())
        .with_context(|| format!("loading models from {}", models.display()))?;
    build_runner(s, model, noise_scenario)
}

fn build_runner(s: &Settings, model: Model, noise_scenario: u64) -> Result<PipelineRunner> {
    let mut pipeline = Pipeline::new(model, s.engine.steps).context("building the pipeline")?;
    pipeline.set_sampler(s.engine.sampler).context("building the pipeline")?;
    pipeline.set_samples(s.engine.samples).context("building the pipeline")?;
    pipeline.set_max_batch(s.engine.max_batch);
    warm_plans(&mut pipeline)?;
    let completion: Completion = s.engine.completion.parse().map_err(anyhow::Error::msg)?;
    let runner = PipelineRunner::new(pipeline, completion, s.engine.seed, noise_scenario).context("the model's classes")?;
    if s.assembly.window > runner.model_window() {
        bail!("assembly.window = {} exceeds the model's W = {}", s.assembly.window, runner.model_window());
    }
    Ok(runner)
}

/// `serve`'s loading step: extends the start timeout and says what it does (a TensorRT engine
/// build can outlast `TimeoutStartSec`) before loading; READY comes later, after the warm-up.
pub fn load_for_serve(s: &Settings, models: &Path, noise_scenario: u64, notifier: &dyn Notifier) -> Result<PipelineRunner> {
    announce_loading(notifier, s.engine.builds_tensorrt_engines());
    load_runner(s, models, noise_scenario)
}

fn run_serve(a: ServeArgs) -> Result<()> {
    let settings = load_settings(&a.board)?;
    let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
    let notifier = notifier();
    let runner = load_for_serve(&settings, &models, a.noise_scenario, notifier.as_ref())?;
    log::info!("board: {}; models: {}", settings.board, models.display());
    let model = runner.served_model().clone();
    run_daemon(&settings, Box::new(runner), model, notifier, true)
}

/// Builds the engine's plans for every call the daemon can make (rows = windows x samples up to
/// `max_batch` x S, rounded to powers of two, at every bucket) before the first window, so no
/// window pays for a plan.
fn warm_plans(pipeline: &mut Pipeline) -> Result<()> {
    let most = (pipeline.max_batch() * pipeline.samples()).clamp(1, crate::backend::rows::MAX_CALL_ROWS);
    let rows: Vec<usize> = (0..7).map(|i| 1usize << i).take_while(|&r| r < most * 2).collect();
    let started = Instant::now();
    pipeline.warm(&rows).context("building the engine's plans")?;
    let buckets = &pipeline.model().manifest.buckets;
    log::info!("engine plans for calls of {rows:?} rows at windows {buckets:?} built in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Loads part by part (timing each and printing its provider), then runs `serve`'s warm-up
/// window through the whole pipeline, and a batch of `max_batch` of it when batching, which is
/// when lazily built engines get built.
fn run_warmup(a: WarmupArgs) -> Result<()> {
    let settings = load_settings(&a.board)?;
    let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
    let kind: BackendKind = settings.engine.backend.parse().context("engine.backend")?;
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
        println!("{:<9} {:<44} loaded in {:.3} s", spec.name, part.provider(), started.elapsed().as_secs_f64());
        for note in part.provider_notes() {
            println!("          note: {note}");
        }
        parts.push(part);
    }
    let model = Model::from_parts(manifest, kind, parts).context("assembling the model")?;
    let mut runner = build_runner(&settings, model, 0)?;
    let job = warmup_job(&runner.served_model().modalities);
    let (single, batch) = warm_up_runner(&mut runner, &job).map_err(|e| anyhow::anyhow!("{e}")).context("warm-up window")?;
    println!("warm-up window ({}) ran in {:.3} s", runner.describe(), single.as_secs_f64());
    if let Some((n, took)) = batch {
        println!("warm-up batch of {n} windows ran in {:.3} s", took.as_secs_f64());
    }
    Ok(())
}

/// The served model of a manifest, without loading its parts (`record`, `replay`).
fn manifest_model(models: &Path) -> Result<ServedModel> {
    let manifest = Manifest::load(models).with_context(|| format!("reading the manifest in {}", models.display()))?;
    ServedModel::from_manifest(&manifest).context("the model's classes")
}

fn run_record(a: RecordArgs) -> Result<()> {
    let settings = load_settings(&a.board)?;
    let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
    let model = manifest_model(&models)?;
    let writer = RecordingWriter::create(&a.output).with_context(|| format!("creating {}", a.output.display()))?;
    run_daemon(&settings, Box::new(RecorderRunner::new(writer)), model, notifier(), false)
}

/// File descriptors beyond the socket clients: listeners, serial ports, model files, the
/// runtime's own, recordings.
const FD_HEADROOM: u64 = 256;

/// Raises the soft open-file limit (systemd's default is 1024) so `max_connections` clients
/// always fit; warns when the hard limit does not allow it (connections beyond are refused).
fn ensure_file_limit(max_connections: usize) {
    let need = max_connections as u64 + FD_HEADROOM;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a local struct; no other invariant.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= need {
            return;
        }
        let want = libc::rlimit { rlim_cur: need.min(lim.rlim_max), rlim_max: lim.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 && want.rlim_cur >= need {
            log::info!("open-file limit raised from {} to {}", lim.rlim_cur, want.rlim_cur);
            return;
        }
    }
    log::warn!("open-file limit {} (hard {}) is below the {need} that max_connections = {max_connections} needs; raise LimitNOFILE", lim.rlim_cur, lim.rlim_max);
}

/// Binds endpoints, serves until SIGTERM or Ctrl-C, removes the socket files it created.
fn run_daemon(settings: &Settings, runner: Box<dyn WindowRunner>, model: ServedModel, notifier: Arc<dyn Notifier>, warm_up: bool) -> Result<()> {
    ensure_file_limit(settings.inputs.max_connections);
    let rt = runtime()?;
    rt.block_on(async {
        let bound = listeners::bind(&settings.inputs).await.context("binding sockets")?;
        let serial = settings.inputs.serial.iter().map(SerialInput::from_settings).collect();
        let created = bound.created_paths.clone();
        let endpoints = Endpoints { tcp: bound.tcp, unix: bound.unix, serial };
        let result = serve(endpoints, runner, serve_options(settings, model, warm_up), notifier, shutdown_signal()).await;
        listeners::Bound::cleanup_paths(&created);
        result.context("serving")?;
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM"),
                _ = tokio::signal::ctrl_c() => log::info!("SIGINT"),
            }
        }
        Err(e) => {
            log::warn!("cannot watch SIGTERM ({e}); Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
            let mods = mods.context("the mask needs the recording's modalities: it holds fewer than two (name the model with --models)")?;
            Some((r, a.mask_seed, mods))
        }
        None => None,
    };
    let opts = ReplayOptions { interval_ms: a.interval_ms, drops: a.drops.clone(), mask, modalities };
    let steps = replay::plan(&rec, &opts).context("planning the replay")?;
    let realtime = !a.max_speed;
    log::info!("replaying {} utterances ({} frames)", rec.n_utterances(), steps.len());
    runtime()?.block_on(async {
        if let Some(path) = &a.unix {
            let mut s = tokio::net::UnixStream::connect(path).await.with_context(|| format!("connecting to {}", path.display()))?;
            replay::send(&mut s, &steps, realtime).await.context("sending")?;
        } else if let Some(addr) = &a.tcp {
            let mut s = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
            replay::send(&mut s, &steps, realtime).await.context("sending")?;
        } else if let Some(path) = &a.serial {
            let port = crate::config::SerialPort { path: path.clone(), baud: a.baud };
            let mut s = crate::io::serial::open(&port).with_context(|| format!("opening {}", path.display()))?;
            replay::send(&mut s, &steps, realtime).await.context("sending")?;
        } else {
            bail!("give one of --unix, --tcp or --serial");
        }
        Ok(())
    })
}

/// `bench-throughput`: every `max_batch` x conversations row on the profile's engine, then the
/// summary (`throughput::summarize`). Stops, saying so, when the data is not there.
fn run_bench_throughput(a: BenchThroughputArgs) -> Result<()> {
    if !a.data.exists() {
        bail!("{} does not exist (is ../shared missing?): no CMU-MOSI stream, nothing measured", a.data.display());
    }
    let settings = load_settings(&a.board)?;
    let models = a.models.clone().unwrap_or_else(|| settings.engine.models.clone());
    let rec = crate::dataset::load(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    let mut runner = load_runner(&settings, &models, 0)?;
    let window = settings.assembly.window.min(runner.model_window());
    let stream = Stream::new(&rec, &runner.served_model().modalities, a.rate, a.seed, a.window_sizes, window)?;
    let lengths = stream.video_lengths();
    println!("board: {}; models: {}; data: {} ({} videos, {}-{} utterances, mean {:.1})", settings.board, models.display(), a.data.display(),
        lengths.len(), lengths.iter().min().unwrap_or(&0), lengths.iter().max().unwrap_or(&0), lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64);
    println!("windows: {:?}, W = {window}, missing rate {}, latency budget {} ms", a.window_sizes, a.rate, settings.engine.batch_latency_ms);
    println!("{}", throughput::table_header());
    let mut rows = Vec::new();
    for &b in &a.max_batch {
        runner.set_max_batch(b.clamp(1, crate::config::MAX_BATCH));
        for &c in &a.conversations {
            let spec = RunSpec { conversations: c, windows: a.windows, warmup: a.warmup, budget: settings.engine.batch_latency() };
            let m = throughput::measure(&mut runner, &stream, &spec).with_context(|| format!("{c} conversations, max_batch {b}"))?;
            println!("{}", throughput::table_row(&m));
            rows.push(m);
        }
    }
    let s = throughput::summarize(&rows);
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
    println!("engine: {}", runner.describe());
    println!("{} conversations: {} windows/core-s batched (max_batch {}) vs {} one at a time: ratio {}", s.conversations,
        fmt(s.batched_windows_per_core_s), s.max_batch, fmt(s.single_windows_per_core_s), s.ratio.map_or("-".into(), |r| format!("{r:.2}x")));
    println!("single-window latency p50: {}", s.single_window_latency_p50_us.map_or("-".into(), |us| format!("{:.2} ms", us as f64 / 1e3)));
    if a.json {
        println!("{}", serde_json::json!({ "rows": rows, "summary": s, "window_sizes": a.window_sizes, "rate": a.rate, "videos": lengths }));
    }
    Ok(())
}

/// Logger for the binary: under systemd (`JOURNAL_STREAM` set) each line carries its syslog
/// priority as a `<N>` prefix, which journald turns into the entry's priority, and no
/// timestamp (the journal has one); elsewhere env_logger's usual format. `RUST_LOG` filters.
pub fn init_logging(default_filter: &str) {
    use std::io::Write;
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.format(|f, r| {
            let prio = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(f, "<{prio}>{}: {}", r.target(), r.args())
        });
    }
    let _ = b.try_init();
}
