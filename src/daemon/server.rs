//! The serve loop (mini-redis style): `serve` takes bound listeners, opened serial ports, a
//! runner and a shutdown future. Order of events, which systemd relies on: warm-up inference,
//! inference thread started, READY; then accept until shutdown; then STOPPING, connections
//! closed, queue drained, inference thread joined.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::assembly::{Assembler, AssemblySettings, ClosedUtterance, WindowJob};
use super::connection::{serve_stream, Input};
use super::inference::{InferenceThread, JobQueue, Pushed, WindowRunner};
use super::notify::Notifier;
use super::stats::{bump, Stats};
use crate::io::serial::SerialInput;
use crate::protocol::{conversation_id, StatusReport, WindowResult};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("warm-up inference failed: {0}")]
    WarmUp(String),
    #[error("cannot start the inference thread: {0}")]
    Thread(std::io::Error),
    #[error("warm-up task panicked")]
    Panicked,
}

/// Everything `serve` needs besides endpoints, runner and shutdown.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub assembly: AssemblySettings,
    pub queue_capacity: usize,
    pub max_frames_per_second: u32,
    pub burst: u32,
    /// Longest gap between watchdog pings from the inference loop.
    pub heartbeat: Duration,
    /// Subscriber backlog before a slow subscriber skips results.
    pub result_backlog: usize,
    /// Run one warm-up window before READY (off only for runners that are not models).
    pub warm_up: bool,
}

/// Bound endpoints handed to `serve`.
#[derive(Default)]
pub struct Endpoints {
    pub tcp: Vec<TcpListener>,
    pub unix: Vec<UnixListener>,
    pub serial: Vec<SerialInput>,
}

/// State shared by every connection task.
pub struct Shared {
    pub stats: Arc<Stats>,
    pub results: broadcast::Sender<Arc<WindowResult>>,
    pub input: mpsc::Sender<Input>,
    pub queue: Arc<JobQueue>,
    pub started: Instant,
    pub engine: String,
    pub max_frames_per_second: u32,
    pub burst: u32,
}

impl Shared {
    pub fn status_report(&self) -> StatusReport {
        let s = &self.stats;
        StatusReport {
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            engine: self.engine.clone(),
            frames_accepted: s.frames_accepted.load(Relaxed),
            windows_run: s.windows_run.load(Relaxed),
            windows_superseded: s.windows_superseded.load(Relaxed),
            windows_dropped: s.windows_dropped.load(Relaxed),
            inference_errors: s.inference_errors.load(Relaxed),
            results_published: s.results_published.load(Relaxed),
            queue_len: u32::try_from(self.queue.len()).unwrap_or(u32::MAX),
            queue_capacity: u32::try_from(self.queue.capacity()).unwrap_or(u32::MAX),
            open_conversations: u32::try_from(s.open_conversations.load(Relaxed)).unwrap_or(u32::MAX),
            clients: u32::try_from(s.clients.load(Relaxed)).unwrap_or(u32::MAX),
            rejected: s.rejected_counts(),
            empty_utterances: s.empty_utterances.load(Relaxed),
        }
    }
}

/// A one-utterance window with text only, so warm-up runs every part including the sampler.
pub fn warmup_job(dims: [usize; 3]) -> WindowJob {
    WindowJob {
        conversation: conversation_id("warm-up").unwrap_or_default(),
        first_position: 0,
        utterances: vec![ClosedUtterance { utterance: 0, speaker: 0, features: [Some(vec![0.0; dims[0]]), None, None] }],
    }
}

