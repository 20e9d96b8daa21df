//! Wire protocol of the edge daemon (version 2): the versioned messages sensors, clients and
//! the daemon exchange (serde + postcard), and their framing (`frame`: CRC-32 then COBS, 0x00
//! delimited). Input messages live here, results and the model description in `results`,
//! status and health reports in `reports`, the bounded heap vector they use in `bounded`, the
//! transcript message (an utterance's UTF-8 text for a model with a text frontend) in
//! `transcript`.
//!
//! `docs/PROTOCOL.md` is the byte-level reference; `python/gsdnet_client` implements it
//! independently. Invariants: every frame body starts with `PROTOCOL_VERSION` as one raw byte;
//! feature vectors hold at most `capacity::MAX_FEATURE_SIZE` values and results at most
//! `capacity::MAX_CLASSES` probabilities, transcripts at most `MAX_TRANSCRIPT` bytes of valid UTF-8;
//! every input message encodes to at most `MAX_FRAME_LEN` bytes
//! (delimiter included); a decoded conversation id holds no control character. The sizes a
//! model expects are not the protocol's: the daemon checks them against the served model.

use serde::{Deserialize, Serialize};

pub mod bounded;
pub mod frame;
pub mod notices;
pub mod reports;
pub mod results;
pub mod transcript;

pub use bounded::{BoundedVec, CapacityError};
pub use frame::{decode_frame, encode_frame, DecodeError, FrameDecoder, MAX_FEATURES_FRAME_LEN};
pub use notices::{LimitsReport, ModalityDeadline, NoticeReport};
pub use reports::{HealthReport, RejectCount, RejectReason, StatusReport};
pub use results::{
    max_result_frame_len, ClassName, ModalityInfo, ModelInfoReport, Probs, RejectNotice, ScoredResult, ScoredUtterance,
    UtteranceResult, WindowResult, MAX_REJECT_DETAIL,
};
pub use transcript::{transcript_text, Transcript, TranscriptText, MAX_TRANSCRIPT};

use crate::capacity::MAX_FEATURE_SIZE;
pub use crate::modality::Modality;

/// Version byte that starts every frame body. Bumped on any incompatible change: 2 made
/// feature sizes and classes the model's (results carry K probabilities and a class name, the
/// regression is optional).
pub const PROTOCOL_VERSION: u8 = 2;
/// Capacity of a conversation id, in UTF-8 bytes.
pub const MAX_CONVERSATION_ID: usize = 32;
/// Largest encoded frame, delimiter included, in either direction: the largest `Features`
/// (2048 values, `MAX_FEATURES_FRAME_LEN` = 8286 bytes) with room for results (PROTOCOL.md).
pub const MAX_FRAME_LEN: usize = 16 * 1024;

const _: () = assert!(MAX_FEATURES_FRAME_LEN <= MAX_FRAME_LEN);

/// Conversation id: UTF-8, at most `MAX_CONVERSATION_ID` bytes (a video id, a session name).
pub type ConversationId = heapless::String<MAX_CONVERSATION_ID>;
/// Feature values of one modality of one utterance, raw (unstandardised) features.
pub type Values = BoundedVec<f32, MAX_FEATURE_SIZE>;

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

