//! Pure conversions between the ROS 2 messages (`msgs`) and the daemon's own: a `SensorInput`
//! to the protocol `Message` the socket path would have decoded (or the refusal the socket
//! path gives a frame that does not decode: `Malformed`), a published window to an
//! `EmotionWindow`, a notice to a `Notice`, and the status and health reports to a
//! `DiagnosticArray`. No IO, no clock: the caller passes the stamp.
//!
//! What the assembler checks (sizes against the model, NaN, late, duplicate, capacity) is not
//! checked here, so ROS 2 input gets exactly the socket path's treatment and counters.

use super::msgs::{
    kind, level, DiagnosticArray, DiagnosticStatus, Emotion, EmotionWindow, Header, KeyValue, Notice, SensorInput, Time,
};
use crate::daemon::inference::Published;
use crate::modality::Modality;
use crate::protocol::{
    conversation_id, transcript_text, values, Boundary, ConversationId, Dropout, Features, HealthReport, Message,
    NoticeReport, RejectReason, ScoredResult, StatusReport, Transcript, MAX_CONVERSATION_ID, MAX_TRANSCRIPT,
};

/// Why a `SensorInput` was refused before the assembler saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: RejectReason,
    /// The conversation it named, when that id is itself valid.
    pub conversation: Option<ConversationId>,
    pub utterance: Option<u32>,
    pub detail: String,
}

/// The sensor's stamp in microseconds since the epoch (0 for a stamp before it).
fn timestamp_us(t: &Time) -> u64 {
    u64::try_from(t.sec).map_or(0, |s| s * 1_000_000 + u64::from(t.nanosec / 1000))
}

fn malformed(conversation: Option<ConversationId>, utterance: Option<u32>, detail: String) -> Refusal {
    Refusal {
        reason: RejectReason::Malformed,
        conversation,
        utterance,
        detail,
    }
}

/// The protocol message a `SensorInput` stands for.
pub fn to_message(m: &SensorInput) -> Result<Message, Refusal> {
    let Some(conversation) = conversation_id(&m.conversation) else {
        let detail = format!(
            "conversation id of {} bytes: at most {MAX_CONVERSATION_ID} UTF-8 bytes without control characters",
            m.conversation.len()
        );
        return Err(malformed(None, None, detail));
    };
    let (utterance, speaker, timestamp_us) = (m.utterance, m.speaker, timestamp_us(&m.header.stamp));
    let refuse = |detail: String| malformed(Some(conversation.clone()), Some(utterance), detail);
    let modality = || {
        Modality::ALL.get(usize::from(m.modality)).copied().ok_or_else(|| {
            refuse(format!(
                "modality {} is not one of 0 (text), 1 (audio), 2 (visual)",
                m.modality
            ))
        })
    };
    let boundary = || Boundary {
        conversation: conversation.clone(),
        utterance,
        speaker,
        timestamp_us,
    };
    Ok(match m.kind {
        kind::FEATURES => Message::Features(Features {
            conversation: conversation.clone(),
            utterance,
            speaker,
            modality: modality()?,
            timestamp_us,
            values: values(&m.values).ok_or_else(|| refuse(format!("{} feature values: too many", m.values.len())))?,
        }),
        kind::UTTERANCE_START => Message::UtteranceStart(boundary()),
        kind::UTTERANCE_END => Message::UtteranceEnd(boundary()),
        kind::DROPOUT => Message::Dropout(Dropout {
            conversation: conversation.clone(),
            utterance,
            modality: modality()?,
            timestamp_us,
        }),
        kind::TRANSCRIPT => Message::Transcript(Transcript {
            conversation: conversation.clone(),
            utterance,
            speaker,
            timestamp_us,
            text: transcript_text(&m.text).ok_or_else(|| {
                refuse(format!(
                    "transcript of {} bytes: at most {MAX_TRANSCRIPT}",
                    m.text.len()
                ))
            })?,
        }),
        kind::CONVERSATION_END => Message::ConversationEnd { conversation },
        kind::RESET => Message::Reset { conversation },
        other => return Err(refuse(format!("kind {other} is not one of 0..=6"))),
    })
}

/// Modality bits (text 1, audio 2, visual 4) of the model's modalities.
pub fn model_bits(mods: impl IntoIterator<Item = Modality>) -> u8 {
    mods.into_iter().fold(0, |b, m| b | (1 << m.index()))
}

