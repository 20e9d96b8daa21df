//! What every stream task and the serve loop share: the state connections read and count into
//! (`Shared`), a message on its way to the assembly task (`Input`) and the two shutdown phases
//! (`Phases`, `stopped`). Holds no logic beyond the status answer; `connection`, `serial` and
//! `server` all build on it, and it on none of them.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::inference::{JobQueue, Published};
use super::limits::{ConnectionLimits, Registry, TokenBucket};
use super::notices::NoticeBox;
use super::stats::Stats;
use crate::protocol::{LimitsReport, Message, ModelInfoReport, StatusReport};

/// A message on its way to the assembly task, with the connection it came from.
#[derive(Debug)]
pub struct Input {
    pub msg: Message,
    pub source: Arc<str>,
    /// Where a refusal of it is counted for the sender's notices; told when it is applied.
    pub notices: Arc<NoticeBox>,
}

/// Shutdown phases as seen by a connection: stop reading, then stop writing.
#[derive(Debug, Clone)]
pub struct Phases {
    pub input: watch::Receiver<bool>,
    pub output: watch::Receiver<bool>,
}

/// State shared by every connection task. Holds no input sender: the assembly task ends once
/// the last connection has stopped reading.
pub struct Shared {
    pub stats: Arc<Stats>,
    pub results: broadcast::Sender<Arc<Published>>,
    pub queue: Arc<JobQueue>,
    pub started: Instant,
    pub engine: String,
    pub max_frames_per_second: u32,
    pub burst: u32,
    pub limits: ConnectionLimits,
    /// Frame budget of all socket clients together.
    pub total_bucket: Mutex<TokenBucket>,
    pub registry: Arc<Registry>,
    pub abstain_below: f32,
    /// The `ModelInfo` answer.
    pub model_info: ModelInfoReport,
    /// The `Limits` answer.
    pub limits_report: LimitsReport,
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

/// Resolves once shutdown is signalled (or its sender is gone); holds no watch guard.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
