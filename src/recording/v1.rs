//! Version 1 of the recording format (CMU-MOSI's binary `label_bin`): its record layout, read
//! and converted to the current `Record` (the binary label becomes the class index).

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;

use super::{Record, UtteranceRecord};

/// Version 1 utterance layout (postcard is positional: field order is the format).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct UtteranceRecordV1 {
    pub(super) conversation: String,
    pub(super) id: String,
    pub(super) speaker: u32,
    pub(super) position: u32,
    pub(super) timestamp_ms: Option<u64>,
    pub(super) label_cont: Option<f32>,
    pub(super) label_bin: Option<u8>,
    pub(super) features: [Option<Vec<f32>>; 3],
}

/// Version 1 record layout.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) enum RecordV1 {
    Conversation { id: String, started_ms: Option<u64> },
    Utterance(UtteranceRecordV1),
}

impl From<RecordV1> for Record {
    fn from(r: RecordV1) -> Record {
        match r {
            RecordV1::Conversation { id, started_ms } => Record::Conversation { id, started_ms },
            RecordV1::Utterance(u) => Record::Utterance(UtteranceRecord {
                conversation: u.conversation,
                id: u.id,
                speaker: u.speaker,
                position: u.position,
                timestamp_ms: u.timestamp_ms,
                label: u.label_bin.map(u32::from),
                label_cont: u.label_cont,
                features: u.features,
            }),
        }
    }
}
