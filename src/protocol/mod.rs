//! Wire protocol of the edge daemon: the versioned messages sensors, clients and the daemon
//! exchange (serde + postcard), and their framing (`frame`: CRC-32 then COBS, 0x00 delimited).
//!
//! `docs/PROTOCOL.md` is the byte-level reference; `scripts/gsdnet_client.py` implements it
//! independently. Invariants: every frame body starts with `PROTOCOL_VERSION` as one raw byte;
//! feature vectors hold at most `MAX_VALUES` values; an encoded frame (delimiter included) is at
//! most `MAX_FRAME_LEN` bytes; a decoded conversation id holds no control character.

use serde::{Deserialize, Serialize};

pub mod frame;

pub use frame::{decode_frame, encode_frame, DecodeError, FrameDecoder};

/// Version byte that starts every frame body. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u8 = 1;
/// Capacity of a feature vector (the largest modality has 100 values).
pub const MAX_VALUES: usize = 128;
/// Capacity of a conversation id, in UTF-8 bytes.
pub const MAX_CONVERSATION_ID: usize = 32;
/// Largest encoded frame, delimiter included, in either direction.
pub const MAX_FRAME_LEN: usize = 4096;

/// Conversation id: UTF-8, at most `MAX_CONVERSATION_ID` bytes (a video id, a session name).
pub type ConversationId = heapless::String<MAX_CONVERSATION_ID>;
/// Feature values of one modality of one utterance, raw (unstandardised) features.
pub type Values = heapless::Vec<f32, MAX_VALUES>;

/// Modalities in DESIGN.md order; the wire value is the variant index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Modality {
    Text,
    Audio,
    Visual,
}

impl Modality {
    pub const ALL: [Modality; 3] = [Modality::Text, Modality::Audio, Modality::Visual];

    /// Index 0 = text, 1 = audio, 2 = visual.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Pattern-string letter (DESIGN.md): T, A or V.
    pub fn letter(self) -> char {
        ['T', 'A', 'V'][self.index()]
    }
}

/// Features of one modality of one utterance, sent by a sensor pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Features {
    pub conversation: ConversationId,
    pub utterance: u32,
    pub speaker: u16,
    pub modality: Modality,
    /// Sender's clock in microseconds; recorded and replayed, never used for deadlines.
    pub timestamp_us: u64,
    pub values: Values,
}

/// Utterance boundary (start or end) announced by the segmenter (e.g. the VAD).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boundary {
    pub conversation: ConversationId,
    pub utterance: u32,
    pub speaker: u16,
    pub timestamp_us: u64,
}

/// A sensor reports that it has nothing for this modality of this utterance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropout {
    pub conversation: ConversationId,
    pub utterance: u32,
    pub modality: Modality,
    pub timestamp_us: u64,
}

/// Result of one utterance inside a published window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtteranceResult {
    pub utterance: u32,
    /// Availability bits as observed: T = 1, A = 2, V = 4.
    pub avail: u8,
    /// Argmax of `probs` (1 = non-negative sentiment).
    pub label: u8,
    pub probs: [f32; 2],
    /// Continuous sentiment estimate.
    pub reg: f32,
}

/// What the daemon publishes after each window run: every utterance of the window, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    pub conversation: ConversationId,
    /// The utterance whose closing triggered this run (the last of `utterances`).
    pub closed_utterance: u32,
    /// Completion mode that ran ("gsdnet", "meanfill", "zero").
    pub completion: String,
    /// Inference time in microseconds.
    pub latency_us: u32,
    pub utterances: Vec<UtteranceResult>,
}

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
    /// Vector length differs from the modality's dimension.
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
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
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

/// Every message; the wire tag is the variant index (append only, never reorder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Features(Features),
    UtteranceStart(Boundary),
    UtteranceEnd(Boundary),
    Dropout(Dropout),
    Reset { conversation: ConversationId },
    Subscribe,
    StatusRequest,
    Status(StatusReport),
    Result(WindowResult),
    /// Asks for the daemon's health counters (answered with `Health`). Appended after v1's
    /// first nine tags: a peer that never sends it never receives `Health`.
    HealthRequest,
    Health(HealthReport),
    /// Subscribes to `Scored` results instead of `Result` (appended; v1 subscribers unchanged).
    SubscribeScored,
    Scored(ScoredResult),
}

/// One utterance of a `ScoredResult`: the `UtteranceResult` fields with every class
/// probability, the confidence a robot can act on, and whether it is below the abstention
/// threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredUtterance {
    pub utterance: u32,
    /// Availability bits the result was computed with: T = 1, A = 2, V = 4.
    pub avail: u8,
    pub label: u8,
    /// Class probabilities (calibrated by the model's temperature), one per class.
    pub probs: Vec<f32>,
    pub reg: f32,
    /// The label's probability, `max(probs)`.
    pub confidence: f32,
    /// `confidence < abstain_below`: the label is published but should not be acted on.
    pub uncertain: bool,
}

/// What `SubscribeScored` subscribers receive after each window run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredResult {
    pub conversation: ConversationId,
    pub closed_utterance: u32,
    pub completion: String,
    pub latency_us: u32,
    /// The board profile's abstention threshold (0 = none: nothing is uncertain).
    pub abstain_below: f32,
    pub utterances: Vec<ScoredUtterance>,
}

impl ScoredResult {
    /// The scored form of a window result under threshold `abstain_below` (0 = none).
    pub fn from_result(r: &WindowResult, abstain_below: f32) -> Self {
        let utterances = r
            .utterances
            .iter()
            .map(|u| {
                let confidence = u.probs.iter().copied().fold(0.0f32, f32::max);
                ScoredUtterance {
                    utterance: u.utterance,
                    avail: u.avail,
                    label: u.label,
                    probs: u.probs.to_vec(),
                    reg: u.reg,
                    confidence,
                    uncertain: confidence < abstain_below,
                }
            })
            .collect();
        ScoredResult {
            conversation: r.conversation.clone(),
            closed_utterance: r.closed_utterance,
            completion: r.completion.clone(),
            latency_us: r.latency_us,
            abstain_below,
            utterances,
        }
    }
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

/// Whether a client-provided string is safe to keep: no control characters (newlines would
/// forge log lines; `<N>` after one would forge a journal priority).
pub fn is_clean_text(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

impl Message {
    /// The conversation id the message names, if any.
    pub fn conversation(&self) -> Option<&ConversationId> {
        match self {
            Message::Features(f) => Some(&f.conversation),
            Message::UtteranceStart(b) | Message::UtteranceEnd(b) => Some(&b.conversation),
            Message::Dropout(d) => Some(&d.conversation),
            Message::Reset { conversation } => Some(conversation),
            Message::Result(r) => Some(&r.conversation),
            Message::Scored(r) => Some(&r.conversation),
            _ => None,
        }
    }
}

/// Builds a conversation id, failing when it exceeds `MAX_CONVERSATION_ID` bytes or holds a
/// control character.
pub fn conversation_id(s: &str) -> Option<ConversationId> {
    if !is_clean_text(s) {
        return None;
    }
    ConversationId::try_from(s).ok()
}

/// Builds a feature vector, failing when it exceeds `MAX_VALUES` values.
pub fn values(v: &[f32]) -> Option<Values> {
    Values::from_slice(v).ok()
}
