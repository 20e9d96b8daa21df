//! Daemon counters shared by the IO tasks and the inference thread (atomics, no locks), and
//! the rejection log throttle: the first `LOUD` rejections of each reason are logged at warn,
//! then one in `EVERY`, so a flooding sensor cannot flood the journal.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::protocol::{RejectCount, RejectReason};

const LOUD: u64 = 10;
const EVERY: u64 = 1000;

#[derive(Debug, Default)]
pub struct Stats {
    pub frames_accepted: AtomicU64,
    pub windows_run: AtomicU64,
    pub windows_superseded: AtomicU64,
    pub windows_dropped: AtomicU64,
    pub inference_errors: AtomicU64,
    pub results_published: AtomicU64,
    pub results_lagged: AtomicU64,
    pub open_conversations: AtomicU64,
    /// Utterances that closed with no modality at all and were skipped (mirrors the assembler).
    pub empty_utterances: AtomicU64,
    pub clients: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

impl Stats {
    /// Counts a rejected input and logs it (throttled). `source` names the connection.
    pub fn reject(&self, reason: RejectReason, source: &str, detail: &dyn std::fmt::Display) {
        let n = self.rejected[reason as usize].fetch_add(1, Relaxed) + 1;
        if n <= LOUD || n % EVERY == 0 {
            log::warn!("rejected from {source}: {reason:?}: {detail} ({n} so far)");
        } else {
            log::debug!("rejected from {source}: {reason:?}: {detail}");
        }
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Relaxed)
    }

    /// Non-zero rejection counters in `RejectReason` order.
    pub fn rejected_counts(&self) -> Vec<RejectCount> {
        RejectReason::ALL
            .iter()
            .map(|&reason| RejectCount { reason, count: self.rejected(reason) })
            .filter(|c| c.count > 0)
            .collect()
    }

    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// Relaxed increment, for readability at call sites.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}
