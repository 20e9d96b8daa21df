//! The daemon's commands as a library (`gsdnet serve`, `warmup`, `check-config`, `record`):
//! the board profile read (`load_settings`), the model loaded into the production runner with
//! its engine plans built (`load_runner`, `build_runner`), the serve options of a profile, and
//! the daemon run until a shutdown signal (`run_daemon`). `process` holds the process set-up.
//! `cli::daemon` maps arguments to these calls.
//!
//! Errors are `anyhow` with context; a board-profile or model error keeps its typed source
//! (`ConfigError`, `ManifestError`, `WindowTooLarge`) so the binary can map it to an exit code
//! (`cli::exit`).

pub mod process;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use thiserror::Error;

use crate::config::{Ros2Settings, Settings};
use crate::daemon::inference::WindowRunner;
use crate::daemon::model_info::ServedModel;
use crate::daemon::notify::{announce_loading, Notifier, SystemdNotifier};
use crate::daemon::pipeline_runner::PipelineRunner;
use crate::daemon::ros2::{Ros2Error, Ros2Node};
use crate::daemon::server::{serve, Endpoints, ServeOptions};
use crate::frontend::TextFrontend;
use crate::io::{listeners, serial::SerialInput};
use crate::manifest::Manifest;
use crate::model::Model;
use crate::pipeline::Pipeline;

use process::{ensure_file_limit, runtime, shutdown_signal};

/// The profile's window is longer than the model's: a configuration error.
#[derive(Debug, Error)]
#[error("assembly.window = {window} exceeds the model's W = {model}")]
pub struct WindowTooLarge {
    pub window: usize,
    pub model: usize,
}

/// The board profile at `board`, else `$GSDNET_BOARD`, else the built-in x86 development one.
pub fn load_settings(board: Option<&Path>) -> Result<Settings> {
    let board = board
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("GSDNET_BOARD").map(PathBuf::from));
    match &board {
        Some(p) => Ok(Settings::load(p)?),
        None => Settings::default_profile().context("built-in board profile"),
    }
}

/// `check-config`'s `[model]` table: what the profile's model takes and returns (or why it
/// cannot be read: the profile itself is still valid).
pub fn model_section(s: &Settings, models: &Path) -> String {
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let m = match Manifest::load(models) {
        Ok(m) => m,
        Err(e) => {
            return format!(
                "\n# model: cannot read {}: {}\n",
                models.display(),
                e.to_string().replace('\n', " ")
            )
        }
    };
    let mods: Vec<String> = m
        .modalities
        .iter()
        .map(|x| format!("{x} = {}", m.modalities.size(x).unwrap_or(0)))
        .collect();
    let classes: Vec<String> = m.model.classes.iter().map(|c| q(c)).collect();
    let bound = crate::protocol::max_result_frame_len(
        s.assembly.window,
        &m.model.classes,
        s.engine.completion.published(&m.completion),
    );
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
        out += &format!(
            "# error: assembly.window = {} exceeds the model's window {}: serve refuses to start\n",
            s.assembly.window, m.dims.window
        );
    }
    if bound > crate::protocol::MAX_FRAME_LEN {
        out += &format!(
            "# error: results may exceed the protocol's {} bytes: serve refuses to start\n",
            crate::protocol::MAX_FRAME_LEN
        );
    }
    out
}