/// Runs the daemon until `shutdown` resolves. Returns the final counters.
pub async fn serve(
    endpoints: Endpoints,
    runner: Box<dyn WindowRunner>,
    opts: ServeOptions,
    notifier: Arc<dyn Notifier>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Arc<Stats>, ServeError> {
    let runner = if opts.warm_up { warm_up(runner, &opts).await? } else { runner };
    let engine = runner.describe();
    let stats = Arc::new(Stats::default());
    let (results, _) = broadcast::channel(opts.result_backlog.max(1));
    let queue = Arc::new(JobQueue::new(opts.queue_capacity));
    let inference = InferenceThread::spawn(
        runner,
        Arc::clone(&queue),
        results.clone(),
        Arc::clone(&stats),
        Arc::clone(&notifier),
        opts.heartbeat,
    )
    .map_err(ServeError::Thread)?;
    let (input, input_rx) = mpsc::channel(1024);
    let shared = Arc::new(Shared {
        stats: Arc::clone(&stats),
        results,
        input,
        queue: Arc::clone(&queue),
        started: Instant::now(),
        engine: engine.clone(),
        max_frames_per_second: opts.max_frames_per_second,
        burst: opts.burst,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let assembler = Assembler::new(opts.assembly.clone());
    tasks.spawn(assembly_task(assembler, input_rx, Arc::clone(&shared), stop_rx.clone()));
    spawn_endpoints(&mut tasks, endpoints, &shared, &stop_rx);
    notifier.ready();
    notifier.status(&format!("serving: {engine}"));
    log::info!("ready: {engine}");
    shutdown.await;
    notifier.stopping();
    notifier.status("stopping");
    log::info!("shutting down");
    let _ = stop_tx.send(true);
    drop(shared);
    while tasks.join_next().await.is_some() {}
    let _ = tokio::task::spawn_blocking(move || inference.stop()).await;
    log::info!("stopped: {} windows run, {} inputs rejected", stats.windows_run.load(Relaxed), stats.total_rejected());
    Ok(stats)
}

async fn warm_up(mut runner: Box<dyn WindowRunner>, opts: &ServeOptions) -> Result<Box<dyn WindowRunner>, ServeError> {
    let job = warmup_job(opts.assembly.dims);
    let (runner, outcome) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let outcome = runner.run(&job).map(|_| started.elapsed());
        (runner, outcome)
    })
    .await
    .map_err(|_| ServeError::Panicked)?;
    let took = outcome.map_err(|e| ServeError::WarmUp(e.to_string()))?;
    log::info!("warm-up inference took {took:?}");
    Ok(runner)
}

fn spawn_endpoints(tasks: &mut JoinSet<()>, endpoints: Endpoints, shared: &Arc<Shared>, stop: &watch::Receiver<bool>) {
    for l in endpoints.tcp {
        let (shared, stop) = (Arc::clone(shared), stop.clone());
        tasks.spawn(async move {
            accept_loop(stop, || l.accept(), |addr| format!("tcp:{addr}"), shared).await
        });
    }
    for l in endpoints.unix {
        let (shared, stop) = (Arc::clone(shared), stop.clone());
        tasks.spawn(async move { accept_loop(stop, || l.accept(), |_| "unix".to_string(), shared).await });
    }
    for port in endpoints.serial {
        tasks.spawn(crate::io::serial::serve_serial(port, Arc::clone(shared), stop.clone()));
    }
}

async fn accept_loop<S, A, F, Fut>(
    mut stop: watch::Receiver<bool>,
    accept: F,
    label: impl Fn(&A) -> String,
    shared: Arc<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<(S, A)>>,
{
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok((stream, addr)) => {
                    next_id += 1;
                    let source: Arc<str> = format!("{}#{next_id}", label(&addr)).into();
                    conns.spawn(serve_stream(stream, source, Arc::clone(&shared), stop.clone()));
                }
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    while conns.join_next().await.is_some() {}
}

/// Owns the assembler: applies inputs, fires deadlines, queues windows.
async fn assembly_task(mut assembler: Assembler, mut rx: mpsc::Receiver<Input>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let start = shared.started;
    let ms = |t: Instant| u64::try_from(t.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX);
    loop {
        let deadline = assembler.next_deadline().map(|d| start + Duration::from_millis(d));
        let jobs = tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { break };
                let now = ms(Instant::now());
                let mut jobs = match assembler.handle(&input.msg, now) {
                    Ok(jobs) => {
                        bump(&shared.stats.frames_accepted);
                        jobs
                    }
                    Err(rej) => {
                        shared.stats.reject(rej.reason, &input.source, &rej.detail);
                        Vec::new()
                    }
                };
                jobs.extend(assembler.poll(now));
                jobs
            }
            _ = sleep_until_opt(deadline) => assembler.poll(ms(Instant::now())),
            _ = stopped(&mut stop) => break,
        };
        shared.stats.open_conversations.store(assembler.open_conversations() as u64, Relaxed);
        shared.stats.empty_utterances.store(assembler.empty_utterances, Relaxed);
        for job in jobs {
            match shared.queue.push(job) {
                Pushed::Queued | Pushed::Closed => {}
                Pushed::Superseded => bump(&shared.stats.windows_superseded),
                Pushed::DroppedOldest => {
                    bump(&shared.stats.windows_dropped);
                    log::warn!("inference queue full: oldest window dropped");
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown is signalled (or its sender is gone); holds no watch guard.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
