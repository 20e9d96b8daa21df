//! What the daemon sends back: window results (`WindowResult`, and the calibrated
//! `ScoredResult`), the served model's description (`ModelInfoReport`) and the notice a peer
//! speaking another protocol version gets (`RejectNotice`).
//!
//! A result names its class by index and by name and carries the model's K probabilities
//! (bounded by `MAX_CLASSES`); the continuous estimate is an `Option`, absent for models without
//! a regression head. `max_result_frame_len` bounds the encoded size of a result, which the
//! daemon checks against `MAX_FRAME_LEN` before it serves a model.

use serde::{Deserialize, Serialize};

use super::bounded::BoundedVec;
use super::frame::{cobs_max_len, varint_len};
use super::{ConversationId, Modality, RejectReason, MAX_CONVERSATION_ID};
use crate::capacity::{MAX_CLASSES, MAX_CLASS_NAME};

/// Class probabilities of one utterance, one per class of the model (K <= `MAX_CLASSES`).
pub type Probs = BoundedVec<f32, MAX_CLASSES>;
/// A class name, at most `MAX_CLASS_NAME` UTF-8 bytes.
pub type ClassName = heapless::String<MAX_CLASS_NAME>;
/// Longest `RejectNotice::detail`, in UTF-8 bytes.
pub const MAX_REJECT_DETAIL: usize = 128;

/// Result of one utterance inside a published window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtteranceResult {
    pub utterance: u32,
    /// Availability bits as observed: T = 1, A = 2, V = 4.
    pub avail: u8,
    /// Argmax of `probs`: an index into the model's classes.
    pub label: u16,
    /// The name of class `label` (the manifest's `classes[label]`).
    pub label_name: ClassName,
    /// K calibrated probabilities, in the model's class order.
    pub probs: Probs,
    /// Continuous estimate (CMU-MOSI: sentiment); `None` for models without a regression head.
    pub reg: Option<f32>,
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

/// One utterance of a `ScoredResult`: the `UtteranceResult` fields, the confidence a robot can
/// act on, and whether it is below the abstention threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredUtterance {
    pub utterance: u32,
    /// Availability bits the result was computed with: T = 1, A = 2, V = 4.
    pub avail: u8,
    pub label: u16,
    pub label_name: ClassName,
    /// Class probabilities (calibrated by the model's temperature), one per class.
    pub probs: Probs,
    pub reg: Option<f32>,
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
                    label_name: u.label_name.clone(),
                    probs: u.probs.clone(),
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

/// One modality of the served model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModalityInfo {
    pub modality: Modality,
    /// Values a `Features` message for it must carry.
    pub size: u32,
}

/// Answer to `ModelInfoRequest`: what the daemon's model takes and what its results mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfoReport {
    /// Manifest `[model] name` and `version`.
    pub name: String,
    pub version: String,
    /// The model's modalities in slot order (canonical T, A, V restricted to the model's);
    /// `Features` or `Dropout` for any other is rejected (`NoSuchModality`).
    pub modalities: heapless::Vec<ModalityInfo, 3>,
    /// Class names; a result's `label` indexes them and `probs` follows their order.
    pub classes: BoundedVec<ClassName, MAX_CLASSES>,
    /// Whether results carry a continuous estimate (`reg` is `Some`).
    pub has_regression: bool,
    /// Most utterances a published window holds (the board profile's `assembly.window`).
    pub window: u32,
}

/// Sent (once per connection) to a peer whose frames the daemon cannot read at all: today, a
/// peer speaking another protocol version (`UnknownVersion`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectNotice {
    pub reason: RejectReason,
    /// Human-readable, at most `MAX_REJECT_DETAIL` bytes.
    pub detail: heapless::String<MAX_REJECT_DETAIL>,
}

impl RejectNotice {
    /// A notice with `detail` cut (at a character boundary) to `MAX_REJECT_DETAIL` bytes.
    pub fn new(reason: RejectReason, detail: &str) -> Self {
        RejectNotice {
            reason,
            detail: detail_text(detail),
        }
    }
}

/// `detail` cut (at a character boundary) to `MAX_REJECT_DETAIL` bytes.
pub fn detail_text(detail: &str) -> heapless::String<MAX_REJECT_DETAIL> {
    let mut cut = detail.len().min(MAX_REJECT_DETAIL);
    while !detail.is_char_boundary(cut) {
        cut -= 1;
    }
    heapless::String::try_from(&detail[..cut]).unwrap_or_default()
}

/// Upper bound of the encoded `Result` or `Scored` frame (delimiter included) for windows of
/// `window` utterances of a model with `classes`, published with completion name `completion`.
/// Every varint is counted at its widest.
pub fn max_result_frame_len<S: AsRef<str>>(window: usize, classes: &[S], completion: &str) -> usize {
    let k = classes.len();
    let name = classes.iter().map(|c| c.as_ref().len()).max().unwrap_or(0);
    // ScoredUtterance, the larger form: utterance, avail, label, name, probs, reg, confidence,
    // uncertain.
    let per_utterance = 5 + 1 + 3 + varint_len(name) + name + varint_len(k) + 4 * k + 5 + 4 + 1;
    // version, tag, conversation, closed_utterance, completion, latency_us, abstain_below, count.
    let conversation = varint_len(MAX_CONVERSATION_ID) + MAX_CONVERSATION_ID;
    let header = 2 + conversation + 5 + varint_len(completion.len()) + completion.len() + 5 + 4 + varint_len(window);
    cobs_max_len(header + window * per_utterance + 4) + 1
}
