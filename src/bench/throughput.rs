//! Throughput of the daemon's inference step for a realistic stream (`gsdnet bench-throughput`):
//! windows per second, per CPU core, batch sizes and latencies, for C conversations at once.
//!
//! Drive: synchronous, on the calling thread. It runs what the inference thread runs, the
//! daemon's `JobQueue`, its batch decision (`inference::choose_batch`, latency budget and
//! run-time estimate) and its step (`inference::run_batch`, results built as published), but
//! without the thread, the broadcast and the IO side. Closed loop: each of the C conversations
//! has one window waiting or running at a time and queues its next one as soon as its result
//! is there, so the queue holds at most C windows and batches hold at most
//! `min(C, max_batch)`; this is the saturated throughput (no window is superseded or dropped).
//!
//! Stream: every conversation plays videos of the split one after another, each picked at
//! random (seeded), its entries hidden by `gsdnet eval`'s random mask at `rate` (so the sampler
//! runs). `WindowSizes::Whole`: one window per video holding all its utterances, so N follows
//! the split's utterances-per-video distribution. `WindowSizes::Sliding`: one window per
//! utterance, as the daemon's sliding windows (N = 1..=min(L, W) along a video of L).
//!
//! "Per core" divides by the process CPU time (user + system) of the measured span, not wall
//! time, so a busy machine or an engine using several threads is accounted for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::capacity::MAX_BATCH;
use crate::daemon::assembly::{ClosedUtterance, WindowJob};
use crate::daemon::batching::RunCost;
use crate::daemon::inference::{choose_batch, run_batch, JobQueue, WindowRunner};
use crate::daemon::stats::Stats;
use crate::masks::random_mask;
use crate::modality::{Modalities, Modality};
use crate::protocol::conversation_id;
use crate::recording::Recording;

#[derive(Debug, Error)]
pub enum ThroughputError {
    #[error("the recording holds no utterance")]
    Empty,
    #[error("mask: {0}")]
    Mask(#[from] crate::masks::MaskError),
    #[error("no window ran: {0} failed")]
    AllFailed(u64),
}

/// Which windows a video makes (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WindowSizes {
    Whole,
    Sliding,
}

/// A video of the split with its mask applied: the utterances as the daemon would assemble them.
#[derive(Debug, Clone)]
struct Video {
    id: String,
    utterances: Vec<ClosedUtterance>,
}

/// The windows the conversations draw from.
#[derive(Debug, Clone)]
pub struct Stream {
    videos: Vec<Video>,
    sizes: WindowSizes,
    window: usize,
    seed: u64,
}

impl Stream {
    /// Videos of `rec` over the model's modalities `mods`, masked at `rate` (eval's random mask,
    /// `seed`); windows of at most `window` utterances.
    pub fn new(
        rec: &Recording,
        mods: &Modalities,
        rate: f64,
        seed: u64,
        sizes: WindowSizes,
        window: usize,
    ) -> Result<Stream, ThroughputError> {
        let rate = crate::masks::check_rate(rate)?;
        let mut videos = Vec::new();
        for c in rec.conversations.iter().filter(|c| !c.utterances.is_empty()) {
            let mask = random_mask(seed, rate, &c.id, c.utterances.len(), mods);
            let utterances = c
                .utterances
                .iter()
                .zip(mask)
                .map(|(u, avail)| ClosedUtterance {
                    utterance: u.position,
                    speaker: u16::try_from(u.speaker).unwrap_or(u16::MAX),
                    features: std::array::from_fn(|m| {
                        u.features[m]
                            .clone()
                            .filter(|_| avail[m] && mods.size(Modality::ALL[m]).is_some())
                    }),
                })
                .collect();
            videos.push(Video {
                id: c.id.clone(),
                utterances,
            });
        }
        if videos.is_empty() {
            return Err(ThroughputError::Empty);
        }
        Ok(Stream {
            videos,
            sizes,
            window: window.max(1),
            seed,
        })
    }

    /// Utterances per video, in recording order.
    pub fn video_lengths(&self) -> Vec<usize> {
        self.videos.iter().map(|v| v.utterances.len()).collect()
    }

