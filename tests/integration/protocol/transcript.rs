//! The `Transcript` message (tag 16): the worked example of docs/PROTOCOL.md byte for byte
//! (tests/python/test_protocol_client.py checks the same bytes), its UTF-8 and size bounds as
//! `Malformed` frames that cost the stream nothing else.

use gsdnet_edge::protocol::{
    conversation_id, decode_frame, encode_frame, transcript_text, DecodeError, FrameDecoder, Message, RejectReason,
    Transcript, MAX_FRAME_LEN, MAX_TRANSCRIPT,
};

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn transcript(text: &str) -> Message {
    Message::Transcript(Transcript {
        conversation: conversation_id("c1").unwrap(),
        utterance: 3,
        speaker: 1,
        timestamp_us: 0,
        text: transcript_text(text).unwrap(),
    })
}

#[test]
fn documented_example_bytes() {
    let frame = encode_frame(&transcript("Hi é!"));
    assert_eq!(
        frame,
        hex("08 02 10 02 63 31 03 01 0c 06 48 69 20 c3 a9 21 eb 86 51 27 00")
    );
    let mut body = frame[..frame.len() - 1].to_vec();
    assert_eq!(decode_frame(&mut body).unwrap(), transcript("Hi é!"));
}

#[test]
fn the_longest_transcript_fits_a_frame() {
    let text = "é".repeat(MAX_TRANSCRIPT / 2);
    let frame = encode_frame(&transcript(&text));
    assert!(frame.len() <= MAX_FRAME_LEN, "{} bytes", frame.len());
    assert!(
        transcript_text(&format!("{text}x")).is_none(),
        "one byte over the limit"
    );
}

/// A hand-built body (version, tag 16, "c1", utterance 3, speaker 1, ts 0) with `text` bytes.
fn raw_frame(text: &[u8]) -> Vec<u8> {
    let mut body = vec![2, 16, 2, b'c', b'1', 3, 1, 0];
    let mut n = text.len();
    while n >= 0x80 {
        body.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    body.extend_from_slice(text);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let mut out = cobs::encode_vec(&body);
    out.push(0);
    out
}

#[test]
fn invalid_utf8_and_overlong_text_are_malformed_and_nothing_else_is_lost() {
    let good = encode_frame(&transcript("ok"));
    assert_eq!(raw_frame(b"ok"), good, "the hand-built frame is the encoder's");
    let long = vec![b'x'; MAX_TRANSCRIPT + 1];
    for bad in [&b"\xc3\x28"[..], &b"\xff"[..], &long[..]] {
        let mut stream = raw_frame(bad);
        stream.extend_from_slice(&good);
        let got: Vec<Result<Message, DecodeError>> = FrameDecoder::new(MAX_FRAME_LEN).feed(&stream).collect();
        assert_eq!(got.len(), 2, "{bad:?}");
        let err = got[0].as_ref().unwrap_err();
        assert_eq!(err.reason(), RejectReason::Malformed, "{err}");
        assert_eq!(got[1].as_ref().unwrap(), &transcript("ok"));
    }
}
