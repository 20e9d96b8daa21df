//! Protocol tests: round trips, the exact byte layout documented in docs/PROTOCOL.md, and every
//! kind of bad frame the streaming decoder must reject without losing the frames after it.

use gsdnet_edge::protocol::{
    conversation_id, decode_frame, encode_frame, values, Boundary, DecodeError, Features,
    FrameDecoder, HealthReport, Message, Modality, ScoredResult, ScoredUtterance, UtteranceResult, WindowResult, RejectCount, RejectReason, StatusReport, MAX_FRAME_LEN,
    PROTOCOL_VERSION,
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
        Message::UtteranceStart(Boundary { conversation: conv.clone(), utterance: 1, speaker: 0, timestamp_us: 5 }),
        Message::UtteranceEnd(Boundary { conversation: conv.clone(), utterance: 1, speaker: 0, timestamp_us: 9 }),
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
        PROTOCOL_VERSION, 0x00, // version, tag Features
        0x02, b'c', b'1', // conversation: varint length + UTF-8
        0xAC, 0x02, // utterance 300 as LEB128 varint
        0x02, // speaker
        0x02, // modality Visual
        0x01, // timestamp_us
        0x02, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0, // 2 values, f32 little-endian
    ];
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
    let mut payload = body.clone();
    payload.extend_from_slice(&crc.to_le_bytes());
    let mut expected = cobs::encode_vec(&payload);
    expected.push(0);
    assert_eq!(encode_frame(&msg), expected);
    assert_eq!(crc, 0x6B7B_B439, "CRC quoted in docs/PROTOCOL.md");
    let doc_frame: [u8; 25] = [
        0x02, 0x01, 0x0a, 0x02, 0x63, 0x31, 0xac, 0x02, 0x02, 0x02, 0x01, 0x02, 0x01, 0x03, 0x80, 0x3f, 0x01,
        0x01, 0x06, 0xc0, 0x39, 0xb4, 0x7b, 0x6b, 0x00,
    ];
    assert_eq!(encode_frame(&msg), doc_frame, "frame quoted in docs/PROTOCOL.md");
}

#[test]
fn status_layout_matches_protocol_doc() {
    // Second example of docs/PROTOCOL.md: a status report, `empty_utterances` last.
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
        rejected: vec![RejectCount { reason: RejectReason::UnknownVersion, count: 1 }],
        empty_utterances: 1,
    });
    let body: Vec<u8> = vec![
        PROTOCOL_VERSION, 0x07, // version, tag Status
        0xDC, 0x0B, // uptime_ms 1500
        0x04, b'm', b'o', b'c', b'k', // engine
        0x07, 0x02, 0x00, 0x00, 0x00, 0x02, // accepted, run, superseded, dropped, errors, published
        0x00, 0x04, 0x01, 0x02, // queue_len, queue_capacity, open_conversations, clients
        0x01, 0x03, 0x01, // rejected: one entry, UnknownVersion, 1
        0x01, // empty_utterances
    ];
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
    assert_eq!(crc, 0x7ABB_5B01, "CRC quoted in docs/PROTOCOL.md");
    let doc_frame: [u8; 29] = [
        0x0c, 0x01, 0x07, 0xdc, 0x0b, 0x04, 0x6d, 0x6f, 0x63, 0x6b, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x0c,
        0x04, 0x01, 0x02, 0x01, 0x03, 0x01, 0x01, 0x01, 0x5b, 0xbb, 0x7a, 0x00,
    ];
    assert_eq!(encode_frame(&msg), doc_frame, "frame quoted in docs/PROTOCOL.md");
    let mut encoded = doc_frame[..doc_frame.len() - 1].to_vec();
    assert_eq!(decode_frame(&mut encoded).unwrap(), msg);
}

#[test]
fn health_layout_matches_protocol_doc() {
    // Third example of docs/PROTOCOL.md: appended tags 9 and 10.
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
    let doc_frame = [
        0x05, 0x01, 0x0a, 0x01, 0x02, 0x03, 0x03, 0x04, 0x06, 0x05, 0x06, 0x01, 0xac, 0x02, 0x06, 0x01, 0xce, 0x08, 0x56, 0xf1,
        0x00,
    ];
    assert_eq!(encode_frame(&msg), doc_frame, "frame quoted in docs/PROTOCOL.md");
    assert_eq!(encode_frame(&Message::HealthRequest), [0x07, 0x01, 0x09, 0x1a, 0x9b, 0x1e, 0x21, 0x00]);
    let mut encoded = doc_frame[..doc_frame.len() - 1].to_vec();
    assert_eq!(decode_frame(&mut encoded).unwrap(), msg);
}

