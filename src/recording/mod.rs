//! Recorded sessions: a versioned, append-friendly binary file of conversations and utterances.
//!
//! Layout: an 8-byte header (`b"GSDREC"` + version u16 LE), then records, each
//! `len u32 LE | payload | crc32 u32 LE` where the payload is a postcard-encoded `Record` and the
//! CRC (CRC-32/ISO-HDLC) covers the payload. A writer flushes whole records, so a crash leaves
//! a readable prefix; the reader reports a truncated tail or a corrupt record with its offset.
//!
//! Version 2 (written) carries a class label index per utterance (`label`, any K) next to the
//! optional continuous label; version 1 files (CMU-MOSI's `label_bin`) still read, their binary
//! label becoming the class index. A writer only appends to a file of its own version.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

mod v1;

use v1::RecordV1;
#[cfg(test)]
use v1::UtteranceRecordV1;

pub const MAGIC: &[u8; 6] = b"GSDREC";
/// Version written; `VERSION_V1` files are read too.
pub const VERSION: u16 = 2;
pub const VERSION_V1: u16 = 1;
/// Larger length fields are corruption, not data.
pub const MAX_RECORD: u32 = 16 << 20;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a gsdnet recording (bad magic {found:?})")]
    BadMagic { found: Vec<u8> },
    #[error("recording version {found} is not supported (this build reads versions {VERSION_V1} and {VERSION})")]
    Version { found: u16 },
    #[error("recording version {found} cannot be appended to (this build writes version {VERSION}): start a new file")]
    AppendVersion { found: u16 },
    #[error("recording is truncated at byte {offset}: {complete} complete records before an incomplete one")]
    Truncated { offset: u64, complete: usize },
    #[error("record {index} at byte {offset} is corrupt: {detail}")]
    Corrupt { index: usize, offset: u64, detail: String },
    #[error("utterance {utterance} refers to conversation `{conversation}` that was never started")]
    UnknownConversation { conversation: String, utterance: String },
    #[error("cannot encode record: {0}")]
    Encode(postcard::Error),
}

/// One utterance as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtteranceRecord {
    pub conversation: String,
    pub id: String,
    pub speaker: u32,
    /// Position in the conversation (spoken order).
    pub position: u32,
    /// Milliseconds since the Unix epoch, when known.
    pub timestamp_ms: Option<u64>,
    /// Class label: an index into the model's classes (CMU-MOSI: 1 = non-negative).
    pub label: Option<u32>,
    /// Continuous label (CMU-MOSI sentiment in [-3, 3]), when the data has one.
    pub label_cont: Option<f32>,
    /// Raw features by `Modality::index` (T, A, V); `None` when not captured.
    pub features: [Option<Vec<f32>>; 3],
}

/// One entry of a recording file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// Starts a conversation; utterances name it by `id`.
    Conversation {
        id: String,
        started_ms: Option<u64>,
    },
    Utterance(UtteranceRecord),
}

/// A conversation with its utterances sorted by position.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub utterances: Vec<UtteranceRecord>,
}

/// Conversations in order of appearance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recording {
    pub conversations: Vec<Conversation>,
}

impl Recording {
    /// Groups records into conversations.
    pub fn from_records(records: Vec<Record>) -> Result<Recording, RecordingError> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut conversations: Vec<Conversation> = Vec::new();
        for r in records {
            match r {
                Record::Conversation { id, .. } => {
                    index.entry(id.clone()).or_insert_with(|| {
                        conversations.push(Conversation {
                            id,
                            utterances: Vec::new(),
                        });
                        conversations.len() - 1
                    });
                }
                Record::Utterance(u) => {
                    let Some(&c) = index.get(&u.conversation) else {
                        return Err(RecordingError::UnknownConversation {
                            conversation: u.conversation,
                            utterance: u.id,
                        });
                    };
                    conversations[c].utterances.push(u);
                }
            }
        }
        for c in &mut conversations {
            c.utterances.sort_by_key(|u| u.position);
        }
        Ok(Recording { conversations })
    }

    /// Records that reproduce this recording.
    pub fn to_records(&self) -> impl Iterator<Item = Record> + '_ {
        self.conversations.iter().flat_map(|c| {
            std::iter::once(Record::Conversation {
                id: c.id.clone(),
                started_ms: None,
            })
            .chain(c.utterances.iter().cloned().map(Record::Utterance))
        })
    }

    pub fn n_utterances(&self) -> usize {
        self.conversations.iter().map(|c| c.utterances.len()).sum()
    }

    /// Reads a whole file; a truncated tail is an error.
    pub fn read(path: &Path) -> Result<Recording, RecordingError> {
        let (records, tail) = read_prefix(path)?;
        match tail {
            Some(e) => Err(e),
            None => Recording::from_records(records),
        }
    }

    /// Writes a whole file.
    pub fn write(&self, path: &Path) -> Result<(), RecordingError> {
        let mut w = RecordingWriter::create(path)?;
        for r in self.to_records() {
            w.append(&r)?;
        }
        w.flush()
    }
}

