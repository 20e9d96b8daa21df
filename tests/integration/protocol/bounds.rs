//! Protocol bounds (version 2): feature vectors of the model's size up to 2048 values fit one
//! frame and reach the assembly intact; results carry K probabilities and a class name within
//! the documented bounds; `max_result_frame_len` really bounds what the daemon may publish.

use gsdnet_edge::capacity::{MAX_CLASSES, MAX_CLASS_NAME, MAX_FEATURE_SIZE};
use gsdnet_edge::daemon::assembly::{Assembler, AssemblySettings};
use gsdnet_edge::modality::Modalities;
use gsdnet_edge::protocol::{
    class_name, conversation_id, decode_frame, encode_frame, max_result_frame_len, values, DecodeError, Features,
    FrameDecoder, Message, Modality, Probs, ScoredResult, UtteranceResult, WindowResult, MAX_CONVERSATION_ID,
    MAX_FEATURES_FRAME_LEN, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

fn features(conv: &str, utt: u32, m: Modality, vals: &[f32]) -> Message {
    Message::Features(Features {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker: u16::MAX,
        modality: m,
        timestamp_us: u64::MAX,
        values: values(vals).unwrap(),
    })
}

/// Frames a body with the current version and a valid CRC (delimiter not included).
fn framed(body: &[u8]) -> Vec<u8> {
    let mut payload = vec![PROTOCOL_VERSION];
    payload.extend_from_slice(body);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    cobs::encode_vec(&payload)
}

#[test]
fn a_1024_value_vector_round_trips_and_is_assembled_for_a_1024_model() {
    let vals: Vec<f32> = (0..1024).map(|i| 1.0 + i as f32 / 1024.0).collect();
    let msg = features("iemocap-ses01", 5, Modality::Audio, &vals);
    let frame = encode_frame(&msg);
    assert!(frame.len() <= MAX_FRAME_LEN, "{} bytes", frame.len());
    // Through the streaming decoder, in socket-sized reads, as a connection receives it.
    let mut dec = FrameDecoder::default();
    let mut got = Vec::new();
    for chunk in frame.chunks(4096) {
        got.extend(dec.feed(chunk));
    }
    assert_eq!(got.len(), 1);
    let decoded = got.pop().unwrap().unwrap();
    assert_eq!(decoded, msg);
    let settings = AssemblySettings {
        window: 4,
        windowing: gsdnet_edge::config::Windowing::Sliding,
        deadline_ms: [100; 3],
        max_utterance_ms: 1000,
        max_open_utterances: 4,
        max_conversations: 2,
        idle_conversation_ms: 60_000,
        evict_idle_ms: 10_000,
    };
    let mut a = Assembler::new(settings, Modalities::new([12, 1024, 0]).unwrap());
    a.handle(&features("iemocap-ses01", 5, Modality::Text, &[0.5; 12]), 0)
        .unwrap();
    let jobs = a.handle(&decoded, 0).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].utterances[0].features[1].as_deref(), Some(&vals[..]));
}

#[test]
fn the_largest_features_frame_fits_the_documented_bound() {
    let conv = "x".repeat(MAX_CONVERSATION_ID);
    // Non-zero bytes everywhere: the worst COBS overhead.
    let msg = Message::Features(Features {
        conversation: conversation_id(&conv).unwrap(),
        utterance: u32::MAX,
        speaker: u16::MAX,
        modality: Modality::Visual,
        timestamp_us: u64::MAX,
        values: values(&[1.1; MAX_FEATURE_SIZE]).unwrap(),
    });
    let frame = encode_frame(&msg);
    assert!(
        frame.len() <= MAX_FEATURES_FRAME_LEN,
        "{} > {MAX_FEATURES_FRAME_LEN}",
        frame.len()
    );
    assert!(
        frame.len() > MAX_FEATURES_FRAME_LEN - 40,
        "the bound is tight: {} vs {MAX_FEATURES_FRAME_LEN}",
        frame.len()
    );
    assert!(values(&[0.0; MAX_FEATURE_SIZE + 1]).is_none());
    let mut body = frame[..frame.len() - 1].to_vec();
    assert_eq!(decode_frame(&mut body).unwrap(), msg);
}

fn six_class(utterance: u32, label: u16) -> UtteranceResult {
    let names = ["hap", "sad", "neu", "ang", "exc", "fru"];
    let mut probs = [0.05f32; 6];
    probs[usize::from(label)] = 0.75;
    UtteranceResult {
        utterance,
        avail: 3,
        label,
        label_name: class_name(names[usize::from(label)]).unwrap(),
        probs: Probs::from_slice(&probs).unwrap(),
        reg: None,
    }
}