#[test]
fn scored_layout_matches_protocol_doc() {
    // Fourth example of docs/PROTOCOL.md: appended tags 11 and 12.
    let msg = Message::Scored(ScoredResult {
        conversation: conversation_id("c1").unwrap(),
        closed_utterance: 3,
        completion: "gsdnet".into(),
        latency_us: 1200,
        abstain_below: 0.75,
        utterances: vec![ScoredUtterance { utterance: 3, avail: 5, label: 1, probs: vec![0.25, 0.75], reg: 0.5, confidence: 0.75, uncertain: false }],
    });
    let doc_frame = [
        0x10, 0x01, 0x0c, 0x02, 0x63, 0x31, 0x03, 0x06, 0x67, 0x73, 0x64, 0x6e, 0x65, 0x74, 0xb0, 0x09, 0x01, 0x08, 0x40, 0x3f, 0x01,
        0x03, 0x05, 0x01, 0x02, 0x01, 0x03, 0x80, 0x3e, 0x01, 0x03, 0x40, 0x3f, 0x01, 0x01, 0x02, 0x3f, 0x01, 0x03, 0x40, 0x3f,
        0x05, 0xff, 0x76, 0xfb, 0x63, 0x00,
    ];
    assert_eq!(encode_frame(&msg), doc_frame, "frame quoted in docs/PROTOCOL.md");
    assert_eq!(encode_frame(&Message::SubscribeScored), [0x07, 0x01, 0x0b, 0x36, 0xfa, 0x10, 0xcf, 0x00]);
    let mut encoded = doc_frame[..doc_frame.len() - 1].to_vec();
    assert_eq!(decode_frame(&mut encoded).unwrap(), msg);
}

#[test]
fn scored_result_confidence_is_the_largest_probability() {
    let r = WindowResult {
        conversation: conversation_id("c").unwrap(),
        closed_utterance: 1,
        completion: "gsdnet".into(),
        latency_us: 1,
        utterances: vec![
            UtteranceResult { utterance: 0, avail: 7, label: 0, probs: [0.9, 0.1], reg: 0.0 },
            UtteranceResult { utterance: 1, avail: 1, label: 1, probs: [0.45, 0.55], reg: 0.0 },
        ],
    };
    let s = ScoredResult::from_result(&r, 0.6);
    let got: Vec<(f32, bool)> = s.utterances.iter().map(|u| (u.confidence, u.uncertain)).collect();
    assert_eq!(got, vec![(0.9, false), (0.55, true)]);
    assert!(ScoredResult::from_result(&r, 0.0).utterances.iter().all(|u| !u.uncertain), "no threshold, nothing uncertain");
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
    assert!(conversation_id("séance 2 — robot").is_some(), "non-ASCII printable text is fine");
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
    assert!(matches!(out[0], Err(DecodeError::Crc { .. }) | Err(DecodeError::Framing)), "{:?}", out[0]);
    assert_eq!(out[1], Ok(good));
}

#[test]
fn unknown_version_is_reported_as_such() {
    let mut body = vec![PROTOCOL_VERSION + 1, 5];
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let mut frame = cobs::encode_vec(&body);
    assert_eq!(decode_frame(&mut frame), Err(DecodeError::UnknownVersion(PROTOCOL_VERSION + 1)));
}

#[test]
fn malformed_bodies_are_rejected() {
    let cases: Vec<Vec<u8>> = vec![
        vec![PROTOCOL_VERSION, 0x7F],                   // unknown message tag
        vec![PROTOCOL_VERSION, 0x00, 0x05, b'a'],        // truncated string
        vec![PROTOCOL_VERSION, 0x05, 0x00],              // Subscribe + trailing byte
        // Features with 200 values (> MAX_VALUES)
        vec![PROTOCOL_VERSION, 0x00, 0x01, b'c', 0x01, 0x00, 0x00, 0x01, 0xC8, 0x01],
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
