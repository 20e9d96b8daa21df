//! The inference side: the `WindowRunner` trait (what runs one window: the real pipeline or a
//! test double), the bounded job queue between the async side and the inference thread, and
//! the thread itself, which owns the runner and pings the watchdog.
//!
//! Overflow policy (docs/PROTOCOL.md, "Queue"): pushing never blocks. A queued job of the same
//! conversation session whose window the newer one covers (the newer window starts at or before
//! it, so it holds every utterance of the older one with more context) is replaced in place
//! (counted `windows_superseded`); a sliding window that has moved on, or the first window of a
//! new chunked block, is queued as well, so no utterance loses its last result. When the queue
//! is full, the oldest job is dropped (counted `windows_dropped`).
//!
//! Watchdog: the thread pings at least every heartbeat while the engine works; after
//! `max_consecutive_errors` failed windows in a row it stops pinging (systemd then restarts the
//! service) until a window succeeds again.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::assembly::WindowJob;
use super::notify::Notifier;
use super::stats::{bump, Stats};
use crate::protocol::{UtteranceResult, WindowResult};

/// Error of a runner: whatever the engine reports, logged and counted per window.
pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the model on one window. Implementations own their engine and buffers.
pub trait WindowRunner: Send {
    /// One line for logs and status: backend, provider, completion mode.
    fn describe(&self) -> String;
    /// Completion mode name published with each result.
    fn completion(&self) -> String;
    /// Results for every utterance of the window, in window order.
    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError>;
}

/// What happened to a pushed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    Superseded,
    DroppedOldest,
    Closed,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<WindowJob>,
    closed: bool,
}

/// Bounded queue of window jobs (see the module doc for the overflow policy).
#[derive(Debug)]
pub struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
}

