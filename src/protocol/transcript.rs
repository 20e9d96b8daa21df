//! The `Transcript` message (tag 16): an utterance's text, for a model whose text modality is
//! computed by a frontend (the daemon tokenises and encodes it). `BoundedText` is its UTF-8
//! string of at most `MAX_TRANSCRIPT` bytes, on the heap and sized to its data.
//!
//! Postcard form of `BoundedText`: a `str` (varint byte length, then the UTF-8 bytes), so the
//! layout of no existing message changes and the version stays 2. Decoding refuses a length over
//! `MAX_TRANSCRIPT` and bytes that are not UTF-8 (both `Malformed`); the bytes are borrowed from
//! the (already bounded) frame while they are checked, nothing is allocated before.

use std::fmt;
use std::ops::Deref;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{CapacityError, ConversationId};

/// Longest transcript, in UTF-8 bytes. The encoder reads at most 128 tokens; 2048 bytes hold
/// several times that much text in any script, so no real utterance is cut by the wire.
pub const MAX_TRANSCRIPT: usize = 2048;

/// UTF-8 text of at most `N` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoundedText<const N: usize>(String);

impl<const N: usize> BoundedText<N> {
    /// Copies `s` when it holds at most `N` bytes.
    pub fn new(s: &str) -> Result<Self, CapacityError> {
        if s.len() > N {
            return Err(CapacityError { len: s.len(), cap: N });
        }
        Ok(BoundedText(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> Deref for BoundedText<N> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> Serialize for BoundedText<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

struct TextVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for TextVisitor<N> {
    type Value = BoundedText<N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UTF-8 text of at most {N} bytes")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        BoundedText::new(s).map_err(|e| E::invalid_length(e.len, &self))
    }

    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Self::Value, E> {
        let s = std::str::from_utf8(b).map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(b), &self))?;
        self.visit_str(s)
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedText<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor::<N>)
    }
}

/// Text of one utterance as the sender's speech recogniser gives it.
pub type TranscriptText = BoundedText<MAX_TRANSCRIPT>;

/// The transcript of one utterance, sent instead of its text `Features` to a model whose text
/// modality is a frontend; the daemon computes the text vector from it. Tag 16.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub conversation: ConversationId,
    pub utterance: u32,
    pub speaker: u16,
    /// Sender's clock in microseconds; recorded and replayed, never used for deadlines.
    pub timestamp_us: u64,
    pub text: TranscriptText,
}

/// Builds a transcript text, failing when it exceeds `MAX_TRANSCRIPT` bytes.
pub fn transcript_text(s: &str) -> Option<TranscriptText> {
    TranscriptText::new(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_as_a_str_and_bounded_on_decode() {
        let t: BoundedText<8> = BoundedText::new("héllo").unwrap();
        let bytes = postcard::to_stdvec(&t).unwrap();
        assert_eq!(bytes, postcard::to_stdvec("héllo").unwrap());
        assert_eq!(bytes[0], 6, "byte length, not chars");
        assert_eq!(postcard::from_bytes::<BoundedText<8>>(&bytes).unwrap(), t);
        assert!(
            postcard::from_bytes::<BoundedText<4>>(&bytes).is_err(),
            "6 bytes over 4"
        );
        assert_eq!(BoundedText::<2>::new("abc"), Err(CapacityError { len: 3, cap: 2 }));
    }

    #[test]
    fn invalid_utf8_does_not_decode() {
        assert!(postcard::from_bytes::<BoundedText<8>>(&[2, 0xc3, 0x28]).is_err());
        assert!(postcard::from_bytes::<BoundedText<8>>(&[1, 0xff]).is_err());
        assert_eq!(
            postcard::from_bytes::<BoundedText<8>>(&[2, 0xc3, 0xa9])
                .unwrap()
                .as_str(),
            "é"
        );
    }
}
