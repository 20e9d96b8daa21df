//! The inference side: the `WindowRunner` trait (what runs windows: the real pipeline or a test
//! double), the inference thread, which owns the runner, takes the waiting windows from the
//! bounded job queue (`queue`) a batch at a time (sized by `batching`), publishes one result per
//! window and pings the watchdog, and `run_batch`, the step the thread repeats (the throughput
//! driver runs it too).
//!
//! Results: one `WindowResult` per job, in job order; `latency_us` is the time from the start of
//! the batch run holding the window to its result (the batch's run time; with batches of one,
//! the window's inference time). A window that fails (invalid, or its batch's engine error) is
//! counted and logged, nothing is published for it, and the other windows are unaffected.
//!
//! Watchdog: the thread pings at least every heartbeat while the engine works; after
//! `max_consecutive_errors` failed windows in a row (in job order) it stops pinging (systemd
//! then restarts the service) until a window succeeds again.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::assembly::WindowJob;
use super::batching::{batch_size, RunCost};
use super::notify::Notifier;
use super::stats::{bump, Stats};
use crate::capacity::MAX_BATCH;
use crate::protocol::{UtteranceResult, WindowResult};

pub use super::queue::{Batch, Drained, JobQueue, Pushed};

/// Error of a runner: whatever the engine reports, logged and counted per window.
pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the model on windows. Implementations own their engine and buffers.
pub trait WindowRunner: Send {
    /// One line for logs and status: backend, provider, completion mode.
    fn describe(&self) -> String;
    /// Completion mode name published with each result.
    fn completion(&self) -> String;
    /// Results for every utterance of the window, in window order.
    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError>;
    /// The most windows worth giving `run_batch` at once (1: one window at a time).
    fn max_batch(&self) -> usize {
        1
    }
    /// One entry per job, in job order, each what `run` gives that job alone; a job's failure
    /// is its own entry. The default runs them one by one.
    fn run_batch(&mut self, jobs: &[WindowJob]) -> Vec<Result<Vec<UtteranceResult>, RunError>> {
        jobs.iter().map(|j| self.run(j)).collect()
    }
    /// The text frontend of the runner's model (`[frontends.text]`), handed once to the daemon's
    /// frontend thread (`daemon::frontend`); `None` when the model takes text vectors.
    fn take_text_frontend(&mut self) -> Option<crate::frontend::TextFrontend> {
        None
    }
}

/// A window result as the daemon publishes it inside: the socket protocol's `WindowResult` and
/// the speaker of each of its utterances, in order (the ROS 2 result carries them).
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub result: WindowResult,
    pub speakers: Vec<u16>,
}

impl Published {
    /// `result` with the speakers of `job`'s utterances.
    pub fn new(result: WindowResult, job: &WindowJob) -> Self {
        let speakers = job.utterances.iter().map(|u| u.speaker).collect();
        Published { result, speakers }
    }
}

impl std::ops::Deref for Published {
    type Target = WindowResult;
    fn deref(&self) -> &WindowResult {
        &self.result
    }
}

/// Handle of the running inference thread.
pub struct InferenceThread {
    pub queue: Arc<JobQueue>,
    handle: JoinHandle<()>,
}

impl InferenceThread {
    /// Starts the thread; it publishes each result on `results`, pings `notifier`'s watchdog
    /// and sizes its batches as `policy` says.
    pub fn spawn(
        runner: Box<dyn WindowRunner>,
        queue: Arc<JobQueue>,
        results: broadcast::Sender<Arc<Published>>,
        stats: Arc<Stats>,
        notifier: Arc<dyn Notifier>,
        policy: InferencePolicy,
    ) -> std::io::Result<Self> {
        let q = Arc::clone(&queue);
        let handle = std::thread::Builder::new()
            .name("gsdnet-inference".into())
            .spawn(move || inference_loop(runner, &q, &results, &stats, notifier.as_ref(), policy))?;
        Ok(InferenceThread { queue, handle })
    }

    /// Closes the queue and waits for the queued jobs to finish.
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

/// What the inference thread is told: its watchdog policy and the latency budget of a window
/// from enqueue to result, which limits its batches (`batching`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferencePolicy {
    pub watchdog: WatchdogPolicy,
    pub batch_latency: Duration,
}

/// The batch decision at `now` over the enqueue times of the waiting windows (oldest first);
/// counts a batch the budget made smaller than what waits.
pub fn choose_batch(enqueued: &[Instant], now: Instant, budget: Duration, cost: &RunCost, stats: &Stats) -> usize {
    let ages: Vec<Duration> = enqueued.iter().map(|&t| now.saturating_duration_since(t)).collect();
    let n = batch_size(budget, &ages, cost);
    if n < ages.len() {
        bump(&stats.batches_shortened);
    }
    n
}

