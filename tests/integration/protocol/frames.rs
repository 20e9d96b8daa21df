//! Protocol tests (version 2): round trips, the exact byte layout of every worked example in
//! docs/PROTOCOL.md (tests/python/test_protocol_client.py checks the same bytes), and every kind
//! of bad frame the streaming decoder must reject without losing the frames after it.

use crate::util::daemon::result;
use gsdnet_edge::protocol::{
    class_name, conversation_id, decode_frame, encode_frame, values, Boundary, BoundedVec, ClassName, DecodeError,
    Features, FrameDecoder, HealthReport, Message, Modality, ModalityInfo, ModelInfoReport, Probs, RejectCount,
    RejectNotice, RejectReason, ScoredResult, ScoredUtterance, StatusReport, UtteranceResult, WindowResult,
    MAX_FRAME_LEN, PROTOCOL_VERSION,
};

fn features(utt: u32, m: Modality, vals: &[f32]) -> Message {
    Message::Features(Features {
        conversation: conversation_id("conv-1").unwrap(),
        utterance: utt,
        speaker: 3,
        modality: m,
        timestamp_us: 1_000_000 + u64::from(utt),
        values: values(vals).unwrap(),
    })
}

fn decode_all(dec: &mut FrameDecoder, bytes: &[u8]) -> Vec<Result<Message, DecodeError>> {
    dec.feed(bytes).collect()
}

#[test]
fn round_trip_every_message_kind() {
    let conv = conversation_id("abc").unwrap();
    let msgs = vec![
        features(7, Modality::Audio, &[0.5; 73]),
        Message::UtteranceStart(Boundary {
            conversation: conv.clone(),
            utterance: 1,
            speaker: 0,
            timestamp_us: 5,
        }),
        Message::UtteranceEnd(Boundary {
            conversation: conv.clone(),
            utterance: 1,
            speaker: 0,
            timestamp_us: 9,
        }),
        Message::Reset { conversation: conv },
        Message::Subscribe,
        Message::StatusRequest,
    ];
    for msg in msgs {
        let mut frame = encode_frame(&msg);
        assert_eq!(frame.pop(), Some(0));
        assert!(!frame.contains(&0), "COBS output must be zero-free");
        assert_eq!(decode_frame(&mut frame).unwrap(), msg);
    }
}

/// Bytes from the hex strings quoted in docs/PROTOCOL.md (spaces ignored).
pub(super) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// `msg` encodes to `frame` (quoted in docs/PROTOCOL.md, as tests/python/test_protocol_client.py
/// checks too), whose body has CRC `crc`, and decodes back to `msg`.
pub(super) fn assert_doc_frame(msg: &Message, frame: &str, crc: u32) {
    let frame = hex(frame);
    assert_eq!(encode_frame(msg), frame, "frame quoted in docs/PROTOCOL.md for {msg:?}");
    let mut encoded = frame[..frame.len() - 1].to_vec();
    let payload = cobs::decode_vec(&encoded).unwrap();
    let body = &payload[..payload.len() - 4];
    assert_eq!(body[0], PROTOCOL_VERSION);
    assert_eq!(
        crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(body),
        crc,
        "CRC quoted in docs/PROTOCOL.md"
    );
    assert_eq!(&decode_frame(&mut encoded).unwrap(), msg);
}

#[test]
fn byte_layout_matches_protocol_doc() {
    // Example from docs/PROTOCOL.md: Features, conversation "c1", utterance 300, speaker 2,
    // visual, timestamp 1, values [1.0, -2.0].
    let msg = Message::Features(Features {
        conversation: conversation_id("c1").unwrap(),
        utterance: 300,
        speaker: 2,
        modality: Modality::Visual,
        timestamp_us: 1,
        values: values(&[1.0, -2.0]).unwrap(),
    });
    let body: Vec<u8> = vec![
        PROTOCOL_VERSION,
        0x00, // version 2, tag Features
        0x02,
        b'c',
        b'1', // conversation: varint length + UTF-8
        0xAC,
        0x02, // utterance 300 as LEB128 varint
        0x02, // speaker
        0x02, // modality Visual
        0x01, // timestamp_us
        0x02,
        0x00,
        0x00,
        0x80,
        0x3F,
        0x00,
        0x00,
        0x00,
        0xC0, // 2 values, f32 little-endian
    ];
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
    let mut payload = body.clone();
    payload.extend_from_slice(&crc.to_le_bytes());
    let mut expected = cobs::encode_vec(&payload);
    expected.push(0);
    assert_eq!(encode_frame(&msg), expected);
    assert_doc_frame(
        &msg,
        "02 02 0a 02 63 31 ac 02 02 02 01 02 01 03 80 3f 01 01 06 c0 90 32 2d c8 00",
        0xc82d_3290,
    );
}

