//! The ROS 2 conversions (every build) and, with the feature, the CDR bytes of each message
//! against `tests/data/ros2_cdr.json` (bytes written down from the `.msg` files).

use super::convert::{diagnostics, emotion_window, model_bits, notice, to_message, NodeCounts};
use super::msgs::{kind, level, Header, SensorInput, Time};
use crate::daemon::inference::Published;
use crate::modality::Modality;
use crate::protocol::{
    class_name, conversation_id, HealthReport, Message, NoticeReport, Probs, RejectCount, RejectReason, StatusReport,
    UtteranceResult, WindowResult, MAX_CONVERSATION_ID, MAX_TRANSCRIPT,
};

fn input(kind: u8) -> SensorInput {
    SensorInput {
        header: Header {
            stamp: Time { sec: 2, nanosec: 5_000 },
            frame_id: "mic".into(),
        },
        kind,
        conversation: "c1".into(),
        utterance: 4,
        speaker: 1,
        modality: 1,
        values: vec![0.5, f32::NAN],
        text: "hello".into(),
    }
}

#[test]
fn every_kind_becomes_the_socket_message_with_the_stamp_in_microseconds() {
    let Ok(Message::Features(f)) = to_message(&input(kind::FEATURES)) else {
        panic!("features")
    };
    assert_eq!((f.conversation.as_str(), f.utterance, f.speaker), ("c1", 4, 1));
    assert_eq!((f.modality, f.timestamp_us), (Modality::Audio, 2_000_005));
    // NaN is not refused here: the assembler refuses it (NonFinite), as on the socket path.
    assert_eq!(f.values.len(), 2);
    let Ok(Message::Transcript(t)) = to_message(&input(kind::TRANSCRIPT)) else {
        panic!("transcript")
    };
    assert_eq!(t.text.as_str(), "hello");
    assert!(matches!(to_message(&input(kind::UTTERANCE_START)), Ok(Message::UtteranceStart(b)) if b.speaker == 1));
    assert!(matches!(to_message(&input(kind::UTTERANCE_END)), Ok(Message::UtteranceEnd(b)) if b.utterance == 4));
    assert!(matches!(to_message(&input(kind::DROPOUT)), Ok(Message::Dropout(d)) if d.modality == Modality::Audio));
    assert!(matches!(
        to_message(&input(kind::CONVERSATION_END)),
        Ok(Message::ConversationEnd { .. })
    ));
    assert!(matches!(to_message(&input(kind::RESET)), Ok(Message::Reset { .. })));
    let mut before_epoch = input(kind::UTTERANCE_END);
    before_epoch.header.stamp.sec = -1;
    assert!(matches!(to_message(&before_epoch), Ok(Message::UtteranceEnd(b)) if b.timestamp_us == 0));
}

#[test]
fn what_would_not_decode_on_the_socket_is_malformed_naming_what_it_can() {
    let refused = |m: SensorInput| to_message(&m).expect_err("refused");
    let mut m = input(kind::FEATURES);
    m.modality = 3;
    let r = refused(m);
    assert_eq!(r.reason, RejectReason::Malformed);
    assert_eq!((r.conversation.as_deref(), r.utterance), (Some("c1"), Some(4)));
    assert!(r.detail.contains("modality 3"), "{}", r.detail);
    let mut m = input(kind::FEATURES);
    m.conversation = "x".repeat(MAX_CONVERSATION_ID + 1);
    let r = refused(m);
    assert_eq!(
        (r.reason, r.conversation, r.utterance),
        (RejectReason::Malformed, None, None)
    );
    let mut m = input(kind::UTTERANCE_START);
    m.conversation = "a\nb".into();
    assert_eq!(refused(m).reason, RejectReason::Malformed);
    let mut m = input(kind::FEATURES);
    m.values = vec![0.0; crate::capacity::MAX_FEATURE_SIZE + 1];
    assert!(refused(m).detail.contains("too many"));
    let mut m = input(kind::TRANSCRIPT);
    m.text = "a".repeat(MAX_TRANSCRIPT + 1);
    assert!(refused(m).detail.contains("transcript"));
    let r = refused(input(7));
    assert!(r.detail.contains("kind 7"), "{}", r.detail);
}

fn utterance(id: u32, avail: u8, probs: &[f32], reg: Option<f32>) -> UtteranceResult {
    UtteranceResult {
        utterance: id,
        avail,
        label: 1,
        label_name: class_name("happy").unwrap(),
        probs: Probs::from_slice(probs).unwrap(),
        reg,
    }
}

#[test]
fn a_window_carries_speakers_observed_and_completed_bits_confidence_and_abstention() {
    let result = WindowResult {
        conversation: conversation_id("c1").unwrap(),
        closed_utterance: 8,
        completion: "meanfill".into(),
        latency_us: 900,
        utterances: vec![
            utterance(7, 0b01, &[0.45, 0.55], None),
            utterance(8, 0b11, &[0.1, 0.9], Some(-0.5)),
        ],
    };
    let published = Published {
        result,
        speakers: vec![0, 1],
    };
    let bits = model_bits([Modality::Text, Modality::Audio]);
    assert_eq!(bits, 0b011);
    let w = emotion_window(&published, bits, 0.6, Header::default());
    assert_eq!(
        (w.conversation.as_str(), w.closed_utterance, w.latency_us),
        ("c1", 8, 900)
    );
    assert_eq!((w.completion.as_str(), w.abstain_below), ("meanfill", 0.6));
    let (a, b) = (&w.utterances[0], &w.utterances[1]);
    assert_eq!((a.utterance, a.speaker, a.observed, a.completed), (7, 0, 0b01, 0b10));
    assert_eq!((b.utterance, b.speaker, b.observed, b.completed), (8, 1, 0b11, 0));
    assert_eq!(
        (a.confidence, a.uncertain, b.confidence, b.uncertain),
        (0.55, true, 0.9, false)
    );
    assert_eq!((a.has_regression, b.has_regression, b.regression), (false, true, -0.5));
    assert_eq!(
        (b.label, b.label_name.as_str(), b.probs.as_slice()),
        (1, "happy", &[0.1, 0.9][..])
    );
}

