//! Notices of refused input, per connection (`SubscribeNotices`), and the `Limits` answer.
//!
//! Every connection owns a `NoticeBox`: one aggregate per reject reason, filled by whoever
//! refuses the connection's input (the connection itself for decode errors and `Flood`, the
//! assembly task for `Late`, `Capacity` and the like) and drained by the connection task, which
//! sends one `Notice` per reason with refusals at most every `NOTICE_INTERVAL` (and before the
//! answer to a request). Invariants: the box holds at most one aggregate per reason whatever a
//! sender does (refusals only add to a count), so notices never make the daemon buffer more than
//! a fixed array per connection; a refusal is counted in exactly one notice or stays in the box;
//! a connection that never subscribed is never sent one.
//!
//! The box also counts the connection's input the assembly task has applied, so that a request
//! from a subscribed connection is answered only after the notices of its earlier input.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::assembly::AssemblySettings;
use super::limits::ConnectionLimits;
use crate::modality::{Modalities, Modality};
use crate::protocol::{ConversationId, LimitsReport, ModalityDeadline, NoticeReport, RejectReason};

/// Shortest time between two flushes of notices to one connection.
pub const NOTICE_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a request of a subscribed connection waits for its earlier input to be applied.
pub const APPLY_WAIT: Duration = Duration::from_secs(2);

const REASONS: usize = RejectReason::ALL.len();

/// Refusals of one reason not yet noticed: the first one's particulars and how many.
#[derive(Debug, Clone)]
struct Aggregate {
    conversation: ConversationId,
    utterance: Option<u32>,
    count: u64,
    detail: String,
}

/// One connection's refusals not yet noticed, and its input applied so far.
#[derive(Debug, Default)]
pub struct NoticeBox {
    pending: Mutex<[Option<Aggregate>; REASONS]>,
    /// Signalled on every new refusal.
    pub wake: Notify,
    applied: AtomicU64,
    progress: Notify,
}

impl NoticeBox {
    fn lock(&self) -> std::sync::MutexGuard<'_, [Option<Aggregate>; REASONS]> {
        // The aggregates stay consistent whatever panicked while holding the lock.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one refusal; the detail is formatted only for the first of an aggregate.
    pub fn record(
        &self,
        reason: RejectReason,
        conversation: Option<&ConversationId>,
        utterance: Option<u32>,
        detail: &dyn fmt::Display,
    ) {
        {
            let mut pending = self.lock();
            match &mut pending[reason as usize] {
                Some(a) => a.count = a.count.saturating_add(1),
                slot => {
                    let conversation = conversation.cloned().unwrap_or_default();
                    *slot = Some(Aggregate {
                        conversation,
                        utterance,
                        count: 1,
                        detail: detail.to_string(),
                    });
                }
            }
        }
        self.wake.notify_one();
    }

    /// Whether any refusal waits to be noticed.
    pub fn is_pending(&self) -> bool {
        self.lock().iter().any(Option::is_some)
    }

    /// Takes every aggregate, as notices in reason order.
    pub fn take(&self) -> Vec<NoticeReport> {
        let mut pending = self.lock();
        pending
            .iter_mut()
            .zip(RejectReason::ALL)
            .filter_map(|(slot, reason)| {
                slot.take()
                    .map(|a| NoticeReport::new(reason, a.conversation, a.utterance, a.count, &a.detail))
            })
            .collect()
    }

    /// Returns a notice that could not be queued: its refusals are counted again, before any
    /// that arrived since (whose count is added to it).
    pub fn put_back(&self, n: NoticeReport) {
        let mut pending = self.lock();
        let slot = &mut pending[n.reason as usize];
        let since = slot.as_ref().map_or(0, |a| a.count);
        *slot = Some(Aggregate {
            conversation: n.conversation,
            utterance: n.utterance,
            count: n.count.saturating_add(since),
            detail: n.detail.to_string(),
        });
    }

    /// The assembly task applied (or refused) one more input of this connection.
    pub fn applied_one(&self) {
        self.applied.fetch_add(1, Relaxed);
        self.progress.notify_waiters();
    }