    /// The windows of the `k`-th video conversation `slot` plays, in order.
    fn windows(&self, slot: usize, k: u64, session: u64) -> Vec<WindowJob> {
        let pick = crate::rng::raw(crate::rng::derive(self.seed, &[7, slot as u64]), k);
        let video = &self.videos[(pick % self.videos.len() as u64) as usize];
        let mut name = format!("{slot}-{k}-{}", video.id);
        while name.len() > crate::protocol::MAX_CONVERSATION_ID {
            name.pop();
        }
        let conversation = conversation_id(&name).unwrap_or_default();
        let n = video.utterances.len();
        let ends: Vec<usize> = match self.sizes {
            WindowSizes::Whole => vec![n],
            WindowSizes::Sliding => (1..=n).collect(),
        };
        ends.into_iter()
            .map(|end| {
                let first = end.saturating_sub(self.window);
                WindowJob {
                    conversation: conversation.clone(),
                    session,
                    first_position: first as u64,
                    utterances: video.utterances[first..end].to_vec(),
                }
            })
            .collect()
    }
}

/// One conversation's position in the stream.
struct Cursor {
    slot: usize,
    videos_played: u64,
    pending: std::vec::IntoIter<WindowJob>,
}

impl Cursor {
    fn next(&mut self, stream: &Stream, session: &mut u64) -> WindowJob {
        loop {
            if let Some(job) = self.pending.next() {
                return job;
            }
            *session += 1;
            self.pending = stream.windows(self.slot, self.videos_played, *session).into_iter();
            self.videos_played += 1;
        }
    }
}

/// One measurement: C conversations, one `max_batch`.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec {
    pub conversations: usize,
    /// Windows measured (after `warmup` windows not measured).
    pub windows: usize,
    pub warmup: usize,
    /// The daemon's `engine.batch_latency_ms`.
    pub budget: Duration,
}

/// What one measurement found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Measurement {
    pub conversations: usize,
    pub max_batch: usize,
    pub windows: u64,
    pub failed: u64,
    pub batches: u64,
    pub mean_batch: f64,
    pub batches_shortened: u64,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub windows_per_s: f64,
    /// Windows per CPU-second of the process.
    pub windows_per_core_s: f64,
    /// `latency_us` as published: the run time of the batch holding the window.
    pub latency_p50_us: u64,
    pub latency_p95_us: u64,
    /// From enqueue to result.
    pub age_p50_us: u64,
}