/// The `EmotionWindow` of a published window: `model_bits` says which modalities the model
/// has (those not observed were completed), `abstain_below` marks uncertain labels.
pub fn emotion_window(p: &Published, model_bits: u8, abstain_below: f32, header: Header) -> EmotionWindow {
    let scored = ScoredResult::from_result(&p.result, abstain_below);
    let utterances = scored
        .utterances
        .iter()
        .enumerate()
        .map(|(i, u)| Emotion {
            utterance: u.utterance,
            speaker: p.speakers.get(i).copied().unwrap_or(0),
            observed: u.avail,
            completed: model_bits & !u.avail,
            label: u.label,
            label_name: u.label_name.to_string(),
            probs: u.probs.to_vec(),
            confidence: u.confidence,
            uncertain: u.uncertain,
            has_regression: u.reg.is_some(),
            regression: u.reg.unwrap_or(0.0),
        })
        .collect();
    EmotionWindow {
        header,
        conversation: scored.conversation.to_string(),
        closed_utterance: scored.closed_utterance,
        completion: scored.completion,
        latency_us: scored.latency_us,
        abstain_below,
        utterances,
    }
}

/// A refusal notice as a ROS 2 `Notice`.
pub fn notice(n: &NoticeReport, header: Header) -> Notice {
    Notice {
        header,
        reason: n.reason as u8,
        reason_name: format!("{:?}", n.reason),
        conversation: n.conversation.to_string(),
        has_utterance: n.utterance.is_some(),
        utterance: n.utterance.unwrap_or(0),
        count: n.count,
        detail: n.detail.to_string(),
    }
}

/// Counters of the ROS 2 side itself, shown in its diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounts {
    pub inputs_received: u64,
    pub inputs_refused: u64,
    pub results_published: u64,
    pub notices_published: u64,
    pub publish_errors: u64,
}

/// The diagnostic's level and message: ERROR once the watchdog stopped the engine, WARN while
/// windows fail or the inference queue is full, OK otherwise.
fn summary(status: &StatusReport, health: &HealthReport) -> (u8, String) {
    if health.watchdog_stopped {
        (
            level::ERROR,
            format!(
                "engine failing: {} windows in a row",
                health.consecutive_inference_errors
            ),
        )
    } else if health.consecutive_inference_errors > 0 {
        (
            level::WARN,
            format!("{} windows failed in a row", health.consecutive_inference_errors),
        )
    } else if status.queue_capacity > 0 && status.queue_len >= status.queue_capacity {
        (level::WARN, "inference queue full".to_string())
    } else {
        (level::OK, format!("serving: {}", status.engine))
    }
}

/// The daemon's health as one `DiagnosticStatus`: ERROR while the watchdog is stopped, WARN
/// while windows fail or the queue is full, else OK; every counter as a key/value.
pub fn diagnostics(
    name: &str,
    hardware_id: &str,
    status: &StatusReport,
    health: &HealthReport,
    node: NodeCounts,
    header: Header,
) -> DiagnosticArray {
    let (lvl, message) = summary(status, health);
    let kv = |key: &str, value: String| KeyValue { key: key.into(), value };
    let mut values = vec![
        kv("engine", status.engine.clone()),
        kv("uptime_ms", status.uptime_ms.to_string()),
        kv("frames_accepted", status.frames_accepted.to_string()),
        kv("windows_run", status.windows_run.to_string()),
        kv("windows_superseded", status.windows_superseded.to_string()),
        kv("windows_dropped", status.windows_dropped.to_string()),
        kv("inference_errors", status.inference_errors.to_string()),
        kv("results_published", status.results_published.to_string()),
        kv("queue_len", status.queue_len.to_string()),
        kv("queue_capacity", status.queue_capacity.to_string()),
        kv("open_conversations", status.open_conversations.to_string()),
        kv("empty_utterances", status.empty_utterances.to_string()),
        kv("conversations_evicted", health.conversations_evicted.to_string()),
        kv("utterances_flushed", health.utterances_flushed.to_string()),
        kv("results_lost", health.results_lost.to_string()),
        kv(
            "consecutive_inference_errors",
            health.consecutive_inference_errors.to_string(),
        ),
        kv("ros2.inputs_received", node.inputs_received.to_string()),
        kv("ros2.inputs_refused", node.inputs_refused.to_string()),
        kv("ros2.results_published", node.results_published.to_string()),
        kv("ros2.notices_published", node.notices_published.to_string()),
        kv("ros2.publish_errors", node.publish_errors.to_string()),
    ];
    values.extend(
        status
            .rejected
            .iter()
            .map(|r| kv(&format!("rejected.{:?}", r.reason), r.count.to_string())),
    );
    DiagnosticArray {
        header,
        status: vec![DiagnosticStatus {
            level: lvl,
            name: name.to_string(),
            message,
            hardware_id: hardware_id.to_string(),
            values,
        }],
    }
}