    /// Waits until `target` inputs of this connection were applied, at most `timeout`; false
    /// when the time ran out.
    pub async fn wait_applied(&self, target: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let progressed = self.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if self.applied.load(Relaxed) >= target {
                return true;
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return self.applied.load(Relaxed) >= target;
            }
        }
    }
}

/// What the daemon's `Limits` answer says, from its settings.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings<'a> {
    pub assembly: &'a AssemblySettings,
    pub modalities: &'a Modalities,
    pub connections: &'a ConnectionLimits,
    pub max_frames_per_second: u32,
    pub burst: u32,
    pub queue_capacity: usize,
}

/// The `Limits` answer.
pub fn limits_report(s: LimitSettings<'_>) -> LimitsReport {
    let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let a = s.assembly;
    let mut deadlines = heapless::Vec::new();
    for m in Modality::ALL.into_iter().filter(|&m| s.modalities.has(m)) {
        let deadline_ms = u32::try_from(a.deadline_ms[m.index()]).unwrap_or(u32::MAX);
        // Three modalities at most: the vector cannot be full.
        let _ = deadlines.push(ModalityDeadline {
            modality: m,
            deadline_ms,
        });
    }
    LimitsReport {
        max_frames_per_second: s.max_frames_per_second,
        burst: s.burst,
        total_frames_per_second: s.connections.total_frames_per_second,
        total_burst: s.connections.total_burst,
        max_conversations: to_u32(a.max_conversations),
        max_open_utterances: to_u32(a.max_open_utterances),
        evict_idle_ms: a.evict_idle_ms,
        idle_conversation_ms: a.idle_conversation_ms,
        max_utterance_ms: a.max_utterance_ms,
        deadlines,
        window: to_u32(a.window),
        queue_capacity: to_u32(s.queue_capacity),
        idle_timeout_ms: ms(s.connections.idle_timeout),
        outgoing_queue: to_u32(s.connections.outgoing_queue),
        notice_interval_ms: u32::try_from(NOTICE_INTERVAL.as_millis()).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::conversation_id;

    #[test]
    fn refusals_aggregate_per_reason_and_keep_the_first() {
        let b = NoticeBox::default();
        let c1 = conversation_id("c1").unwrap();
        let c2 = conversation_id("c2").unwrap();
        b.record(RejectReason::Flood, None, None, &"frame rate exceeded");
        b.record(RejectReason::Late, Some(&c1), Some(3), &"first");
        for i in 0..1000 {
            b.record(RejectReason::Late, Some(&c2), Some(i), &"later");
        }
        let notices = b.take();
        assert_eq!(notices.len(), 2);
        assert_eq!((notices[0].reason, notices[0].count), (RejectReason::Late, 1001));
        assert_eq!(
            (
                notices[0].conversation.as_str(),
                notices[0].utterance,
                notices[0].detail.as_str()
            ),
            ("c1", Some(3), "first")
        );
        assert_eq!(
            (notices[1].reason, notices[1].count, notices[1].conversation.as_str()),
            (RejectReason::Flood, 1, "")
        );
        assert!(!b.is_pending());
        assert!(b.take().is_empty());
    }

    #[test]
    fn a_notice_put_back_loses_no_count() {
        let b = NoticeBox::default();
        b.record(RejectReason::Capacity, None, Some(1), &"one");
        let n = b.take().remove(0);
        b.record(RejectReason::Capacity, None, Some(2), &"two");
        b.put_back(n);
        let again = b.take();
        assert_eq!(
            (again[0].count, again[0].utterance, again[0].detail.as_str()),
            (2, Some(1), "one")
        );
    }

    #[tokio::test]
    async fn wait_applied_returns_once_input_is_applied_or_times_out() {
        let b = std::sync::Arc::new(NoticeBox::default());
        assert!(!b.wait_applied(1, Duration::from_millis(20)).await);
        let b2 = std::sync::Arc::clone(&b);
        let t = tokio::spawn(async move { b2.wait_applied(2, Duration::from_secs(5)).await });
        b.applied_one();
        b.applied_one();
        assert!(t.await.unwrap());
    }
}