/// Reads every complete record; the error after the last good record, if any, comes back
/// separately (a crashed writer leaves a usable prefix). Header errors are returned directly.
pub fn read_prefix(path: &Path) -> Result<(Vec<Record>, Option<RecordingError>), RecordingError> {
    let io = |source| RecordingError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut r = BufReader::new(File::open(path).map_err(io)?);
    let version = read_header(&mut r).map_err(|e| match e {
        RecordingError::Io { source, .. } => io(source),
        e => e,
    })?;
    let mut records = Vec::new();
    let mut offset = 8u64;
    loop {
        match read_record(&mut r, offset, records.len(), version) {
            Ok(None) => return Ok((records, None)),
            Ok(Some((rec, len))) => {
                records.push(rec);
                offset += len;
            }
            Err(RecordingError::Io { source, .. }) => return Err(io(source)),
            Err(e) => return Ok((records, Some(e))),
        }
    }
}

/// The version field of a recording's header (after checking its magic).
fn header_version(path: &Path) -> Result<u16, RecordingError> {
    let io = |source| RecordingError::Io {
        path: path.to_path_buf(),
        source,
    };
    read_header(&mut File::open(path).map_err(io)?).map_err(|e| match e {
        RecordingError::Io { source, .. } => io(source),
        e => e,
    })
}

/// Reads and checks the 8-byte header; returns its version.
fn read_header(r: &mut impl Read) -> Result<u16, RecordingError> {
    let mut header = [0u8; 8];
    let got = read_full(r, &mut header).map_err(|source| RecordingError::Io {
        path: PathBuf::new(),
        source,
    })?;
    if got < 6 || &header[..6] != MAGIC {
        return Err(RecordingError::BadMagic {
            found: header[..got.min(6)].to_vec(),
        });
    }
    if got < 8 {
        return Err(RecordingError::Truncated {
            offset: got as u64,
            complete: 0,
        });
    }
    let version = u16::from_le_bytes([header[6], header[7]]);
    if version != VERSION && version != VERSION_V1 {
        return Err(RecordingError::Version { found: version });
    }
    Ok(version)
}

/// Reads up to `buf.len()` bytes; fewer only at end of file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// One record at `offset`: `Ok(None)` at a clean end of file, else the record and its size.
fn read_record(
    r: &mut impl Read,
    offset: u64,
    index: usize,
    version: u16,
) -> Result<Option<(Record, u64)>, RecordingError> {
    let io = |source| RecordingError::Io {
        path: PathBuf::new(),
        source,
    };
    let truncated = RecordingError::Truncated {
        offset,
        complete: index,
    };
    let mut len = [0u8; 4];
    match read_full(r, &mut len).map_err(io)? {
        0 => return Ok(None),
        4 => {}
        _ => return Err(truncated),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_RECORD {
        return Err(RecordingError::Corrupt {
            index,
            offset,
            detail: format!("length {len} exceeds {MAX_RECORD}"),
        });
    }
    let mut body = vec![0u8; len as usize + 4];
    if read_full(r, &mut body).map_err(io)? < body.len() {
        return Err(truncated);
    }
    let (payload, crc) = body.split_at(len as usize);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = CRC.checksum(payload);
    if stored != actual {
        return Err(RecordingError::Corrupt {
            index,
            offset,
            detail: format!("crc32 {actual:08x}, stored {stored:08x}"),
        });
    }
    let decoded = if version == VERSION_V1 {
        postcard::from_bytes::<RecordV1>(payload).map(Record::from)
    } else {
        postcard::from_bytes::<Record>(payload)
    };
    let rec = decoded.map_err(|e| RecordingError::Corrupt {
        index,
        offset,
        detail: format!("cannot decode: {e}"),
    })?;
    Ok(Some((rec, 8 + u64::from(len))))
}

/// Appends records to a file; each `append` writes one whole record.
pub struct RecordingWriter<W: Write> {
    out: W,
    path: PathBuf,
}

impl RecordingWriter<BufWriter<File>> {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path) -> Result<Self, RecordingError> {
        let file = File::create(path).map_err(|source| RecordingError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(BufWriter::new(file), path)
    }
}

impl RecordingWriter<BufWriter<File>> {
    /// Opens an existing recording to append to it (a recorder restarting after a crash). An
    /// incomplete or corrupt tail is cut off at the start of its record, with a warning; a bad
    /// header is an error. Returns the writer and the number of records kept.
    pub fn open_append(path: &Path) -> Result<(Self, usize), RecordingError> {
        let io = |source| RecordingError::Io {
            path: path.to_path_buf(),
            source,
        };
        let found = header_version(path)?;
        if found != VERSION {
            return Err(RecordingError::AppendVersion { found });
        }
        let (records, tail) = read_prefix(path)?;
        let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
        let end = match tail {
            None => file.metadata().map_err(io)?.len(),
            Some(RecordingError::Truncated { offset, .. }) | Some(RecordingError::Corrupt { offset, .. }) => {
                log::warn!(
                    "{}: dropping the tail from byte {offset} before appending",
                    path.display()
                );
                file.set_len(offset).map_err(io)?;
                offset
            }
            Some(other) => return Err(other),
        };
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(end)).map_err(io)?;
        Ok((
            RecordingWriter {
                out: BufWriter::new(file),
                path: path.to_path_buf(),
            },
            records.len(),
        ))
    }
}

