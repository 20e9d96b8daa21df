//! The serve loop (mini-redis style): `serve` takes bound listeners, opened serial ports, a
//! runner and a shutdown future. Order of events, which systemd relies on: warm-up inference,
//! inference thread started, READY; then accept until shutdown; then STOPPING and the shutdown
//! phases (`finish`): input stops (listeners closed, connections stop reading), the assembly
//! task applies what was received and flushes open utterances, the inference thread finishes
//! the queue, subscribers get the results published meanwhile, connections close. Every phase
//! is bounded in time, so a client that does not read cannot hold the daemon up.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::assembly::{Assembler, AssemblySettings, ClosedUtterance, WindowJob};
use super::connection::{serve_stream, StreamCtx};
use super::frontend::FrontendSide;
use super::inference::{
    InferencePolicy, InferenceThread, JobQueue, Published, Pushed, RunError, WatchdogPolicy, WindowRunner,
};
use super::limits::{Admission, ConnectionLimits, Peer, Registry, TokenBucket};
use super::model_info::{first_modality, ServedModel};
use super::notices::{limits_report, LimitSettings};
use super::notify::Notifier;
use super::ros2::{convert::model_bits, serve_ros2, Ros2Node};
use super::shared::{stopped, Input, Phases, Shared};
use super::stats::{bump, is_loud, Stats};
use crate::io::serial::SerialInput;
use crate::modality::{Modalities, Modality};
use crate::protocol::{conversation_id, max_result_frame_len, MAX_FRAME_LEN};

/// Longest wait, after input stopped, for the assembly task to apply what it received.
const INPUT_GRACE: Duration = Duration::from_secs(2);
/// Longest wait, after the queue is finished, for connections to deliver and close.
const OUTPUT_GRACE: Duration = Duration::from_secs(3);
/// Capacity of the socket clients' and the serial ports' channels to the assembly task.
const SOCKET_INPUT_QUEUE: usize = 1024;
const SERIAL_INPUT_QUEUE: usize = 256;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("warm-up inference failed: {0}")]
    WarmUp(String),
    #[error("cannot start the inference thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot start the text frontend: {0}")]
    Frontend(std::io::Error),
    #[error("warm-up task panicked")]
    Panicked,
    #[error(
        "a result of {window} utterances with {classes} classes may take {bound} bytes, over the protocol's {max}: lower assembly.window",
        max = MAX_FRAME_LEN
    )]
    ResultTooLarge {
        window: usize,
        classes: usize,
        bound: usize,
    },
}

/// Everything `serve` needs besides endpoints, runner and shutdown.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub assembly: AssemblySettings,
    /// The served model: the modalities the assembly waits for, the classes results name.
    pub model: ServedModel,
    pub queue_capacity: usize,
    pub max_frames_per_second: u32,
    pub burst: u32,
    /// Longest gap between watchdog pings from the inference loop.
    pub heartbeat: Duration,
    /// Failed windows in a row after which the watchdog is no longer fed.
    pub max_consecutive_errors: u32,
    /// Latency budget of a window from enqueue to result; it limits the inference thread's
    /// batches (`daemon::batching`; the batch cap is the runner's `max_batch`).
    pub batch_latency: Duration,
    /// Socket client limits (serial ports are not subject to them).
    pub limits: ConnectionLimits,
    /// `Scored` results below this confidence are marked uncertain (0 = never).
    pub abstain_below: f32,
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
    /// The joined ROS 2 node (`[ros2]`), served beside the sockets.
    pub ros2: Option<Ros2Node>,
}

/// A one-utterance window with only the model's first modality, so warm-up runs every part
/// including the sampler.
pub fn warmup_job(mods: &Modalities) -> WindowJob {
    let first = first_modality(mods);
    let features = Modality::ALL.map(|m| (m == first).then(|| vec![0.0; mods.size(m).unwrap_or(0)]));
    WindowJob {
        conversation: conversation_id("warm-up").unwrap_or_default(),
        session: 0,
        first_position: 0,
        utterances: vec![ClosedUtterance {
            utterance: 0,
            speaker: 0,
            features,
        }],
    }
}

