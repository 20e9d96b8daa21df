//! What a sender learns about its own input (tags 17-21): the notices of refused input a
//! connection opted into (`NoticeReport`, rate-limited and aggregated by the daemon so nothing
//! is lost silently) and the daemon's limits a sender paces itself to (`LimitsReport`).
//!
//! Field order is the wire layout (postcard is positional). `docs/PROTOCOL.md`, "Notices and
//! limits", is the byte-level reference.

use serde::{Deserialize, Serialize};

use super::results::detail_text;
use super::{ConversationId, Modality, RejectReason, MAX_REJECT_DETAIL};

/// Refusals of one reason on one connection since the previous notice of that reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeReport {
    pub reason: RejectReason,
    /// The conversation the first of these refusals named ("" when it named none, e.g. a frame
    /// that did not decode).
    pub conversation: ConversationId,
    /// The utterance the first refusal named, if any.
    pub utterance: Option<u32>,
    /// Refusals of this reason on this connection since the previous notice of this reason
    /// (at least 1).
    pub count: u64,
    /// Human-readable, about the first refusal, at most `MAX_REJECT_DETAIL` bytes.
    pub detail: heapless::String<MAX_REJECT_DETAIL>,
}

/// How long the daemon waits after a modality's utterance end before it counts as missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModalityDeadline {
    pub modality: Modality,
    pub deadline_ms: u32,
}

/// Answer to `LimitsRequest`: what a sender must stay within so that nothing it sends is
/// refused (the board profile's `[inputs]` and `[assembly]` and the engine's queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsReport {
    /// Frames per second one connection may send, after a burst of `burst` (`Flood`).
    pub max_frames_per_second: u32,
    pub burst: u32,
    /// Frames per second all socket clients together may send, after `total_burst` (`Flood`;
    /// serial ports are not counted).
    pub total_frames_per_second: u32,
    pub total_burst: u32,
    /// Conversations open at once (`Capacity` when all are active).
    pub max_conversations: u32,
    /// Utterances open at once per conversation (`Capacity`).
    pub max_open_utterances: u32,
    /// An open conversation without accepted input this long may be evicted for a new one.
    pub evict_idle_ms: u64,
    /// A conversation with nothing open and no accepted input this long is forgotten.
    pub idle_conversation_ms: u64,
    /// Fallback end of an utterance whose `UtteranceEnd` never arrives.
    pub max_utterance_ms: u64,
    /// Per modality of the model, in slot order: the wait after an utterance's end.
    pub deadlines: heapless::Vec<ModalityDeadline, 3>,
    /// Most utterances a published window holds.
    pub window: u32,
    /// Windows waiting for inference; beyond it the oldest is dropped. A sender keeping at most
    /// this many utterances without a result never loses a window to the queue.
    pub queue_capacity: u32,
    /// A socket client that sends no valid frame this long is closed.
    pub idle_timeout_ms: u64,
    /// Frames queued towards one client before it counts as not reading.
    pub outgoing_queue: u32,
    /// Shortest time between two flushes of notices to one connection.
    pub notice_interval_ms: u32,
}

impl NoticeReport {
    /// A notice with `detail` cut (at a character boundary) to `MAX_REJECT_DETAIL` bytes.
    pub fn new(
        reason: RejectReason,
        conversation: ConversationId,
        utterance: Option<u32>,
        count: u64,
        detail: &str,
    ) -> Self {
        NoticeReport {
            reason,
            conversation,
            utterance,
            count,
            detail: detail_text(detail),
        }
    }
}