#[test]
fn status_layout_matches_protocol_doc() {
    let msg = Message::Status(StatusReport {
        uptime_ms: 1500,
        engine: "mock".into(),
        frames_accepted: 7,
        windows_run: 2,
        windows_superseded: 0,
        windows_dropped: 0,
        inference_errors: 0,
        results_published: 2,
        queue_len: 0,
        queue_capacity: 4,
        open_conversations: 1,
        clients: 2,
        rejected: vec![
            RejectCount {
                reason: RejectReason::UnknownVersion,
                count: 1,
            },
            RejectCount {
                reason: RejectReason::NoSuchModality,
                count: 2,
            },
        ],
        empty_utterances: 1,
    });
    assert_doc_frame(
        &msg,
        "0c 02 07 dc 0b 04 6d 6f 63 6b 07 02 01 01 02 02 0e 04 01 02 02 03 01 0d 02 01 f4 be 29 5b 00",
        0x5b29_bef4,
    );
}

#[test]
fn health_layout_matches_protocol_doc() {
    let msg = Message::Health(HealthReport {
        conversation_restarts: 1,
        late_replayed: 2,
        conversations_evicted: 0,
        utterances_flushed: 3,
        connections_open: 4,
        connections_refused: 0,
        connections_evicted: 5,
        connections_idle_closed: 6,
        slow_clients_disconnected: 1,
        results_lost: 300,
        consecutive_inference_errors: 0,
        watchdog_stopped: true,
    });
    assert_doc_frame(
        &msg,
        "05 02 0a 01 02 03 03 04 06 05 06 01 ac 02 06 01 b7 62 2b e0 00",
        0xe02b_62b7,
    );
    assert_doc_frame(&Message::HealthRequest, "07 02 09 d9 c8 33 0a 00", 0x0a33_c8d9);
}

#[test]
fn scored_layout_matches_protocol_doc() {
    let msg = Message::Scored(ScoredResult {
        conversation: conversation_id("c1").unwrap(),
        closed_utterance: 3,
        completion: "gsdnet".into(),
        latency_us: 1200,
        abstain_below: 0.75,
        utterances: vec![ScoredUtterance {
            utterance: 3,
            avail: 5,
            label: 1,
            label_name: class_name("positive").unwrap(),
            probs: Probs::from_slice(&[0.25, 0.75]).unwrap(),
            reg: Some(0.5),
            confidence: 0.75,
            uncertain: false,
        }],
    });
    let frame = "10 02 0c 02 63 31 03 06 67 73 64 6e 65 74 b0 09 01 11 40 3f 01 03 05 01 08 70 6f 73 69 74 69 76 65 02 01 03 80 3e \
                 01 04 40 3f 01 01 01 02 3f 01 03 40 3f 05 b3 2a ff 61 00";
    assert_doc_frame(&msg, frame, 0x61ff_2ab3);
    assert_doc_frame(&Message::SubscribeScored, "07 02 0b f5 a9 3d e4 00", 0xe43d_a9f5);
}

#[test]
fn six_class_result_layout_matches_protocol_doc() {
    // An IEMOCAP window: K = 6 probabilities, label 4 "exc", no regression head.
    let msg = Message::Result(WindowResult {
        conversation: conversation_id("s1").unwrap(),
        closed_utterance: 7,
        completion: "gsdnet".into(),
        latency_us: 900,
        utterances: vec![UtteranceResult {
            utterance: 7,
            avail: 3,
            label: 4,
            label_name: class_name("exc").unwrap(),
            probs: Probs::from_slice(&[0.0625, 0.0625, 0.125, 0.0625, 0.5, 0.1875]).unwrap(),
            reg: None,
        }],
    });
    let frame = "19 02 08 02 73 31 07 06 67 73 64 6e 65 74 84 07 01 07 03 04 03 65 78 63 06 01 03 80 3d 01 03 80 3d 01 01 02 3e \
                 01 03 80 3d 01 01 02 3f 01 03 40 3e 05 59 f1 f5 46 00";
    assert_doc_frame(&msg, frame, 0x46f5_f159);
}