/// Refuses a model whose largest result would not fit in a frame (clients would drop it).
fn check_result_size(opts: &ServeOptions, completion: &str) -> Result<(), ServeError> {
    let classes = opts.model.classes();
    let bound = max_result_frame_len(opts.assembly.window, classes, completion);
    if bound > MAX_FRAME_LEN {
        return Err(ServeError::ResultTooLarge {
            window: opts.assembly.window,
            classes: classes.len(),
            bound,
        });
    }
    Ok(())
}

/// Runs the daemon until `shutdown` resolves, then shuts down in bounded phases. Returns the
/// final counters.
pub async fn serve(
    endpoints: Endpoints,
    runner: Box<dyn WindowRunner>,
    opts: ServeOptions,
    notifier: Arc<dyn Notifier>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Arc<Stats>, ServeError> {
    check_result_size(&opts, &runner.completion())?;
    let mut runner = runner;
    let text_frontend = runner.take_text_frontend();
    let runner = if opts.warm_up {
        warm_up(runner, &opts).await?
    } else {
        runner
    };
    let engine = runner.describe();
    let max_batch = runner.max_batch();
    log::info!("model {}", opts.model.describe());
    let stats = Arc::new(Stats::default());
    let (results, _) = broadcast::channel(opts.result_backlog.max(1));
    let queue = Arc::new(JobQueue::new(opts.queue_capacity));
    let inference = InferenceThread::spawn(
        runner,
        Arc::clone(&queue),
        results.clone(),
        Arc::clone(&stats),
        Arc::clone(&notifier),
        inference_policy(&opts),
    )
    .map_err(ServeError::Thread)?;
    let frontend = FrontendSide::start(text_frontend, Arc::clone(&stats)).map_err(ServeError::Frontend)?;
    let shared = Arc::new(shared_state(&opts, &stats, results, queue, engine.clone()));
    let (stop_input, input_rx) = watch::channel(false);
    let (stop_output, output_rx) = watch::channel(false);
    let phases = Phases {
        input: input_rx,
        output: output_rx,
    };
    let (socket_tx, socket_rx) = mpsc::channel(SOCKET_INPUT_QUEUE);
    let (serial_tx, serial_rx) = mpsc::channel(SERIAL_INPUT_QUEUE);
    let assembler = Assembler::new(opts.assembly.clone(), opts.model.modalities);
    let assembly = tokio::spawn(assembly_task(
        assembler,
        (serial_rx, socket_rx),
        frontend,
        Arc::clone(&shared),
    ));
    let mut tasks = JoinSet::new();
    let bits = model_bits(opts.model.modalities.iter());
    spawn_endpoints(&mut tasks, endpoints, &shared, (socket_tx, serial_tx), &phases, bits);
    notifier.ready();
    notifier.status(&format!("serving: {engine}"));
    log::info!(
        "ready: {engine}; batches of up to {max_batch} windows, latency budget {:?}",
        opts.batch_latency
    );
    shutdown.await;
    notifier.stopping();
    notifier.status("stopping");
    log::info!("shutting down");
    let _ = stop_input.send(true);
    finish(assembly, inference, tasks, stop_output).await;
    log_stopped(&stats);
    Ok(stats)
}

/// The inference thread's watchdog and batching policy, from the validated options.
fn inference_policy(opts: &ServeOptions) -> InferencePolicy {
    InferencePolicy {
        watchdog: WatchdogPolicy {
            heartbeat: opts.heartbeat,
            max_consecutive_errors: opts.max_consecutive_errors,
        },
        batch_latency: opts.batch_latency,
    }
}

fn log_stopped(stats: &Stats) {
    log::info!(
        "stopped: {} windows run in {} batches ({} windows batched, {} batches shortened by the latency budget), {} inputs rejected",
        stats.windows_run.load(Relaxed),
        stats.batches_run.load(Relaxed),
        stats.windows_batched.load(Relaxed),
        stats.batches_shortened.load(Relaxed),
        stats.total_rejected()
    );
}

/// The state every stream shares (`Shared`), from the validated options.
fn shared_state(
    opts: &ServeOptions,
    stats: &Arc<Stats>,
    results: broadcast::Sender<Arc<Published>>,
    queue: Arc<JobQueue>,
    engine: String,
) -> Shared {
    Shared {
        stats: Arc::clone(stats),
        results,
        queue,
        started: Instant::now(),
        engine,
        max_frames_per_second: opts.max_frames_per_second,
        burst: opts.burst,
        limits: opts.limits,
        total_bucket: Mutex::new(TokenBucket::new(
            opts.limits.total_frames_per_second,
            opts.limits.total_burst,
            Instant::now(),
        )),
        registry: Registry::new(opts.limits),
        abstain_below: opts.abstain_below,
        model_info: opts.model.report(opts.assembly.window),
        limits_report: limits_report(LimitSettings {
            assembly: &opts.assembly,
            modalities: &opts.model.modalities,
            connections: &opts.limits,
            max_frames_per_second: opts.max_frames_per_second,
            burst: opts.burst,
            queue_capacity: opts.queue_capacity,
        }),
    }
}

/// Shutdown after input stopped: assembly flush, queue finished, results delivered, closed.
async fn finish(
    mut assembly: tokio::task::JoinHandle<()>,
    inference: InferenceThread,
    mut tasks: JoinSet<()>,
    stop_output: watch::Sender<bool>,
) {
    if tokio::time::timeout(INPUT_GRACE, &mut assembly).await.is_err() {
        assembly.abort();
        log::error!("assembly did not finish within {INPUT_GRACE:?} of stopping input; its open utterances are lost");
    }
    let _ = tokio::task::spawn_blocking(move || inference.stop()).await;
    let _ = stop_output.send(true);
    let drained = tokio::time::timeout(OUTPUT_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        log::warn!("connections still open {OUTPUT_GRACE:?} after the last result: closed");
        tasks.shutdown().await;
    }
}

/// One warm-up window, then (for a batching runner) one full batch of it, so that whatever an
/// engine builds lazily for either is built before READY.
async fn warm_up(mut runner: Box<dyn WindowRunner>, opts: &ServeOptions) -> Result<Box<dyn WindowRunner>, ServeError> {
    let job = warmup_job(&opts.model.modalities);
    let (runner, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = warm_up_runner(runner.as_mut(), &job);
        (runner, outcome)
    })
    .await
    .map_err(|_| ServeError::Panicked)?;
    let (single, batch) = outcome.map_err(|e| ServeError::WarmUp(e.to_string()))?;
    match batch {
        Some((n, took)) => log::info!("warm-up inference took {single:?}, a batch of {n} {took:?}"),
        None => log::info!("warm-up inference took {single:?}"),
    }
    Ok(runner)
}