/// Runs `spec` on `runner` (its `max_batch`, capped at `MAX_BATCH`) over `stream`.
pub fn measure(runner: &mut dyn WindowRunner, stream: &Stream, spec: &RunSpec) -> Result<Measurement, ThroughputError> {
    let c = spec.conversations.max(1);
    let cap = runner.max_batch().clamp(1, MAX_BATCH);
    let completion = runner.completion();
    let queue = JobQueue::new(c);
    let (stats, mut cost) = (Stats::default(), RunCost::new(cap));
    let mut cursors: Vec<Cursor> = (0..c)
        .map(|slot| Cursor {
            slot,
            videos_played: 0,
            pending: Vec::new().into_iter(),
        })
        .collect();
    let mut idle: Vec<usize> = (0..c).collect();
    let mut slot_of: HashMap<u64, usize> = HashMap::new();
    let mut session = 0u64;
    let mut rec = Recorder::default();
    let total = (spec.warmup + spec.windows.max(1)) as u64;
    let mut done = 0u64;
    while done < total {
        for slot in idle.drain(..) {
            let job = cursors[slot].next(stream, &mut session);
            slot_of.insert(job.session, slot);
            queue.push_at(job, Instant::now());
        }
        if done >= spec.warmup as u64 && rec.started.is_none() {
            rec.start();
        }
        let choose = |e: &[Instant]| choose_batch(e, Instant::now(), spec.budget, &cost, &stats);
        let Ok(batch) = queue.pop_batch_by(cap, Duration::ZERO, choose) else {
            break;
        };
        let results = run_batch(runner, &batch.jobs, &completion, &stats, &mut cost);
        let finished = Instant::now();
        for ((job, enqueued), result) in batch.jobs.iter().zip(&batch.enqueued).zip(&results) {
            idle.extend(slot_of.remove(&job.session));
            if rec.started.is_some() {
                rec.window(
                    result.as_ref().map(|r| r.latency_us),
                    finished.saturating_duration_since(*enqueued),
                );
            }
        }
        if rec.started.is_some() {
            rec.batches += 1;
        }
        done += batch.len() as u64;
    }
    rec.finish(
        c,
        cap,
        stats.batches_shortened.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// Counts of the measured span.
#[derive(Default)]
struct Recorder {
    started: Option<(Instant, Duration)>,
    latency_us: Vec<u64>,
    age_us: Vec<u64>,
    failed: u64,
    batches: u64,
}

impl Recorder {
    fn start(&mut self) {
        self.started = Some((Instant::now(), cpu_time()));
    }

    fn window(&mut self, latency_us: Option<u32>, age: Duration) {
        match latency_us {
            Some(us) => {
                self.latency_us.push(u64::from(us));
                self.age_us.push(u64::try_from(age.as_micros()).unwrap_or(u64::MAX));
            }
            None => self.failed += 1,
        }
    }

    fn finish(
        mut self,
        conversations: usize,
        max_batch: usize,
        batches_shortened: u64,
    ) -> Result<Measurement, ThroughputError> {
        let Some((t0, cpu0)) = self.started else {
            return Err(ThroughputError::AllFailed(self.failed));
        };
        let (wall, cpu) = (
            t0.elapsed().as_secs_f64(),
            cpu_time().saturating_sub(cpu0).as_secs_f64(),
        );
        let windows = self.latency_us.len() as u64;
        if windows == 0 {
            return Err(ThroughputError::AllFailed(self.failed));
        }
        let per = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
        Ok(Measurement {
            conversations,
            max_batch,
            windows,
            failed: self.failed,
            batches: self.batches,
            mean_batch: per((windows + self.failed) as f64, self.batches as f64),
            batches_shortened,
            wall_s: wall,
            cpu_s: cpu,
            windows_per_s: per(windows as f64, wall),
            windows_per_core_s: per(windows as f64, cpu),
            latency_p50_us: percentile(&mut self.latency_us, 0.50),
            latency_p95_us: percentile(&mut self.latency_us, 0.95),
            age_p50_us: percentile(&mut self.age_us, 0.50),
        })
    }
}

/// The figures `gsdnet bench-throughput` ends with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// The most conversations measured, and the largest `max_batch` measured with them.
    pub conversations: usize,
    pub max_batch: usize,
    /// Windows per core-second there, batched and one window at a time (`max_batch` 1).
    pub batched_windows_per_core_s: Option<f64>,
    pub single_windows_per_core_s: Option<f64>,
    /// `batched / single`.
    pub ratio: Option<f64>,
    /// p50 `latency_us` of one conversation, one window at a time.
    pub single_window_latency_p50_us: Option<u64>,
}

/// The summary of `rows` (`Summary`); a figure whose row was not measured is `None`.
pub fn summarize(rows: &[Measurement]) -> Summary {
    let find = |c: usize, b: usize| rows.iter().find(|m| m.conversations == c && m.max_batch == b);
    let conversations = rows.iter().map(|m| m.conversations).max().unwrap_or(0);
    let max_batch = rows
        .iter()
        .filter(|m| m.conversations == conversations)
        .map(|m| m.max_batch)
        .max()
        .unwrap_or(0);
    let batched = find(conversations, max_batch).map(|m| m.windows_per_core_s);
    let single = find(conversations, 1).map(|m| m.windows_per_core_s);
    Summary {
        conversations,
        max_batch,
        batched_windows_per_core_s: batched,
        single_windows_per_core_s: single,
        ratio: batched.zip(single).and_then(|(b, s)| (s > 0.0).then(|| b / s)),
        single_window_latency_p50_us: find(1, 1).map(|m| m.latency_p50_us),
    }
}

/// One line of the table `table_header` starts.
pub fn table_row(m: &Measurement) -> String {
    format!(
        "{:>5} {:>9} {:>8} {:>7} {:>10.1} {:>10.1} {:>11.1} {:>9} {:>9} {:>9} {:>6}",
        m.conversations,
        m.max_batch,
        m.windows,
        m.batches,
        m.mean_batch,
        m.windows_per_s,
        m.windows_per_core_s,
        m.latency_p50_us,
        m.latency_p95_us,
        m.age_p50_us,
        m.failed
    )
}

pub fn table_header() -> String {
    format!(
        "{:>5} {:>9} {:>8} {:>7} {:>10} {:>10} {:>11} {:>9} {:>9} {:>9} {:>6}",
        "conv",
        "max_batch",
        "windows",
        "batches",
        "mean_batch",
        "windows/s",
        "win/core-s",
        "lat_p50us",
        "lat_p95us",
        "age_p50us",
        "failed"
    )
}

/// Nearest-rank percentile (`q` in 0..=1) of `v`; 0 when empty.
fn percentile(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    super::config::nearest_rank(v, q)
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain integers (all zero is a valid value); getrusage writes into the
    // local struct only.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64);
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::inference::RunError;
    use crate::protocol::UtteranceResult;
    use crate::recording::{Conversation, UtteranceRecord};

    fn recording(lengths: &[usize]) -> Recording {
        let conversations = lengths
            .iter()
            .enumerate()
            .map(|(v, &n)| Conversation {
                id: format!("v{v}"),
                utterances: (0..n)
                    .map(|p| UtteranceRecord {
                        conversation: format!("v{v}"),
                        id: format!("v{v}_{p}"),
                        speaker: 0,
                        position: p as u32,
                        timestamp_ms: None,
                        label: None,
                        label_cont: None,
                        features: [Some(vec![0.0; 2]), Some(vec![0.0; 2]), None],
                    })
                    .collect(),
            })
            .collect();
        Recording { conversations }
    }

    /// Records the batch sizes it is given.
    struct Counting {
        max: usize,
        sizes: Vec<usize>,
    }

    impl WindowRunner for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn completion(&self) -> String {
            "mock".into()
        }
        fn run(&mut self, _job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
            Ok(Vec::new())
        }
        fn max_batch(&self) -> usize {
            self.max
        }
        fn run_batch(&mut self, jobs: &[WindowJob]) -> Vec<Result<Vec<UtteranceResult>, RunError>> {
            self.sizes.push(jobs.len());
            jobs.iter().map(|j| self.run(j)).collect()
        }
    }

    fn stream(sizes: WindowSizes) -> Stream {
        let mods = Modalities::new([2, 2, 0]).unwrap();
        Stream::new(&recording(&[3, 5]), &mods, 0.3, 0, sizes, 4).unwrap()
    }

    #[test]
    fn batches_hold_at_most_the_conversations_and_max_batch() {
        let spec = RunSpec {
            conversations: 3,
            windows: 30,
            warmup: 3,
            budget: Duration::from_secs(10),
        };
        let mut r = Counting {
            max: 8,
            sizes: Vec::new(),
        };
        let m = measure(&mut r, &stream(WindowSizes::Sliding), &spec).unwrap();
        assert!(
            r.sizes.iter().all(|&n| n == 3),
            "closed loop: every conversation waits each time: {:?}",
            r.sizes
        );
        assert_eq!((m.windows, m.failed, m.mean_batch), (30, 0, 3.0));
        let mut one = Counting {
            max: 1,
            sizes: Vec::new(),
        };
        let m = measure(&mut one, &stream(WindowSizes::Whole), &spec).unwrap();
        assert!(one.sizes.iter().all(|&n| n == 1));
        assert_eq!((m.windows, m.batches, m.max_batch), (30, 30, 1));
    }

    #[test]
    fn windows_follow_the_videos() {
        let s = stream(WindowSizes::Sliding);
        assert_eq!(s.video_lengths(), [3, 5]);
        let sizes: Vec<Vec<usize>> = (0..4)
            .map(|k| s.windows(0, k, 1).iter().map(|j| j.utterances.len()).collect())
            .collect();
        assert!(
            sizes.iter().all(|w| *w == [1, 2, 3] || *w == [1, 2, 3, 4, 4]),
            "W = 4 caps the sliding window: {sizes:?}"
        );
        let w = s.windows(0, 0, 1);
        assert!(
            w.iter()
                .all(|j| j.utterances.iter().all(|u| u.features.iter().any(Option::is_some))),
            "keep-one mask"
        );
        let whole = stream(WindowSizes::Whole);
        assert!((0..4).all(|k| whole.windows(1, k, 1).len() == 1));
    }

    #[test]
    fn the_summary_compares_the_most_conversations_batched_and_not() {
        let row = |c: usize, b: usize, per: f64, lat: u64| Measurement {
            conversations: c,
            max_batch: b,
            windows: 1,
            failed: 0,
            batches: 1,
            mean_batch: 1.0,
            batches_shortened: 0,
            wall_s: 1.0,
            cpu_s: 1.0,
            windows_per_s: per,
            windows_per_core_s: per,
            latency_p50_us: lat,
            latency_p95_us: lat,
            age_p50_us: lat,
        };
        let s = summarize(&[
            row(1, 1, 100.0, 7),
            row(8, 1, 100.0, 9),
            row(1, 8, 100.0, 8),
            row(8, 8, 250.0, 30),
        ]);
        assert_eq!(
            (s.conversations, s.max_batch, s.ratio, s.single_window_latency_p50_us),
            (8, 8, Some(2.5), Some(7))
        );
        assert_eq!(summarize(&[row(8, 8, 1.0, 1)]).ratio, None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v = vec![5, 1, 4, 2, 3];
        assert_eq!(
            (
                percentile(&mut v, 0.5),
                percentile(&mut v, 0.95),
                percentile(&mut [], 0.5)
            ),
            (3, 5, 0)
        );
    }
}