#[test]
fn notices_and_diagnostics_name_reasons_and_levels() {
    let c = conversation_id("c1").unwrap();
    let n = notice(
        &NoticeReport::new(RejectReason::WrongLength, c, Some(4), 3, "short"),
        Header::default(),
    );
    assert_eq!((n.reason, n.reason_name.as_str(), n.count), (5, "WrongLength", 3));
    assert_eq!((n.has_utterance, n.utterance, n.detail.as_str()), (true, 4, "short"));
    let status = StatusReport {
        uptime_ms: 10,
        engine: "tract".into(),
        frames_accepted: 1,
        windows_run: 2,
        windows_superseded: 0,
        windows_dropped: 0,
        inference_errors: 0,
        results_published: 2,
        queue_len: 0,
        queue_capacity: 8,
        open_conversations: 1,
        clients: 0,
        rejected: vec![RejectCount {
            reason: RejectReason::NonFinite,
            count: 2,
        }],
        empty_utterances: 0,
    };
    let mut health = HealthReport::default();
    let counts = NodeCounts {
        inputs_refused: 2,
        ..NodeCounts::default()
    };
    let d = diagnostics("gsdnet: /gsdnet", "x86", &status, &health, counts, Header::default());
    let s = &d.status[0];
    assert_eq!(
        (s.level, s.name.as_str(), s.hardware_id.as_str()),
        (level::OK, "gsdnet: /gsdnet", "x86")
    );
    let value = |k: &str| s.values.iter().find(|kv| kv.key == k).map(|kv| kv.value.clone());
    assert_eq!(value("rejected.NonFinite").as_deref(), Some("2"));
    assert_eq!(value("ros2.inputs_refused").as_deref(), Some("2"));
    assert_eq!(value("windows_run").as_deref(), Some("2"));
    health.consecutive_inference_errors = 2;
    assert_eq!(
        diagnostics("n", "h", &status, &health, counts, Header::default()).status[0].level,
        level::WARN
    );
    health.watchdog_stopped = true;
    assert_eq!(
        diagnostics("n", "h", &status, &health, counts, Header::default()).status[0].level,
        level::ERROR
    );
}

#[cfg(feature = "ros2")]
mod cdr {
    use byteorder::LittleEndian;
    use ros2_client::dds::rustdds::cdr_encoding;
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::super::msgs::{DiagnosticArray, EmotionWindow, Notice, SensorInput};

    /// The bytes of a case: the hex before each `|`, encapsulation header included.
    fn bytes(case: &serde_json::Value) -> Vec<u8> {
        let lines = case["cdr"].as_array().expect("cdr lines");
        let hex: String = lines
            .iter()
            .map(|l| {
                l.as_str()
                    .expect("line")
                    .split('|')
                    .next()
                    .unwrap_or("")
                    .replace(' ', "")
            })
            .collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Serialises the case's value as `T` and compares with its bytes; decodes them back.
    fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(case: &serde_json::Value) {
        let name = case["name"].as_str().unwrap_or("?");
        let value: T = serde_json::from_value(case["value"].clone()).expect("value has the message's fields");
        let want = bytes(case);
        assert_eq!(&want[..4], &[0, 1, 0, 0], "{name}: CDR little-endian encapsulation");
        let got = cdr_encoding::to_vec::<T, LittleEndian>(&value).expect("serialises");
        assert_eq!(got, want[4..], "{name}: CDR bytes differ from the .msg layout");
        let (back, used) = cdr_encoding::from_bytes::<T, LittleEndian>(&want[4..]).expect("decodes");
        assert_eq!(
            (back, used),
            (value, want.len() - 4),
            "{name}: decodes to the same value"
        );
    }

    #[test]
    fn every_message_matches_the_bytes_written_down_from_its_msg_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ros2_cdr.json");
        let text = std::fs::read_to_string(path).expect("tests/data/ros2_cdr.json");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
        let cases = doc["cases"].as_array().expect("cases");
        let mut seen = Vec::new();
        for case in cases {
            let ty = case["type"].as_str().expect("type");
            match ty {
                "gsdnet_msgs/msg/SensorInput" => check::<SensorInput>(case),
                "gsdnet_msgs/msg/EmotionWindow" => check::<EmotionWindow>(case),
                "gsdnet_msgs/msg/Notice" => check::<Notice>(case),
                "diagnostic_msgs/msg/DiagnosticArray" => check::<DiagnosticArray>(case),
                other => panic!("no Rust type for {other}"),
            }
            seen.push(ty);
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4, "every message the node uses has a case: {seen:?}");
    }
}