/// Runs `job` alone, then `max_batch` copies of it as one batch when the runner batches; the
/// run times (and the batch size).
pub fn warm_up_runner(
    runner: &mut dyn WindowRunner,
    job: &WindowJob,
) -> Result<(Duration, Option<(usize, Duration)>), RunError> {
    let started = std::time::Instant::now();
    runner.run(job)?;
    let single = started.elapsed();
    let n = runner.max_batch().clamp(1, crate::capacity::MAX_BATCH);
    if n == 1 {
        return Ok((single, None));
    }
    let jobs = vec![job.clone(); n];
    let started = std::time::Instant::now();
    for answer in runner.run_batch(&jobs) {
        answer?;
    }
    Ok((single, Some((n, started.elapsed()))))
}

type InputSenders = (mpsc::Sender<Input>, mpsc::Sender<Input>);

/// Socket listeners and the ROS 2 node share the socket channel; serial ports have their own,
/// which the assembly task always serves first.
fn spawn_endpoints(
    tasks: &mut JoinSet<()>,
    endpoints: Endpoints,
    shared: &Arc<Shared>,
    (socket, serial): InputSenders,
    phases: &Phases,
    model_bits: u8,
) {
    if let Some(node) = endpoints.ros2 {
        tasks.spawn(serve_ros2(
            node,
            Arc::clone(shared),
            socket.clone(),
            phases.clone(),
            model_bits,
        ));
    }
    for l in endpoints.tcp {
        let (shared, input, phases) = (Arc::clone(shared), socket.clone(), phases.clone());
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            accept_until_stop(|| accept_tcp(&l), &shared, &input, &phases, &mut conns).await;
            drop((l, input));
            while conns.join_next().await.is_some() {}
        });
    }
    for l in endpoints.unix {
        let (shared, input, phases) = (Arc::clone(shared), socket.clone(), phases.clone());
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            accept_until_stop(|| accept_unix(&l), &shared, &input, &phases, &mut conns).await;
            drop((l, input));
            while conns.join_next().await.is_some() {}
        });
    }
    for port in endpoints.serial {
        tasks.spawn(super::serial::serve_serial(
            port,
            Arc::clone(shared),
            serial.clone(),
            phases.clone(),
        ));
    }
}