impl<W: Write> RecordingWriter<W> {
    /// Writes the header to `out`; `path` names it in errors.
    pub fn new(mut out: W, path: &Path) -> Result<Self, RecordingError> {
        let io = |source| RecordingError::Io {
            path: path.to_path_buf(),
            source,
        };
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
        Ok(RecordingWriter {
            out,
            path: path.to_path_buf(),
        })
    }

    /// Encodes and writes one record (not flushed; call `flush` at a safe point).
    pub fn append(&mut self, record: &Record) -> Result<(), RecordingError> {
        let payload = postcard::to_stdvec(record).map_err(RecordingError::Encode)?;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD)
            .ok_or(RecordingError::Encode(postcard::Error::SerializeBufferFull))?;
        let io = |source| RecordingError::Io {
            path: self.path.clone(),
            source,
        };
        self.out.write_all(&len.to_le_bytes()).map_err(io)?;
        self.out.write_all(&payload).map_err(io)?;
        self.out.write_all(&CRC.checksum(&payload).to_le_bytes()).map_err(io)
    }

    pub fn flush(&mut self) -> Result<(), RecordingError> {
        self.out.flush().map_err(|source| RecordingError::Io {
            path: self.path.clone(),
            source,
        })
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Recording {
        let utt = |i: u32| UtteranceRecord {
            conversation: "c1".into(),
            id: format!("c1_{i}"),
            speaker: i % 2,
            position: i,
            timestamp_ms: Some(1000 + u64::from(i)),
            label: Some(u32::from(i > 1)),
            label_cont: Some(0.5 * i as f32 - 1.0),
            features: [Some(vec![i as f32; 100]), None, Some(vec![1.5; 100])],
        };
        Recording {
            conversations: vec![Conversation {
                id: "c1".into(),
                utterances: (0..4).map(utt).collect(),
            }],
        }
    }

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.gsdrec");
        let rec = sample();
        rec.write(&path).unwrap();
        assert_eq!(Recording::read(&path).unwrap(), rec);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = Recording::read(&path).unwrap_err();
        assert!(matches!(err, RecordingError::Truncated { complete: 4, .. }), "{err}");
        let (prefix, tail) = read_prefix(&path).unwrap();
        assert_eq!(prefix.len(), 4);
        assert!(tail.is_some());
    }

    #[test]
    fn append_after_a_crash_keeps_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.gsdrec");
        let rec = sample();
        rec.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let (mut w, kept) = RecordingWriter::open_append(&path).unwrap();
        assert_eq!(kept, 4);
        let last = rec.conversations[0].utterances[3].clone();
        w.append(&Record::Utterance(last)).unwrap();
        w.flush().unwrap();
        assert_eq!(Recording::read(&path).unwrap(), rec);
    }

    #[test]
    fn flipped_bit_is_caught_by_crc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.gsdrec");
        sample().write(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = Recording::read(&path).unwrap_err();
        assert!(matches!(err, RecordingError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn header_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.gsdrec");
        std::fs::write(&path, b"hello world").unwrap();
        assert!(matches!(Recording::read(&path), Err(RecordingError::BadMagic { .. })));
        std::fs::write(&path, b"GSDREC\x09\x00").unwrap();
        assert!(matches!(
            Recording::read(&path),
            Err(RecordingError::Version { found: 9 })
        ));
        std::fs::write(&path, b"GSDREC\x01\x00").unwrap();
        assert_eq!(Recording::read(&path).unwrap(), Recording::default());
    }

    #[test]
    fn version_1_files_read_and_are_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.gsdrec");
        let v1 = [
            RecordV1::Conversation {
                id: "c".into(),
                started_ms: None,
            },
            RecordV1::Utterance(UtteranceRecordV1 {
                conversation: "c".into(),
                id: "c_0".into(),
                speaker: 0,
                position: 0,
                timestamp_ms: None,
                label_cont: Some(-1.5),
                label_bin: Some(0),
                features: [Some(vec![0.5; 3]), None, None],
            }),
        ];
        let mut bytes = b"GSDREC\x01\x00".to_vec();
        for r in &v1 {
            let payload = postcard::to_stdvec(r).unwrap();
            bytes.extend((payload.len() as u32).to_le_bytes());
            bytes.extend(&payload);
            bytes.extend(CRC.checksum(&payload).to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let rec = Recording::read(&path).unwrap();
        let u = &rec.conversations[0].utterances[0];
        assert_eq!((u.label, u.label_cont), (Some(0), Some(-1.5)));
        assert_eq!(u.features[0].as_deref(), Some(&[0.5f32; 3][..]));
        assert!(matches!(
            RecordingWriter::open_append(&path),
            Err(RecordingError::AppendVersion { found: 1 })
        ));
    }
}