impl JobQueue {
    pub fn new(capacity: usize) -> Self {
        JobQueue { state: Mutex::new(QueueState::default()), ready: Condvar::new(), capacity: capacity.max(1) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock leaves only a VecDeque behind: still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enqueues without blocking, applying the overflow policy.
    pub fn push(&self, job: WindowJob) -> Pushed {
        let mut st = self.lock();
        if st.closed {
            return Pushed::Closed;
        }
        let covered = |j: &WindowJob| {
            j.conversation == job.conversation && j.session == job.session && job.first_position <= j.first_position
        };
        let outcome = if let Some(slot) = st.jobs.iter_mut().find(|j| covered(j)) {
            *slot = job;
            Pushed::Superseded
        } else if st.jobs.len() >= self.capacity {
            st.jobs.pop_front();
            st.jobs.push_back(job);
            Pushed::DroppedOldest
        } else {
            st.jobs.push_back(job);
            Pushed::Queued
        };
        drop(st);
        self.ready.notify_one();
        outcome
    }

    /// Waits up to `timeout` for a job; `Err(())` once closed and drained.
    pub fn pop(&self, timeout: Duration) -> Result<Option<WindowJob>, ()> {
        let mut st = self.lock();
        if st.jobs.is_empty() && !st.closed {
            st = self.ready.wait_timeout(st, timeout).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
        match st.jobs.pop_front() {
            Some(job) => Ok(Some(job)),
            None if st.closed => Err(()),
            None => Ok(None),
        }
    }

    /// Stops accepting jobs; the thread drains what is queued, then exits.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Handle of the running inference thread.
pub struct InferenceThread {
    pub queue: Arc<JobQueue>,
    handle: JoinHandle<()>,
}

impl InferenceThread {
    /// Starts the thread; it publishes each result on `results` and pings `notifier`'s
    /// watchdog at least every `heartbeat` while fewer than `max_consecutive_errors` windows in
    /// a row have failed.
    pub fn spawn(
        runner: Box<dyn WindowRunner>,
        queue: Arc<JobQueue>,
        results: broadcast::Sender<Arc<WindowResult>>,
        stats: Arc<Stats>,
        notifier: Arc<dyn Notifier>,
        watchdog: WatchdogPolicy,
    ) -> std::io::Result<Self> {
        let q = Arc::clone(&queue);
        let handle = std::thread::Builder::new()
            .name("gsdnet-inference".into())
            .spawn(move || inference_loop(runner, &q, &results, &stats, notifier.as_ref(), watchdog))?;
        Ok(InferenceThread { queue, handle })
    }

    /// Closes the queue and waits for the current job to finish.
    pub fn stop(self) {
        self.queue.close();
        if self.handle.join().is_err() {
            log::error!("inference thread panicked");
        }
    }
}

/// When the inference thread feeds the watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogPolicy {
    /// Longest gap between pings while the engine works.
    pub heartbeat: Duration,
    /// Failed windows in a row after which pings stop (at least 1).
    pub max_consecutive_errors: u32,
}

fn inference_loop(
    mut runner: Box<dyn WindowRunner>,
    q: &JobQueue,
    results: &broadcast::Sender<Arc<WindowResult>>,
    stats: &Stats,
    notifier: &dyn Notifier,
    policy: WatchdogPolicy,
) {
    let completion = runner.completion();
    let mut failed_in_a_row = 0u32;
    loop {
        if failed_in_a_row < policy.max_consecutive_errors.max(1) {
            notifier.watchdog();
        }
        let job = match q.pop(policy.heartbeat) {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(()) => break,
        };
        let result = run_job(runner.as_mut(), &job, &completion, stats);
        failed_in_a_row = track_failures(failed_in_a_row, result.is_some(), policy, stats, notifier);
        if let Some(result) = result {
            log::debug!("{}", describe_result(&result));
            // No subscriber is not an error: results are also logged.
            if results.send(Arc::new(result)).is_ok() {
                bump(&stats.results_published);
            }
        }
    }
    log::debug!("inference thread: queue closed, exiting");
}

/// The new count of failures in a row; says so (log, status) when the watchdog stops or resumes.
fn track_failures(before: u32, ok: bool, policy: WatchdogPolicy, stats: &Stats, notifier: &dyn Notifier) -> u32 {
    let limit = policy.max_consecutive_errors.max(1);
    let after = if ok { 0 } else { before.saturating_add(1) };
    stats.consecutive_inference_errors.store(u64::from(after), std::sync::atomic::Ordering::Relaxed);
    let stopped = after >= limit;
    if stopped != (before >= limit) {
        stats.watchdog_stopped.store(stopped, std::sync::atomic::Ordering::Relaxed);
        if stopped {
            log::error!("{after} windows failed in a row: watchdog pings stopped, the service manager will restart the daemon");
            notifier.status(&format!("engine failing: {after} windows failed in a row; watchdog stopped"));
        } else {
            log::warn!("a window succeeded again after {before} failures: watchdog pings resumed");
            notifier.status("serving (engine recovered)");
        }
    }
    after
}

fn run_job(runner: &mut dyn WindowRunner, job: &WindowJob, completion: &str, stats: &Stats) -> Option<WindowResult> {
    let started = Instant::now();
    match runner.run(job) {
        Ok(utterances) => {
            bump(&stats.windows_run);
            Some(WindowResult {
                conversation: job.conversation.clone(),
                closed_utterance: job.closed_utterance(),
                completion: completion.to_string(),
                latency_us: u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX),
                utterances,
            })
        }
        Err(e) => {
            bump(&stats.inference_errors);
            let n = stats.inference_errors.load(std::sync::atomic::Ordering::Relaxed);
            if crate::daemon::stats::is_loud(n) {
                let conv = crate::daemon::stats::Escaped(&job.conversation);
                log::error!("{conv} utterance {}: inference failed: {e} ({n} failures so far)", job.closed_utterance());
            }
            None
        }
    }
}

fn describe_result(r: &WindowResult) -> String {
    let last = r.utterances.last();
    format!(
        "{} utterance {}: label {:?} reg {:?} ({} utterances, {} us)",
        crate::daemon::stats::Escaped(&r.conversation),
        r.closed_utterance,
        last.map(|u| u.label_name.as_str()),
        last.and_then(|u| u.reg),
        r.utterances.len(),
        r.latency_us
    )
}