/// TCP clients: no Nagle delay (frames are small and latency matters), keepalive so a vanished
/// peer is noticed.
async fn accept_tcp(l: &TcpListener) -> std::io::Result<(tokio::net::TcpStream, Peer, String)> {
    let (stream, addr) = l.accept().await?;
    if let Err(e) = crate::io::listeners::tune_tcp(&stream) {
        log::debug!("tcp:{addr}: cannot set nodelay/keepalive: {e}");
    }
    Ok((stream, Peer::Ip(addr.ip()), format!("tcp:{addr}")))
}

async fn accept_unix(l: &UnixListener) -> std::io::Result<(tokio::net::UnixStream, Peer, String)> {
    let (stream, _) = l.accept().await?;
    let peer = stream.peer_cred().map_or(Peer::Unknown, |c| Peer::Uid(c.uid()));
    Ok((stream, peer, "unix".to_string()))
}

/// Accepts until input stops, admitting each client under the connection limits.
async fn accept_until_stop<S, F, Fut>(
    accept: F,
    shared: &Arc<Shared>,
    input: &mpsc::Sender<Input>,
    phases: &Phases,
    conns: &mut JoinSet<()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<(S, Peer, String)>>,
{
    let mut stop = phases.input.clone();
    let mut next_id = 0u64;
    let mut failures = 0u64;
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok((stream, peer, label)) => {
                    next_id += 1;
                    let source: Arc<str> = format!("{label}#{next_id}").into();
                    match shared.registry.admit(peer) {
                        Admission::Admitted { ticket, evicted } => {
                            if evicted {
                                bump(&shared.stats.connections_evicted);
                            }
                            let ctx = StreamCtx { source, input: input.clone(), ticket: Some(ticket), phases: phases.clone() };
                            let shared = Arc::clone(shared);
                            conns.spawn(async move {
                                // A socket's sender is not reused: it is dropped with the result.
                                let _ = serve_stream(stream, shared, ctx).await;
                            });
                        }
                        Admission::Refused { reason } => {
                            let n = shared.stats.connections_refused.fetch_add(1, Relaxed) + 1;
                            if is_loud(n) {
                                log::warn!("{source}: refused ({reason}; {n} refused so far)");
                            }
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    if is_loud(failures) {
                        log::warn!("accept failed: {e} ({failures} so far)");
                    }
                    // E.g. EMFILE: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
}

/// Owns the assembler: applies inputs (serial first), fires deadlines, queues windows. Ends
/// when every input sender is gone, after releasing every open utterance.
async fn assembly_task(
    mut assembler: Assembler,
    inputs: (mpsc::Receiver<Input>, mpsc::Receiver<Input>),
    mut frontend: FrontendSide,
    shared: Arc<Shared>,
) {
    let (mut serial, mut socket) = inputs;
    let start = shared.started;
    let ms = |t: Instant| u64::try_from(t.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX);
    let (mut serial_open, mut socket_open) = (true, true);
    while serial_open || socket_open {
        let deadline = assembler.next_deadline().map(|d| start + Duration::from_millis(d));
        let jobs = tokio::select! {
            biased;
            input = serial.recv(), if serial_open => match input {
                Some(input) => apply(&mut assembler, &frontend, &input, ms(Instant::now()), &shared),
                None => {
                    serial_open = false;
                    Vec::new()
                }
            },
            input = socket.recv(), if socket_open => match input {
                Some(input) => apply(&mut assembler, &frontend, &input, ms(Instant::now()), &shared),
                None => {
                    socket_open = false;
                    Vec::new()
                }
            },
            input = frontend.next() => apply(&mut assembler, &frontend, &input, ms(Instant::now()), &shared),
            _ = sleep_until_opt(deadline) => assembler.poll(ms(Instant::now())),
        };
        publish(&assembler, jobs, &shared);
    }
    // Transcripts accepted before input stopped are applied before the flush.
    let mut jobs = Vec::new();
    for input in frontend.finish().await {
        jobs.extend(apply(&mut assembler, &frontend, &input, ms(Instant::now()), &shared));
    }
    publish(&assembler, jobs, &shared);
    let open = assembler.open_utterances();
    let jobs = assembler.flush_all();
    if open > 0 {
        log::info!("input stopped: {open} open utterances released with what arrived");
    }
    publish(&assembler, jobs, &shared);
}

/// Applies one input; a `Transcript` goes to the text frontend instead (its text `Features`
/// come back through `FrontendSide::next`).
fn apply(
    assembler: &mut Assembler,
    frontend: &FrontendSide,
    input: &Input,
    now: u64,
    shared: &Shared,
) -> Vec<WindowJob> {
    if frontend.divert(input, &shared.stats) {
        return assembler.poll(now);
    }
    let mut jobs = match assembler.handle(&input.msg, now) {
        Ok(jobs) => {
            bump(&shared.stats.frames_accepted);
            jobs
        }
        Err(rej) => {
            shared.stats.reject(rej.reason, &input.source, &rej.detail);
            input
                .notices
                .record(rej.reason, input.msg.conversation(), input.msg.utterance(), &rej.detail);
            Vec::new()
        }
    };
    input.notices.applied_one();
    jobs.extend(assembler.poll(now));
    jobs
}

/// Mirrors the assembler's counters and queues its windows.
fn publish(assembler: &Assembler, jobs: Vec<WindowJob>, shared: &Shared) {
    let (s, c) = (&shared.stats, assembler.counters());
    s.open_conversations
        .store(assembler.open_conversations() as u64, Relaxed);
    s.empty_utterances.store(c.empty_utterances, Relaxed);
    s.conversation_restarts.store(c.restarts, Relaxed);
    s.late_replayed.store(c.late_replayed, Relaxed);
    s.conversations_evicted.store(c.evicted, Relaxed);
    s.utterances_flushed.store(c.utterances_flushed, Relaxed);
    for job in jobs {
        match shared.queue.push(job) {
            Pushed::Queued | Pushed::Closed => {}
            Pushed::Superseded => bump(&s.windows_superseded),
            Pushed::DroppedOldest => {
                let n = s.windows_dropped.fetch_add(1, Relaxed) + 1;
                if is_loud(n) {
                    log::warn!("inference queue full: oldest window dropped ({n} so far)");
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
