//! The bounded job queue between the async side (which pushes windows) and the inference
//! thread (which takes them, one batch at a time), and each job's enqueue time.
//!
//! Overflow policy (docs/PROTOCOL.md, "Queue"): pushing never blocks. A queued job of the same
//! conversation session whose window the newer one covers (the newer window starts at or before
//! it, so it holds every utterance of the older one with more context) is replaced in place
//! (counted `windows_superseded`); a sliding window that has moved on, or the first window of a
//! new chunked block, is queued as well, so no utterance loses its last result. When the queue
//! is full, the oldest job is dropped (counted `windows_dropped`).
//!
//! Enqueue times: a job replacing a queued one keeps that job's enqueue time (it also answers
//! for the utterances the replaced one was waiting to answer for). Invariant, given pushes with
//! non-decreasing times (`push` reads a monotonic clock): enqueue times are non-decreasing from
//! front to back, so the front job is the oldest.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::assembly::WindowJob;

/// What happened to a pushed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    Superseded,
    DroppedOldest,
    Closed,
}

#[derive(Debug)]
struct Queued {
    job: WindowJob,
    enqueued: Instant,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<Queued>,
    closed: bool,
}

/// The queue was closed and every job in it was taken: the inference thread exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the job queue is closed and drained")]
pub struct Drained;

