//! Reports the daemon answers with: rejection reasons and their counters (`StatusReport`), and
//! the health counters (`HealthReport`). Field order is the wire layout (postcard is
//! positional); reasons are append-only.

use serde::{Deserialize, Serialize};

/// Why an input was rejected; the wire value is the variant index (append only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RejectReason {
    /// COBS decoding failed.
    Framing,
    /// CRC-32 mismatch or frame too short to hold one.
    Crc,
    /// Frame longer than `MAX_FRAME_LEN`.
    Oversized,
    /// First body byte is not `PROTOCOL_VERSION`.
    UnknownVersion,
    /// Body does not decode as a message (bad tag, truncated, trailing bytes, too many values).
    Malformed,
    /// Vector length differs from the model's size for the modality.
    WrongLength,
    /// A value is NaN or infinite.
    NonFinite,
    /// A message only the daemon sends (status, result) arrived as input.
    Unexpected,
    /// The utterance was already closed (or is older than the last closed one).
    Late,
    /// This modality of this utterance already arrived.
    Duplicate,
    /// The connection ended in the middle of a frame.
    Truncated,
    /// The connection exceeded its frame rate.
    Flood,
    /// Too many open conversations or open utterances.
    Capacity,
    /// A `Features` or `Dropout` names a modality the served model does not have (v2).
    NoSuchModality,
    /// A `Transcript` for a model whose text modality is not computed by a frontend, or one
    /// the frontend could not encode. Wire value 14.
    TranscriptRefused,
}

impl RejectReason {
    pub const ALL: [RejectReason; 15] = [
        RejectReason::Framing,
        RejectReason::Crc,
        RejectReason::Oversized,
        RejectReason::UnknownVersion,
        RejectReason::Malformed,
        RejectReason::WrongLength,
        RejectReason::NonFinite,
        RejectReason::Unexpected,
        RejectReason::Late,
        RejectReason::Duplicate,
        RejectReason::Truncated,
        RejectReason::Flood,
        RejectReason::Capacity,
        RejectReason::NoSuchModality,
        RejectReason::TranscriptRefused,
    ];
}

/// One counter of the status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectCount {
    pub reason: RejectReason,
    pub count: u64,
}

/// Answer to `StatusRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub uptime_ms: u64,
    /// Free text: board, backend provider, completion mode.
    pub engine: String,
    pub frames_accepted: u64,
    pub windows_run: u64,
    /// Window jobs replaced in the queue by a newer window of the same conversation.
    pub windows_superseded: u64,
    /// Window jobs dropped because the queue was full (oldest first).
    pub windows_dropped: u64,
    pub inference_errors: u64,
    pub results_published: u64,
    pub queue_len: u32,
    pub queue_capacity: u32,
    pub open_conversations: u32,
    pub clients: u32,
    pub rejected: Vec<RejectCount>,
    /// Utterances that closed with no modality at all (every sensor silent or reporting a
    /// dropout): skipped, no window run. Last field so that the fields before it keep their
    /// offsets.
    pub empty_utterances: u64,
}

/// Answer to `HealthRequest`: what the daemon did to protect itself (restarts recognised,
/// evictions, connection limits, slow clients) and the state of the engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Conversations whose sender restarted its utterance ids without `Reset` (recognised).
    pub conversation_restarts: u64,
    /// Messages first refused as `Late`, then applied to the restarted conversation.
    pub late_replayed: u64,
    /// Conversations evicted to admit a new one (`max_conversations` reached).
    pub conversations_evicted: u64,
    /// Open utterances released early (eviction, restart, `Reset`, shutdown) with what arrived.
    pub utterances_flushed: u64,
    pub connections_open: u32,
    /// Connections closed at once: global or per-peer limit reached, none evictable.
    pub connections_refused: u64,
    /// Connections that had not sent a valid frame, closed to make room for a new one.
    pub connections_evicted: u64,
    /// Connections closed because no valid frame arrived within the idle timeout.
    pub connections_idle_closed: u64,
    /// Clients disconnected because they did not read what the daemon sent them.
    pub slow_clients_disconnected: u64,
    /// Results a slow client lost (its own; other clients are not affected).
    pub results_lost: u64,
    /// Inference failures in a row (0 after any success).
    pub consecutive_inference_errors: u32,
    /// True while the watchdog is no longer fed because the engine keeps failing.
    pub watchdog_stopped: bool,
}
