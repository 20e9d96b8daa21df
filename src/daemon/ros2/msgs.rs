//! The ROS 2 messages the daemon reads and writes, as serde types whose field order is the CDR
//! layout of their `.msg` definitions: `gsdnet_msgs` (`ros2/gsdnet_msgs/msg/*.msg`), and
//! `std_msgs/Header`, `builtin_interfaces/Time` and `diagnostic_msgs/DiagnosticArray` from ROS 2's
//! common interfaces. A field added to a `.msg` is added here at the same place;
//! `tests/data/ros2_cdr.json` holds bytes written down from the `.msg` files, and the CDR test
//! (`cdr_tests`, `--features ros2`) and the Python peer's test (cyclonedds) both check them.
//!
//! The DDS type name of each message is `TYPES`' (`pkg::msg::dds_::Name_` on the wire).

use serde::{Deserialize, Serialize};

/// `builtin_interfaces/Time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

impl Time {
    /// The time `t` as ROS 2 time (seconds since the Unix epoch; saturates past 2038).
    pub fn from_system(t: std::time::SystemTime) -> Time {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Time {
            sec: i32::try_from(d.as_secs()).unwrap_or(i32::MAX),
            nanosec: d.subsec_nanos(),
        }
    }
}

/// `std_msgs/Header`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

/// `SensorInput.kind` values.
pub mod kind {
    pub const FEATURES: u8 = 0;
    pub const UTTERANCE_START: u8 = 1;
    pub const UTTERANCE_END: u8 = 2;
    pub const DROPOUT: u8 = 3;
    pub const TRANSCRIPT: u8 = 4;
    pub const CONVERSATION_END: u8 = 5;
    pub const RESET: u8 = 6;
}

/// `gsdnet_msgs/SensorInput`: one input event (the socket protocol's input messages).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorInput {
    pub header: Header,
    pub kind: u8,
    pub conversation: String,
    pub utterance: u32,
    pub speaker: u16,
    /// `SensorInput.MODALITY_*`: 0 text, 1 audio, 2 visual (`Modality::index`).
    pub modality: u8,
    pub values: Vec<f32>,
    pub text: String,
}

/// `gsdnet_msgs/Emotion`: one utterance of a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Emotion {
    pub utterance: u32,
    pub speaker: u16,
    /// Modality bits: text 1, audio 2, visual 4.
    pub observed: u8,
    pub completed: u8,
    pub label: u16,
    pub label_name: String,
    pub probs: Vec<f32>,
    pub confidence: f32,
    pub uncertain: bool,
    pub has_regression: bool,
    pub regression: f32,
}

/// `gsdnet_msgs/EmotionWindow`: what is published after a window run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmotionWindow {
    pub header: Header,
    pub conversation: String,
    pub closed_utterance: u32,
    pub completion: String,
    pub latency_us: u32,
    pub abstain_below: f32,
    pub utterances: Vec<Emotion>,
}

/// `gsdnet_msgs/Notice`: refusals of one reason since the previous notice of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub header: Header,
    /// The wire value of `RejectReason`.
    pub reason: u8,
    pub reason_name: String,
    pub conversation: String,
    pub has_utterance: bool,
    pub utterance: u32,
    pub count: u64,
    pub detail: String,
}

/// `diagnostic_msgs/KeyValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `diagnostic_msgs/DiagnosticStatus` levels.
pub mod level {
    pub const OK: u8 = 0;
    pub const WARN: u8 = 1;
    pub const ERROR: u8 = 2;
    pub const STALE: u8 = 3;
}

/// `diagnostic_msgs/DiagnosticStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticStatus {
    pub level: u8,
    pub name: String,
    pub message: String,
    pub hardware_id: String,
    pub values: Vec<KeyValue>,
}

/// `diagnostic_msgs/DiagnosticArray`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticArray {
    pub header: Header,
    pub status: Vec<DiagnosticStatus>,
}

/// (ROS 2 package, message name) of each message the node uses.
pub mod types {
    pub const SENSOR_INPUT: (&str, &str) = ("gsdnet_msgs", "SensorInput");
    pub const EMOTION_WINDOW: (&str, &str) = ("gsdnet_msgs", "EmotionWindow");
    pub const NOTICE: (&str, &str) = ("gsdnet_msgs", "Notice");
    pub const DIAGNOSTIC_ARRAY: (&str, &str) = ("diagnostic_msgs", "DiagnosticArray");
}