#[test]
fn model_info_and_reject_layouts_match_protocol_doc() {
    let classes: Vec<ClassName> = ["hap", "sad", "neu", "ang", "exc", "fru"]
        .iter()
        .map(|c| class_name(c).unwrap())
        .collect();
    let mut modalities = heapless::Vec::new();
    modalities
        .push(ModalityInfo {
            modality: Modality::Text,
            size: 384,
        })
        .unwrap();
    modalities
        .push(ModalityInfo {
            modality: Modality::Audio,
            size: 47,
        })
        .unwrap();
    let msg = Message::ModelInfo(ModelInfoReport {
        name: "gsdnet-iemocap6".into(),
        version: "0.1.0".into(),
        modalities,
        classes: BoundedVec::from_vec(classes).unwrap(),
        has_regression: false,
        window: 64,
    });
    let frame =
        "1a 02 0e 0f 67 73 64 6e 65 74 2d 69 65 6d 6f 63 61 70 36 05 30 2e 31 2e 30 02 1e 80 03 01 2f 06 03 68 61 70 \
                 03 73 61 64 03 6e 65 75 03 61 6e 67 03 65 78 63 03 66 72 75 06 40 39 ec 91 c8 00";
    assert_doc_frame(&msg, frame, 0xc891_ec39);
    assert_doc_frame(&Message::ModelInfoRequest, "07 02 0d c0 0c 5e 0d 00", 0x0d5e_0cc0);
    let detail = "protocol version 1 is not supported: this daemon speaks version 2";
    let msg = Message::Reject(RejectNotice::new(RejectReason::UnknownVersion, detail));
    let frame = "4a 02 0f 03 41 70 72 6f 74 6f 63 6f 6c 20 76 65 72 73 69 6f 6e 20 31 20 69 73 20 6e 6f 74 20 73 75 70 70 6f \
                 72 74 65 64 3a 20 74 68 69 73 20 64 61 65 6d 6f 6e 20 73 70 65 61 6b 73 20 76 65 72 73 69 6f 6e 20 32 98 eb 90 \
                 a9 00";
    assert_doc_frame(&msg, frame, 0xa990_eb98);
}

#[test]
fn a_version_1_frame_is_unknown_version() {
    // The v1 StatusRequest quoted in docs/PROTOCOL.md: a valid CRC, version byte 1.
    let mut v1 = hex("07 01 06 8b 86 a1 b1");
    assert_eq!(decode_frame(&mut v1), Err(DecodeError::UnknownVersion(1)));
    assert_eq!(DecodeError::UnknownVersion(1).reason(), RejectReason::UnknownVersion);
}

#[test]
fn scored_result_confidence_is_the_largest_probability() {
    let r = WindowResult {
        conversation: conversation_id("c").unwrap(),
        closed_utterance: 1,
        completion: "gsdnet".into(),
        latency_us: 1,
        utterances: vec![
            result(0, 7, 0, &["a", "b"], &[0.9, 0.1], Some(0.0)),
            result(1, 1, 1, &["a", "b"], &[0.45, 0.55], None),
        ],
    };
    let s = ScoredResult::from_result(&r, 0.6);
    let got: Vec<(f32, bool)> = s.utterances.iter().map(|u| (u.confidence, u.uncertain)).collect();
    assert_eq!(got, vec![(0.9, false), (0.55, true)]);
    let names: Vec<(&str, Option<f32>)> = s.utterances.iter().map(|u| (u.label_name.as_str(), u.reg)).collect();
    assert_eq!(
        names,
        vec![("a", Some(0.0)), ("b", None)],
        "names and the optional regression carry over"
    );
    assert!(
        ScoredResult::from_result(&r, 0.0)
            .utterances
            .iter()
            .all(|u| !u.uncertain),
        "no threshold, nothing uncertain"
    );
}

#[test]
fn conversation_ids_with_control_characters_are_malformed() {
    for bad in ["a\nb", "x\r", "\u{1b}[31m", "tab\there", "nul\0"] {
        let conversation = heapless::String::try_from(bad).unwrap();
        let frame = encode_frame(&Message::Reset { conversation });
        let mut body = frame[..frame.len() - 1].to_vec();
        let err = decode_frame(&mut body).unwrap_err();
        assert_eq!(err.reason(), RejectReason::Malformed, "{bad:?}");
        assert!(conversation_id(bad).is_none());
    }
    assert!(
        conversation_id("séance 2 — robot").is_some(),
        "non-ASCII printable text is fine"
    );
}