fn inference_loop(
    mut runner: Box<dyn WindowRunner>,
    q: &JobQueue,
    results: &broadcast::Sender<Arc<Published>>,
    stats: &Stats,
    notifier: &dyn Notifier,
    policy: InferencePolicy,
) {
    let completion = runner.completion();
    let cap = runner.max_batch().clamp(1, MAX_BATCH);
    let mut cost = RunCost::new(cap);
    let mut failed_in_a_row = 0u32;
    loop {
        if failed_in_a_row < policy.watchdog.max_consecutive_errors.max(1) {
            notifier.watchdog();
        }
        let choose = |enqueued: &[Instant]| choose_batch(enqueued, Instant::now(), policy.batch_latency, &cost, stats);
        let batch = match q.pop_batch_by(cap, policy.watchdog.heartbeat, choose) {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => batch,
            Err(Drained) => break,
        };
        let answers = run_batch(runner.as_mut(), &batch.jobs, &completion, stats, &mut cost);
        for (result, job) in answers.into_iter().zip(&batch.jobs) {
            failed_in_a_row = track_failures(failed_in_a_row, result.is_some(), policy.watchdog, stats, notifier);
            if let Some(result) = result {
                log::debug!("{}", describe_result(&result));
                // No subscriber is not an error: results are also logged.
                if results.send(Arc::new(Published::new(result, job))).is_ok() {
                    bump(&stats.results_published);
                }
            }
        }
    }
    log::debug!("inference thread: queue closed, exiting");
}

/// The new count of failures in a row; says so (log, status) when the watchdog stops or resumes.
fn track_failures(before: u32, ok: bool, policy: WatchdogPolicy, stats: &Stats, notifier: &dyn Notifier) -> u32 {
    let limit = policy.max_consecutive_errors.max(1);
    let after = if ok { 0 } else { before.saturating_add(1) };
    stats.consecutive_inference_errors.store(u64::from(after), Relaxed);
    let stopped = after >= limit;
    if stopped != (before >= limit) {
        stats.watchdog_stopped.store(stopped, Relaxed);
        if stopped {
            log::error!(
                "{after} windows failed in a row: watchdog pings stopped, the service manager will restart the daemon"
            );
            notifier.status(&format!(
                "engine failing: {after} windows failed in a row; watchdog stopped"
            ));
        } else {
            log::warn!("a window succeeded again after {before} failures: watchdog pings resumed");
            notifier.status("serving (engine recovered)");
        }
    }
    after
}

/// Runs `jobs` (queue order) as one batch on `runner` and counts it (`batches_run`,
/// `windows_batched`, `windows_run`, `inference_errors`); records its run time in `cost` unless
/// every job failed. One entry per job, in job order: the result to publish, or `None` when the
/// job failed (logged, throttled).
pub fn run_batch(
    runner: &mut dyn WindowRunner,
    jobs: &[WindowJob],
    completion: &str,
    stats: &Stats,
    cost: &mut RunCost,
) -> Vec<Option<WindowResult>> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let started = Instant::now();
    let mut answers = runner.run_batch(jobs).into_iter();
    let took = started.elapsed();
    bump(&stats.batches_run);
    if jobs.len() > 1 {
        stats.windows_batched.fetch_add(jobs.len() as u64, Relaxed);
    }
    log::debug!("batch of {} windows ran in {took:?}", jobs.len());
    let latency_us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
    let out: Vec<Option<WindowResult>> = jobs
        .iter()
        .map(|job| {
            // A runner answering fewer entries than jobs fails the rest, nothing is mismatched.
            let answer = answers
                .next()
                .unwrap_or_else(|| Err("the runner returned no result for this window".into()));
            publishable(job, answer, completion, latency_us, stats)
        })
        .collect();
    if out.iter().any(Option::is_some) {
        cost.record(jobs.len(), took);
    }
    out
}

fn publishable(
    job: &WindowJob,
    answer: Result<Vec<UtteranceResult>, RunError>,
    completion: &str,
    latency_us: u32,
    stats: &Stats,
) -> Option<WindowResult> {
    match answer {
        Ok(utterances) => {
            bump(&stats.windows_run);
            Some(WindowResult {
                conversation: job.conversation.clone(),
                closed_utterance: job.closed_utterance(),
                completion: completion.to_string(),
                latency_us,
                utterances,
            })
        }
        Err(e) => {
            bump(&stats.inference_errors);
            let n = stats.inference_errors.load(Relaxed);
            if crate::daemon::stats::is_loud(n) {
                let conv = crate::daemon::stats::Escaped(&job.conversation);
                log::error!(
                    "{conv} utterance {}: inference failed: {e} ({n} failures so far)",
                    job.closed_utterance()
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_batch_measures_ages_at_now_and_counts_shortened_batches() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut cost = RunCost::new(8);
        cost.record(1, ms(20));
        cost.record(4, ms(80));
        let stats = Stats::default();
        let enqueued = [t0, t0 + ms(50), t0 + ms(100), t0 + ms(150)];
        // At t0 + 150 ms the oldest has waited 150 ms: 150 + 80 fits 250, all four run.
        assert_eq!(choose_batch(&enqueued, t0 + ms(150), ms(250), &cost, &stats), 4);
        assert_eq!(stats.batches_shortened.load(Relaxed), 0);
        // 40 ms later: 190 + 80 does not fit; three windows take at most 3 x 20 ms: 190 + 60 fits.
        assert_eq!(choose_batch(&enqueued, t0 + ms(190), ms(250), &cost, &stats), 3);
        assert_eq!(stats.batches_shortened.load(Relaxed), 1);
    }
}