/// Every message; the wire tag is the variant index (append only, never reorder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Features(Features),
    UtteranceStart(Boundary),
    UtteranceEnd(Boundary),
    Dropout(Dropout),
    Reset {
        conversation: ConversationId,
    },
    Subscribe,
    StatusRequest,
    Status(StatusReport),
    Result(WindowResult),
    /// Asks for the daemon's health counters (answered with `Health`).
    HealthRequest,
    Health(HealthReport),
    /// Subscribes to `Scored` results instead of `Result`.
    SubscribeScored,
    Scored(ScoredResult),
    /// Asks what the served model takes and returns (answered with `ModelInfo`). Tag 13 (v2).
    ModelInfoRequest,
    ModelInfo(ModelInfoReport),
    /// The daemon cannot read this peer's frames (another protocol version). Tag 15 (v2).
    Reject(RejectNotice),
    /// The transcript of an utterance instead of its text vector, for a model whose text
    /// modality is a frontend (`transcript`). Tag 16.
    Transcript(Transcript),
    /// The sender is done with this conversation: its open utterances end now (each still gets
    /// its modalities' deadlines) and the conversation is forgotten as soon as none is open,
    /// freeing its place at once. Tag 17.
    ConversationEnd {
        conversation: ConversationId,
    },
    /// Asks for a `Notice` of this connection's refused input (rate-limited, aggregated). Tag 18.
    SubscribeNotices,
    /// Refusals of one reason on this connection (to `SubscribeNotices` connections). Tag 19.
    Notice(Box<NoticeReport>),
    /// Asks for the limits a sender must stay within (answered with `Limits`). Tag 20.
    LimitsRequest,
    Limits(LimitsReport),
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
            Message::Transcript(t) => Some(&t.conversation),
            Message::Reset { conversation } | Message::ConversationEnd { conversation } => Some(conversation),
            Message::Result(r) => Some(&r.conversation),
            Message::Scored(r) => Some(&r.conversation),
            _ => None,
        }
    }

    /// Short name of the message kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Features(_) => "Features",
            Message::UtteranceStart(_) => "UtteranceStart",
            Message::UtteranceEnd(_) => "UtteranceEnd",
            Message::Dropout(_) => "Dropout",
            Message::Reset { .. } => "Reset",
            Message::Subscribe => "Subscribe",
            Message::StatusRequest => "StatusRequest",
            Message::Status(_) => "Status",
            Message::Result(_) => "Result",
            Message::HealthRequest => "HealthRequest",
            Message::Health(_) => "Health",
            Message::SubscribeScored => "SubscribeScored",
            Message::Scored(_) => "Scored",
            Message::ModelInfoRequest => "ModelInfoRequest",
            Message::ModelInfo(_) => "ModelInfo",
            Message::Reject(_) => "Reject",
            Message::Transcript(_) => "Transcript",
            Message::ConversationEnd { .. } => "ConversationEnd",
            Message::SubscribeNotices => "SubscribeNotices",
            Message::Notice(_) => "Notice",
            Message::LimitsRequest => "LimitsRequest",
            Message::Limits(_) => "Limits",
        }
    }

    /// The utterance id the message names, if any.
    pub fn utterance(&self) -> Option<u32> {
        match self {
            Message::Features(f) => Some(f.utterance),
            Message::UtteranceStart(b) | Message::UtteranceEnd(b) => Some(b.utterance),
            Message::Dropout(d) => Some(d.utterance),
            Message::Transcript(t) => Some(t.utterance),
            _ => None,
        }
    }

    /// Messages only the daemon sends; as input they are `Unexpected`.
    pub fn is_daemon_only(&self) -> bool {
        matches!(
            self,
            Message::Status(_)
                | Message::Result(_)
                | Message::Health(_)
                | Message::Scored(_)
                | Message::ModelInfo(_)
                | Message::Reject(_)
                | Message::Notice(_)
                | Message::Limits(_)
        )
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

/// Builds a feature vector, failing when it exceeds `MAX_FEATURE_SIZE` values.
pub fn values(v: &[f32]) -> Option<Values> {
    Values::from_slice(v).ok()
}

/// Builds a class name, failing when it exceeds `MAX_CLASS_NAME` bytes.
pub fn class_name(s: &str) -> Option<ClassName> {
    ClassName::try_from(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_stays_small_in_every_queue() {
        // Feature vectors (up to 8 KiB) and result vectors live on the heap, sized to their
        // data: the input channels (1024 + 256 messages) and restart evidence hold small values.
        let size = std::mem::size_of::<Message>();
        assert!(size <= 160, "Message is {size} bytes");
    }
}
