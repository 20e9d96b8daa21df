//! Daemon counters shared by the IO tasks and the inference thread (atomics, no locks), the
//! log throttle (the first `LOUD` events of a kind are logged at warn, then one in `EVERY`, so a
//! flooding sensor cannot flood the journal) and `Escaped`, the only way a client-provided
//! string reaches a log line.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::protocol::{HealthReport, RejectCount, RejectReason};

const LOUD: u64 = 10;
const EVERY: u64 = 1000;

#[derive(Debug, Default)]
pub struct Stats {
    pub frames_accepted: AtomicU64,
    pub windows_run: AtomicU64,
    /// Runner calls of the inference thread (a batch of one counts too).
    pub batches_run: AtomicU64,
    /// Windows that ran in a batch of two or more.
    pub windows_batched: AtomicU64,
    /// Batches the latency budget made smaller than what was waiting (up to `max_batch`).
    pub batches_shortened: AtomicU64,
    pub windows_superseded: AtomicU64,
    pub windows_dropped: AtomicU64,
    pub inference_errors: AtomicU64,
    pub results_published: AtomicU64,
    pub results_lagged: AtomicU64,
    pub open_conversations: AtomicU64,
    /// Utterances that closed with no modality at all and were skipped (mirrors the assembler).
    pub empty_utterances: AtomicU64,
    pub clients: AtomicU64,
    /// Mirrors of the assembler's protective actions (`assembly::Counters`).
    pub conversation_restarts: AtomicU64,
    pub late_replayed: AtomicU64,
    pub conversations_evicted: AtomicU64,
    pub utterances_flushed: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_evicted: AtomicU64,
    pub connections_idle_closed: AtomicU64,
    pub slow_clients_disconnected: AtomicU64,
    pub results_lost: AtomicU64,
    pub consecutive_inference_errors: AtomicU64,
    pub watchdog_stopped: AtomicBool,
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

impl Stats {
    /// Counts a rejected input and logs it (throttled, escaped). `source` names the connection.
    pub fn reject(&self, reason: RejectReason, source: &str, detail: &dyn fmt::Display) {
        let n = self.rejected[reason as usize].fetch_add(1, Relaxed) + 1;
        // Formatting only for a line that is written: a flood is rejected at full speed.
        let level = if is_loud(n) {
            log::Level::Warn
        } else {
            log::Level::Debug
        };
        if log::log_enabled!(level) {
            let (source, detail) = (Escaped(source), detail.to_string());
            let detail = Escaped(&detail);
            if level == log::Level::Warn {
                log::warn!("rejected from {source}: {reason:?}: {detail} ({n} so far)");
            } else {
                log::debug!("rejected from {source}: {reason:?}: {detail}");
            }
        }
    }

    /// Counts a rejected input, logging it at debug only (the caller said what matters once).
    pub fn reject_quietly(&self, reason: RejectReason, source: &str, detail: &dyn fmt::Display) {
        self.rejected[reason as usize].fetch_add(1, Relaxed);
        if log::log_enabled!(log::Level::Debug) {
            let detail = detail.to_string();
            log::debug!("rejected from {}: {reason:?}: {}", Escaped(source), Escaped(&detail));
        }
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Relaxed)
    }

    /// Non-zero rejection counters in `RejectReason` order.
    pub fn rejected_counts(&self) -> Vec<RejectCount> {
        RejectReason::ALL
            .iter()
            .map(|&reason| RejectCount {
                reason,
                count: self.rejected(reason),
            })
            .filter(|c| c.count > 0)
            .collect()
    }

    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The `Health` answer.
    pub fn health(&self) -> HealthReport {
        let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        HealthReport {
            conversation_restarts: self.conversation_restarts.load(Relaxed),
            late_replayed: self.late_replayed.load(Relaxed),
            conversations_evicted: self.conversations_evicted.load(Relaxed),
            utterances_flushed: self.utterances_flushed.load(Relaxed),
            connections_open: to_u32(self.clients.load(Relaxed)),
            connections_refused: self.connections_refused.load(Relaxed),
            connections_evicted: self.connections_evicted.load(Relaxed),
            connections_idle_closed: self.connections_idle_closed.load(Relaxed),
            slow_clients_disconnected: self.slow_clients_disconnected.load(Relaxed),
            results_lost: self.results_lost.load(Relaxed),
            consecutive_inference_errors: to_u32(self.consecutive_inference_errors.load(Relaxed)),
            watchdog_stopped: self.watchdog_stopped.load(Relaxed),
        }
    }
}

/// Whether the `n`-th event of a kind (1-based) is logged at warn: the first `LOUD`, then one in
/// `EVERY`.
pub fn is_loud(n: u64) -> bool {
    n <= LOUD || n.is_multiple_of(EVERY)
}

/// Relaxed increment, for readability at call sites.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Displays a client-provided string with every control character escaped (`\n`, `\u{1b}`),
/// so one log call always makes exactly one log line.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            if c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_keeps_one_line() {
        let s = Escaped("a\n<0>b\r\u{1b}[31m é").to_string();
        assert_eq!(s, "a\\n<0>b\\r\\u{1b}[31m é");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn throttle_is_loud_first_then_sparse() {
        let loud: Vec<u64> = (1..=3000).filter(|&n| is_loud(n)).collect();
        assert_eq!(loud, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000, 2000, 3000]);
    }
}