/// Jobs taken from the queue at once, in queue order, with their enqueue times
/// (`enqueued[i]` is the time of `jobs[i]`).
#[derive(Debug, Default)]
pub struct Batch {
    pub jobs: Vec<WindowJob>,
    pub enqueued: Vec<Instant>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
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
        JobQueue {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
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

    /// Enqueues without blocking, applying the overflow policy; the job's enqueue time is now.
    pub fn push(&self, job: WindowJob) -> Pushed {
        self.push_at(job, Instant::now())
    }

    /// `push` with the enqueue time given (tests, the throughput driver).
    pub fn push_at(&self, job: WindowJob, now: Instant) -> Pushed {
        let mut st = self.lock();
        if st.closed {
            return Pushed::Closed;
        }
        let covered = |j: &WindowJob| {
            j.conversation == job.conversation && j.session == job.session && job.first_position <= j.first_position
        };
        let outcome = if let Some(slot) = st.jobs.iter_mut().find(|q| covered(&q.job)) {
            // The slot's enqueue time stays (module doc).
            slot.job = job;
            Pushed::Superseded
        } else if st.jobs.len() >= self.capacity {
            st.jobs.pop_front();
            st.jobs.push_back(Queued { job, enqueued: now });
            Pushed::DroppedOldest
        } else {
            st.jobs.push_back(Queued { job, enqueued: now });
            Pushed::Queued
        };
        drop(st);
        self.ready.notify_one();
        outcome
    }

    /// Waits up to `timeout` for a job; `Drained` once closed and drained.
    pub fn pop(&self, timeout: Duration) -> Result<Option<WindowJob>, Drained> {
        let batch = self.pop_batch(1, timeout)?;
        Ok(batch.jobs.into_iter().next())
    }

    /// Waits up to `timeout` for a job, then takes up to `max` (at least one) in queue order,
    /// whatever their conversations; an empty batch when none came. `Drained` once closed and
    /// drained.
    pub fn pop_batch(&self, max: usize, timeout: Duration) -> Result<Batch, Drained> {
        self.pop_batch_by(max, timeout, |enqueued| enqueued.len())
    }

    /// `pop_batch` where `choose` decides how many to take from the enqueue times of the first
    /// `max` waiting jobs (oldest first; never empty); its answer is clamped to 1..=that many.
    /// It runs under the queue lock: it must be quick and must not touch the queue.
    pub fn pop_batch_by(
        &self,
        max: usize,
        timeout: Duration,
        choose: impl FnOnce(&[Instant]) -> usize,
    ) -> Result<Batch, Drained> {
        let mut st = self.lock();
        if st.jobs.is_empty() && !st.closed {
            st = self
                .ready
                .wait_timeout(st, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        if st.jobs.is_empty() {
            return if st.closed { Err(Drained) } else { Ok(Batch::default()) };
        }
        let waiting: Vec<Instant> = st.jobs.iter().take(max.max(1)).map(|q| q.enqueued).collect();
        let n = choose(&waiting).clamp(1, waiting.len());
        let mut batch = Batch {
            jobs: Vec::with_capacity(n),
            enqueued: Vec::with_capacity(n),
        };
        for q in st.jobs.drain(..n) {
            batch.jobs.push(q.job);
            batch.enqueued.push(q.enqueued);
        }
        Ok(batch)
    }

    /// Stops accepting jobs; the thread drains what is queued, then exits.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::conversation_id;

    fn job(conv: &str, first_position: u64) -> WindowJob {
        WindowJob {
            conversation: conversation_id(conv).unwrap(),
            session: 1,
            first_position,
            utterances: Vec::new(),
        }
    }

    fn convs(b: &Batch) -> Vec<String> {
        b.jobs.iter().map(|j| j.conversation.to_string()).collect()
    }

    #[test]
    fn pop_batch_takes_up_to_max_in_queue_order_across_conversations() {
        let q = JobQueue::new(8);
        for c in ["a", "b", "c", "d", "e"] {
            assert_eq!(q.push(job(c, 0)), Pushed::Queued);
        }
        let first = q.pop_batch(3, Duration::ZERO).unwrap();
        assert_eq!(convs(&first), ["a", "b", "c"]);
        assert_eq!(q.len(), 2);
        assert_eq!(convs(&q.pop_batch(8, Duration::ZERO).unwrap()), ["d", "e"]);
        assert!(q.pop_batch(8, Duration::ZERO).unwrap().is_empty());
        assert_eq!(
            q.pop_batch(0, Duration::ZERO).map(|b| b.len()),
            Ok(0),
            "max 0 waits like 1"
        );
    }

    #[test]
    fn pop_batch_keeps_the_supersession_and_overflow_policy() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let q = JobQueue::new(3);
        assert_eq!(q.push_at(job("a", 3), at(0)), Pushed::Queued);
        assert_eq!(q.push_at(job("b", 0), at(1)), Pushed::Queued);
        assert_eq!(q.push_at(job("a", 4), at(2)), Pushed::Queued, "moved on: queued behind");
        assert_eq!(
            q.push_at(job("a", 4), at(3)),
            Pushed::Superseded,
            "covers the queued a@4 only: replaces it in place"
        );
        assert_eq!(
            q.push_at(job("c", 0), at(4)),
            Pushed::DroppedOldest,
            "full: a@3 dropped"
        );
        let b = q.pop_batch(8, Duration::ZERO).unwrap();
        assert_eq!(convs(&b), ["b", "a", "c"]);
        assert_eq!(b.jobs.iter().map(|j| j.first_position).collect::<Vec<_>>(), [0, 4, 0]);
        // The superseding a@4 kept the enqueue time of the one it replaced.
        assert_eq!(b.enqueued, [at(1), at(2), at(4)]);
    }

    #[test]
    fn choose_sees_the_oldest_first_and_is_clamped() {
        let t0 = Instant::now();
        let q = JobQueue::new(8);
        for (i, c) in ["a", "b", "c", "d"].into_iter().enumerate() {
            q.push_at(job(c, 0), t0 + Duration::from_millis(i as u64));
        }
        let mut seen = Vec::new();
        let b = q
            .pop_batch_by(3, Duration::ZERO, |e| {
                seen = e.to_vec();
                2
            })
            .unwrap();
        assert_eq!(seen, [t0, t0 + Duration::from_millis(1), t0 + Duration::from_millis(2)]);
        assert_eq!(convs(&b), ["a", "b"]);
        assert_eq!(
            q.pop_batch_by(8, Duration::ZERO, |_| 0).unwrap().len(),
            1,
            "at least one"
        );
        assert_eq!(
            q.pop_batch_by(8, Duration::ZERO, |_| 99).unwrap().len(),
            1,
            "at most what waits"
        );
        q.push(job("e", 0));
        q.close();
        assert_eq!(q.push(job("f", 0)), Pushed::Closed);
        assert_eq!(
            convs(&q.pop_batch(8, Duration::ZERO).unwrap()),
            ["e"],
            "drained after close"
        );
        assert!(q.pop_batch(8, Duration::ZERO).is_err());
    }
}