#[test]
fn six_class_results_round_trip_plain_and_scored() {
    let r = WindowResult {
        conversation: conversation_id("Ses01F_impro01").unwrap(),
        closed_utterance: 9,
        completion: "gsdnet".into(),
        latency_us: 1234,
        utterances: (0..10).map(|i| six_class(i, (i % 6) as u16)).collect(),
    };
    for msg in [
        Message::Result(r.clone()),
        Message::Scored(ScoredResult::from_result(&r, 0.8)),
    ] {
        let frame = encode_frame(&msg);
        let mut body = frame[..frame.len() - 1].to_vec();
        assert_eq!(decode_frame(&mut body).unwrap(), msg);
    }
    let s = ScoredResult::from_result(&r, 0.8);
    assert!(s
        .utterances
        .iter()
        .all(|u| u.confidence == 0.75 && u.uncertain && u.probs.len() == 6));
    assert_eq!(s.utterances[4].label_name.as_str(), "exc");
}

#[test]
fn results_beyond_the_bounds_are_malformed() {
    // Result body: tag 8, conversation "c", closed 0, completion "", latency 0, one utterance:
    // id 0, avail 1, label 0, name, probs, reg None.
    let result_body = |name: &[u8], k: usize| {
        let mut b = vec![
            0x08,
            0x01,
            b'c',
            0x00,
            0x00,
            0x00,
            0x01,
            0x00,
            0x01,
            0x00,
            name.len() as u8,
        ];
        b.extend_from_slice(name);
        b.push(k as u8);
        b.extend(std::iter::repeat_n([0u8, 0, 0x80, 0x3f], k).flatten());
        b.push(0x00);
        b
    };
    let ok = result_body(b"calm", 3);
    assert!(decode_frame(&mut framed(&ok)).is_ok());
    let too_long_name = result_body(&[b'n'; MAX_CLASS_NAME + 1], 3);
    let too_many_probs = result_body(b"calm", MAX_CLASSES + 1);
    for body in [too_long_name, too_many_probs] {
        assert!(matches!(
            decode_frame(&mut framed(&body)),
            Err(DecodeError::Malformed(_))
        ));
    }
    // An option byte other than 0 or 1.
    let mut bad_option = ok.clone();
    *bad_option.last_mut().unwrap() = 2;
    assert!(matches!(
        decode_frame(&mut framed(&bad_option)),
        Err(DecodeError::Malformed(_))
    ));
}

/// The widest result the bound covers: every varint at its widest, every name full, non-zero bytes.
fn widest(window: usize, k: usize) -> WindowResult {
    let name = "n".repeat(MAX_CLASS_NAME);
    let u = |i: usize| UtteranceResult {
        utterance: u32::MAX - i as u32,
        avail: 7,
        label: u16::MAX,
        label_name: class_name(&name).unwrap(),
        probs: Probs::from_slice(&vec![1.1; k]).unwrap(),
        reg: Some(1.1),
    };
    WindowResult {
        conversation: conversation_id(&"c".repeat(MAX_CONVERSATION_ID)).unwrap(),
        closed_utterance: u32::MAX,
        completion: "meanfill".into(),
        latency_us: u32::MAX,
        utterances: (0..window).map(u).collect(),
    }
}

#[test]
fn max_result_frame_len_bounds_every_result() {
    for (window, k) in [(1, 2), (8, 6), (64, 2), (64, 6), (40, MAX_CLASSES)] {
        let names: Vec<String> = (0..k).map(|_| "n".repeat(MAX_CLASS_NAME)).collect();
        let bound = max_result_frame_len(window, &names, "meanfill");
        let r = widest(window, k);
        let scored = Message::Scored(ScoredResult {
            abstain_below: 1.1,
            ..ScoredResult::from_result(&r, 1.1)
        });
        for msg in [Message::Result(r), scored] {
            let n = encode_frame(&msg).len();
            assert!(n <= bound, "window {window}, K {k}: {n} > {bound}");
        }
    }
    // The bundled CMU-MOSI layout and the IEMOCAP one at W = 64 fit with room to spare; 64
    // classes of 32-byte names do not fit 64 utterances (the daemon refuses to serve that).
    assert!(max_result_frame_len(64, &["negative", "positive"], "meanfill") < 4096);
    assert!(max_result_frame_len(64, &["hap", "sad", "neu", "ang", "exc", "fru"], "meanfill") < 4096);
    let wide: Vec<String> = (0..MAX_CLASSES).map(|i| format!("{i:0>32}")).collect();
    assert!(max_result_frame_len(64, &wide, "gsdnet") > MAX_FRAME_LEN);
}