#[test]
fn decoder_splits_stream_fed_byte_by_byte() {
    let a = features(1, Modality::Text, &[1.0; 100]);
    let b = features(2, Modality::Visual, &[2.0; 100]);
    let mut stream = encode_frame(&a);
    stream.extend(encode_frame(&b));
    let mut dec = FrameDecoder::default();
    let mut got = Vec::new();
    for byte in &stream {
        got.extend(decode_all(&mut dec, std::slice::from_ref(byte)));
        if got.is_empty() {
            assert!(dec.pending() > 0);
        }
    }
    assert_eq!(got, vec![Ok(a), Ok(b)]);
    assert_eq!(dec.pending(), 0);
}

#[test]
fn corrupt_byte_gives_crc_error_and_stream_goes_on() {
    let good = features(1, Modality::Text, &[0.25; 100]);
    let mut bad = encode_frame(&good);
    bad[20] ^= 0x10;
    if bad[20] == 0 {
        bad[20] = 0x55;
    }
    let mut stream = bad;
    stream.extend(encode_frame(&good));
    let out = decode_all(&mut FrameDecoder::default(), &stream);
    assert_eq!(out.len(), 2);
    assert!(
        matches!(out[0], Err(DecodeError::Crc { .. }) | Err(DecodeError::Framing)),
        "{:?}",
        out[0]
    );
    assert_eq!(out[1], Ok(good));
}

#[test]
fn unknown_version_is_reported_as_such() {
    let mut body = vec![PROTOCOL_VERSION + 1, 5];
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let mut frame = cobs::encode_vec(&body);
    assert_eq!(
        decode_frame(&mut frame),
        Err(DecodeError::UnknownVersion(PROTOCOL_VERSION + 1))
    );
}

#[test]
fn malformed_bodies_are_rejected() {
    let cases: Vec<Vec<u8>> = vec![
        vec![PROTOCOL_VERSION, 0x7F],             // unknown message tag
        vec![PROTOCOL_VERSION, 0x00, 0x05, b'a'], // truncated string
        vec![PROTOCOL_VERSION, 0x05, 0x00],       // Subscribe + trailing byte
        // Features with 2049 values (> MAX_VALUES)
        vec![PROTOCOL_VERSION, 0x00, 0x01, b'c', 0x01, 0x00, 0x00, 0x01, 0x81, 0x10],
        // ModelInfoRequest + trailing byte
        vec![PROTOCOL_VERSION, 0x0D, 0x00],
        // an unknown tag after the v2 ones
        vec![PROTOCOL_VERSION, 0x10],
    ];
    for body in cases {
        let mut payload = body.clone();
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
        payload.extend_from_slice(&crc.to_le_bytes());
        let mut frame = cobs::encode_vec(&payload);
        let err = decode_frame(&mut frame).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{body:?}: {err:?}");
    }
}

#[test]
fn oversized_frame_is_skipped_to_next_delimiter() {
    let good = features(4, Modality::Audio, &[3.0; 73]);
    let mut stream = vec![0x11u8; MAX_FRAME_LEN * 3];
    stream.push(0);
    stream.extend(encode_frame(&good));
    let mut dec = FrameDecoder::default();
    let out = decode_all(&mut dec, &stream);
    assert_eq!(out, vec![Err(DecodeError::Oversized { max: MAX_FRAME_LEN }), Ok(good)]);
}

#[test]
fn short_and_garbage_frames_are_errors_not_panics() {
    let mut dec = FrameDecoder::default();
    let out = decode_all(&mut dec, &[0x01, 0x00, 0x02, 0x07, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00]);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|r| r.is_err()));
}

#[test]
fn vanished_sender_leaves_pending_bytes() {
    let frame = encode_frame(&features(1, Modality::Text, &[1.0; 100]));
    let mut dec = FrameDecoder::default();
    assert!(decode_all(&mut dec, &frame[..frame.len() / 2]).is_empty());
    assert_eq!(dec.pending(), frame.len() / 2);
    dec.clear();
    assert_eq!(dec.pending(), 0);
}
