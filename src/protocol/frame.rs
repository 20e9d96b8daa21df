//! Framing: `body = [PROTOCOL_VERSION] ++ postcard(Message)`, `payload = body ++ crc32_le(body)`,
//! `frame = cobs(payload) ++ [0x00]`. CRC-32 is CRC-32/ISO-HDLC (the zlib/Ethernet CRC).
//!
//! `FrameDecoder` is the streaming accumulator: bytes in, decoded messages or typed errors out;
//! "need more bytes" is simply the end of the iteration. Invariant: the decoder never buffers
//! more than `max_len` bytes (its buffer grows to the longest frame seen, then is reused); an
//! overlong frame is reported once and skipped up to the next delimiter, so one bad frame never
//! costs the frames after it. The version byte is checked right after the CRC, before the body
//! is decoded: a peer of another version gets `UnknownVersion`, never a misread message.

use crc::{Crc, CRC_32_ISO_HDLC};
use thiserror::Error;

use super::{Message, RejectReason, MAX_CONVERSATION_ID, MAX_FRAME_LEN, PROTOCOL_VERSION};
use crate::capacity::MAX_FEATURE_SIZE;

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);
const DELIMITER: u8 = 0x00;

/// Bytes of `n` as an unsigned LEB128 varint.
pub const fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut v = n >> 7;
    while v > 0 {
        len += 1;
        v >>= 7;
    }
    len
}

/// Largest COBS encoding of `n` bytes: one code byte per started block of 254 (delimiter not
/// included).
pub const fn cobs_max_len(n: usize) -> usize {
    n + n / 254 + 1
}

/// Longest `Features` frame, delimiter included: version, tag, a full conversation id, widest
/// utterance, speaker, modality and timestamp varints, `MAX_FEATURE_SIZE` f32, CRC.
pub const MAX_FEATURES_FRAME_LEN: usize = {
    let body = 2
        + varint_len(MAX_CONVERSATION_ID)
        + MAX_CONVERSATION_ID
        + 5
        + 3
        + 1
        + 10
        + varint_len(MAX_FEATURE_SIZE)
        + 4 * MAX_FEATURE_SIZE;
    cobs_max_len(body + 4) + 1
};

/// Why one frame could not be turned into a message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid COBS encoding")]
    Framing,
    #[error("CRC mismatch (got {got:#010x}, computed {computed:#010x})")]
    Crc { got: u32, computed: u32 },
    #[error("frame too short ({0} bytes) to hold a version and a CRC")]
    Short(usize),
    #[error("frame exceeds {max} bytes")]
    Oversized { max: usize },
    #[error("unknown protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    UnknownVersion(u8),
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// Counter this error is accounted under.
    pub fn reason(&self) -> RejectReason {
        match self {
            DecodeError::Framing => RejectReason::Framing,
            DecodeError::Crc { .. } | DecodeError::Short(_) => RejectReason::Crc,
            DecodeError::Oversized { .. } => RejectReason::Oversized,
            DecodeError::UnknownVersion(_) => RejectReason::UnknownVersion,
            DecodeError::Malformed(_) => RejectReason::Malformed,
        }
    }
}

/// Encodes one message as a complete frame, delimiter included.
pub fn encode_frame(msg: &Message) -> Vec<u8> {
    let mut body = vec![PROTOCOL_VERSION];
    // Serialising into a Vec only fails for types postcard cannot express; Message has none.
    let encoded = postcard::to_stdvec(msg).unwrap_or_default();
    body.extend_from_slice(&encoded);
    body.extend_from_slice(&CRC32.checksum(&body).to_le_bytes());
    let mut frame = cobs::encode_vec(&body);
    frame.push(DELIMITER);
    frame
}

/// Decodes one frame given without its delimiter (modified in place: COBS decodes in place).
pub fn decode_frame(frame: &mut [u8]) -> Result<Message, DecodeError> {
    let n = cobs::decode_in_place(frame).map_err(|_| DecodeError::Framing)?;
    let payload = &frame[..n];
    if payload.len() < 5 {
        return Err(DecodeError::Short(payload.len()));
    }
    let (body, crc) = payload.split_at(payload.len() - 4);
    let got = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = CRC32.checksum(body);
    if got != computed {
        return Err(DecodeError::Crc { got, computed });
    }
    if body[0] != PROTOCOL_VERSION {
        return Err(DecodeError::UnknownVersion(body[0]));
    }
    let (msg, rest) =
        postcard::take_from_bytes::<Message>(&body[1..]).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    if msg.conversation().is_some_and(|c| !super::is_clean_text(c)) {
        return Err(DecodeError::Malformed(
            "conversation id holds a control character".into(),
        ));
    }
    Ok(msg)
}

/// Streaming frame accumulator for one byte stream (one connection or one serial port).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_len: usize,
    /// Set after an overlong frame: bytes are dropped until the next delimiter.
    skipping: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// `max_len` counts the delimiter, like `MAX_FRAME_LEN`.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder {
            buf: Vec::with_capacity(256),
            max_len: max_len.max(2),
            skipping: false,
        }
    }

    /// Feeds bytes; the iterator yields one item per completed frame and ends when more bytes
    /// are needed. Bytes it has not yet consumed when dropped are lost, so drain it.
    pub fn feed<'a>(&'a mut self, data: &'a [u8]) -> Frames<'a> {
        Frames { dec: self, data }
    }

    /// Bytes of an unfinished frame; non-zero at end of stream means the sender vanished
    /// mid-frame.
    pub fn pending(&self) -> usize {
        if self.skipping {
            0
        } else {
            self.buf.len()
        }
    }

    /// Forgets any partial frame (after a stream error or reconnect).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.skipping = false;
    }

    fn step(&mut self, data: &mut &[u8]) -> Option<Result<Message, DecodeError>> {
        while let Some((&byte, rest)) = data.split_first() {
            *data = rest;
            if byte == DELIMITER {
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                if self.buf.is_empty() {
                    continue; // empty frames are allowed as resynchronisation markers
                }
                let result = decode_frame(&mut self.buf);
                self.buf.clear();
                return Some(result);
            }
            if self.skipping {
                continue;
            }
            if self.buf.len() + 1 >= self.max_len {
                self.buf.clear();
                self.skipping = true;
                return Some(Err(DecodeError::Oversized { max: self.max_len }));
            }
            self.buf.push(byte);
        }
        None
    }
}

/// Iterator returned by `FrameDecoder::feed`.
pub struct Frames<'a> {
    dec: &'a mut FrameDecoder,
    data: &'a [u8],
}

impl Iterator for Frames<'_> {
    type Item = Result<Message, DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.dec.step(&mut self.data)
    }
}