pub fn serve_options(s: &Settings, model: ServedModel, warm_up: bool) -> ServeOptions {
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

pub fn load_runner(s: &Settings, models: &Path, noise_scenario: u64) -> Result<PipelineRunner> {
    let kind = s.engine.backend;
    let model = Model::load(models, kind, &s.engine.backend_options())
        .with_context(|| format!("loading models from {}", models.display()))?;
    build_runner(s, model, noise_scenario)
}

pub fn build_runner(s: &Settings, model: Model, noise_scenario: u64) -> Result<PipelineRunner> {
    let mut text_frontend = TextFrontend::for_manifest(&model.manifest, model.kind, &s.engine.backend_options())
        .context("loading the model's text frontend")?;
    if let Some(f) = text_frontend.as_mut() {
        // One transcript through the encoder, so a broken frontend fails the load, not the
        // first utterance (the daemon warms every shape before READY: daemon::frontend).
        f.warm(1).context("building the text frontend's plans")?;
    }
    let mut pipeline = Pipeline::new(model, &s.engine.pipeline_options()).context("building the pipeline")?;
    warm_plans(&mut pipeline)?;
    let completion = s.engine.completion;
    let mut runner =
        PipelineRunner::new(pipeline, completion, s.engine.seed, noise_scenario).context("the model's classes")?;
    runner.set_text_frontend(text_frontend);
    if s.assembly.window > runner.model_window() {
        return Err(WindowTooLarge {
            window: s.assembly.window,
            model: runner.model_window(),
        }
        .into());
    }
    Ok(runner)
}

/// `serve`'s loading step: extends the start timeout and says what it does (a TensorRT engine
/// build can outlast `TimeoutStartSec`) before loading; READY comes later, after the warm-up.
pub fn load_for_serve(
    s: &Settings,
    models: &Path,
    noise_scenario: u64,
    notifier: &dyn Notifier,
) -> Result<PipelineRunner> {
    announce_loading(notifier, s.engine.builds_tensorrt_engines());
    load_runner(s, models, noise_scenario)
}

/// Builds the engine's plans for every call the daemon can make (rows = windows x samples up to
/// `max_batch` x S, rounded to powers of two, at every bucket) before the first window, so no
/// window pays for a plan.
pub fn warm_plans(pipeline: &mut Pipeline) -> Result<()> {
    let most = (pipeline.max_batch() * pipeline.samples()).clamp(1, crate::capacity::MAX_CALL_ROWS);
    let rows: Vec<usize> = (0..7).map(|i| 1usize << i).take_while(|&r| r < most * 2).collect();
    let started = Instant::now();
    pipeline.warm(&rows).context("building the engine's plans")?;
    let buckets = &pipeline.model().manifest.buckets;
    log::info!(
        "engine plans for calls of {rows:?} rows at windows {buckets:?} built in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The served model of a manifest, without loading its parts (`record`, `replay`).
pub fn manifest_model(models: &Path) -> Result<ServedModel> {
    let manifest = Manifest::load(models).with_context(|| format!("reading the manifest in {}", models.display()))?;
    ServedModel::from_manifest(&manifest).context("the model's classes")
}

/// A profile that enables `[ros2]` in a build without the feature: refused before the model
/// loads (exit 78).
pub fn check_ros2_build(s: &Settings) -> Result<(), Ros2Error> {
    if s.ros2.is_some() && !crate::daemon::ros2::BUILT {
        return Err(Ros2Error::NotBuilt);
    }
    Ok(())
}

/// Longest wait for joining the ROS 2 domain (binding its sockets) before start fails.
const ROS2_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Joins the ROS 2 domain off the async workers, bounded by `ROS2_START_TIMEOUT`: a DDS
/// failure at start is an error, never a hang.
async fn start_ros2(s: &Ros2Settings, board: &str) -> Result<Ros2Node, Ros2Error> {
    let (settings, board) = (s.clone(), board.to_string());
    let start = tokio::task::spawn_blocking(move || Ros2Node::start(&settings, &board));
    match tokio::time::timeout(ROS2_START_TIMEOUT, start).await {
        Ok(Ok(node)) => node,
        Ok(Err(_)) => Err(Ros2Error::Domain {
            domain: s.domain_id,
            detail: "the start task panicked".into(),
        }),
        Err(_) => Err(Ros2Error::Timeout {
            domain: s.domain_id,
            seconds: ROS2_START_TIMEOUT.as_secs(),
        }),
    }
}

/// Binds endpoints, serves until SIGTERM or Ctrl-C, removes the socket files it created.
pub fn run_daemon(
    settings: &Settings,
    runner: Box<dyn WindowRunner>,
    model: ServedModel,
    notifier: Arc<dyn Notifier>,
    warm_up: bool,
) -> Result<()> {
    ensure_file_limit(settings.inputs.max_connections);
    let rt = runtime()?;
    rt.block_on(async {
        let bound = listeners::bind(&settings.inputs).await.context("binding sockets")?;
        let serial = settings.inputs.serial.iter().map(SerialInput::from_settings).collect();
        let created = bound.created_paths.clone();
        let ros2 = match &settings.ros2 {
            Some(r) => Some(
                start_ros2(r, &settings.board)
                    .await
                    .context("starting the ROS 2 node")?,
            ),
            None => None,
        };
        let endpoints = Endpoints {
            tcp: bound.tcp,
            unix: bound.unix,
            serial,
            ros2,
        };
        let result = serve(
            endpoints,
            runner,
            serve_options(settings, model, warm_up),
            notifier,
            shutdown_signal(),
        )
        .await;
        listeners::Bound::cleanup_paths(&created);
        result.context("serving")?;
        Ok(())
    })
}
