//! Reader of the shared split layouts into a `Recording`, and the loader that accepts either a
//! split folder or a recording file.
//!
//! Two layouts, told apart by the header of `utterances.csv`:
//! - CMU-MOSI (`utt_id,video_id,position,...,label_cont,label_bin`): one conversation per video,
//!   one speaker (0), class label = `label_bin`, continuous label = `label_cont`;
//! - IEMOCAP (`utt_id,conversation_id,position,speaker,speaker_id,label,label_name`): speakers
//!   numbered by first appearance within their conversation (F/M -> 0/1), class label = `label`,
//!   no continuous label.
//!
//! Modalities are the `text.f32`, `audio.f32`, `visual.f32` files present (row-major float32,
//! one row per CSV line); a file's width is its size / rows / 4. Which of them a model uses is
//! the model's business (`eval` drops the others and refuses a split that lacks one it needs).
//! Rows keep their CSV order within a conversation, sorted by position.
//!
//! `transcripts.csv` (`utt_id,text`, IEMOCAP) holds the utterances' transcripts, the input of a
//! model whose text modality is a frontend (`read_transcripts`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::capacity::MAX_FEATURE_SIZE;
use crate::modality::Modality;
use crate::recording::{Conversation, Recording, RecordingError, UtteranceRecord};

#[derive(Debug, Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {detail}")]
    Csv { path: PathBuf, detail: String },
    #[error("{path}: holds {bytes} bytes, expected {rows} rows x {dim} float32 = {expected}")]
    Size {
        path: PathBuf,
        bytes: usize,
        rows: usize,
        dim: usize,
        expected: usize,
    },
    #[error("{path}: row {row} ({utt}) has a non-finite value")]
    NonFinite { path: PathBuf, row: usize, utt: String },
    #[error("{path}: {bytes} bytes is not {rows} rows of 1 to 2048 float32 values")]
    Width { path: PathBuf, bytes: usize, rows: usize },
    #[error("{path}: no modality file (text.f32, audio.f32, visual.f32)")]
    NoFeatures { path: PathBuf },
    #[error("{path}: is neither a recording file nor a folder with utterances.csv")]
    Unknown { path: PathBuf },
    #[error("{path}: {source}")]
    Recording { path: PathBuf, source: RecordingError },
}

/// One CSV row of either layout; which columns are present tells the layout.
#[derive(Debug, Deserialize)]
struct Row {
    utt_id: String,
    video_id: Option<String>,
    conversation_id: Option<String>,
    position: u32,
    speaker: Option<String>,
    label: Option<u32>,
    label_cont: Option<f32>,
    label_bin: Option<u8>,
}

/// A row checked against its layout.
struct Parsed {
    utt_id: String,
    conversation: String,
    position: u32,
    speaker: Option<String>,
    label: u32,
    label_cont: Option<f32>,
}

fn parse_row(row: Row, line: usize) -> Result<Parsed, String> {
    let (conversation, label, label_cont) = match (row.video_id, row.conversation_id) {
        (Some(v), None) => {
            let (Some(cont), Some(bin)) = (row.label_cont, row.label_bin) else {
                return Err(format!("line {line}: a video_id row needs label_cont and label_bin"));
            };
            if !cont.is_finite() || bin > 1 {
                return Err(format!("line {line}: bad label {cont} / {bin}"));
            }
            (v, u32::from(bin), Some(cont))
        }
        (None, Some(c)) => {
            let label = row
                .label
                .ok_or_else(|| format!("line {line}: a conversation_id row needs a label"))?;
            (c, label, None)
        }
        _ => {
            return Err(format!(
                "line {line}: needs exactly one of video_id (CMU-MOSI) or conversation_id (IEMOCAP)"
            ))
        }
    };
    Ok(Parsed {
        utt_id: row.utt_id,
        conversation,
        position: row.position,
        speaker: row.speaker,
        label,
        label_cont,
    })
}

fn read_rows(path: &Path) -> Result<Vec<Parsed>, DatasetError> {
    let csv_err = |detail: String| DatasetError::Csv {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| csv_err(e.to_string()))?;
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        let row = row.map_err(|e| csv_err(format!("line {}: {e}", i + 2)))?;
        rows.push(parse_row(row, i + 2).map_err(csv_err)?);
    }
    Ok(rows)
}

fn read_matrix(path: &Path, rows: usize, dim: usize) -> Result<Vec<f32>, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let expected = rows * dim * 4;
    if bytes.len() != expected {
        return Err(DatasetError::Size {
            path: path.to_path_buf(),
            bytes: bytes.len(),
            rows,
            dim,
            expected,
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Width of a modality file of `rows` rows, `None` when the file is absent.
fn file_width(path: &Path, rows: usize) -> Result<Option<usize>, DatasetError> {
    let bytes = match std::fs::metadata(path) {
        Ok(meta) => meta.len() as usize,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DatasetError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let dim = bytes / 4 / rows.max(1);
    if rows == 0 || dim == 0 || dim > MAX_FEATURE_SIZE || bytes != rows * dim * 4 {
        return Err(DatasetError::Width {
            path: path.to_path_buf(),
            bytes,
            rows,
        });
    }
    Ok(Some(dim))
}

/// Speaker index of `speaker` within conversation `conv`: numbered by first appearance (0 when
/// the layout has no speaker column).
fn speaker_index(seen: &mut HashMap<String, Vec<String>>, conv: &str, speaker: Option<&str>) -> u32 {
    let Some(s) = speaker else { return 0 };
    let names = seen.entry(conv.to_string()).or_default();
    let at = names.iter().position(|n| n == s).unwrap_or_else(|| {
        names.push(s.to_string());
        names.len() - 1
    });
    at as u32
}

/// Reads a split folder of either layout.
pub fn read_split(dir: &Path) -> Result<Recording, DatasetError> {
    let rows = read_rows(&dir.join("utterances.csv"))?;
    let mut mats: [Option<(usize, Vec<f32>)>; 3] = Default::default();
    for m in Modality::ALL {
        let path = dir.join(format!("{}.f32", m.name()));
        if let Some(dim) = file_width(&path, rows.len())? {
            mats[m.index()] = Some((dim, read_matrix(&path, rows.len(), dim)?));
        }
    }
    if mats.iter().all(Option::is_none) {
        return Err(DatasetError::NoFeatures {
            path: dir.to_path_buf(),
        });
    }
    let mut conversations: Vec<Conversation> = Vec::new();
    let mut speakers = HashMap::new();
    for (r, row) in rows.into_iter().enumerate() {
        let features: [Option<Vec<f32>>; 3] =
            std::array::from_fn(|m| mats[m].as_ref().map(|(dim, v)| v[r * dim..(r + 1) * dim].to_vec()));
        if let Some(m) = (0..3).find(|&m| features[m].iter().flatten().any(|v| !v.is_finite())) {
            return Err(DatasetError::NonFinite {
                path: dir.join(format!("{}.f32", Modality::ALL[m].name())),
                row: r,
                utt: row.utt_id,
            });
        }
        if conversations.last().is_none_or(|c| c.id != row.conversation) {
            conversations.push(Conversation {
                id: row.conversation.clone(),
                utterances: Vec::new(),
            });
        }
        let speaker = speaker_index(&mut speakers, &row.conversation, row.speaker.as_deref());
        let utt = UtteranceRecord {
            conversation: row.conversation,
            id: row.utt_id,
            speaker,
            position: row.position,
            timestamp_ms: None,
            label: Some(row.label),
            label_cont: row.label_cont,
            features,
        };
        if let Some(c) = conversations.last_mut() {
            c.utterances.push(utt);
        }
    }
    for c in &mut conversations {
        c.utterances.sort_by_key(|u| u.position);
    }
    Ok(Recording { conversations })
}

#[derive(Debug, Deserialize)]
struct TranscriptRow {
    utt_id: String,
    text: String,
}

/// `(utt_id, text)` of every row of `dir/transcripts.csv`, in file order.
pub fn read_transcripts(dir: &Path) -> Result<Vec<(String, String)>, DatasetError> {
    let path = dir.join("transcripts.csv");
    let csv_err = |detail: String| DatasetError::Csv {
        path: path.clone(),
        detail,
    };
    let mut reader = csv::Reader::from_path(&path).map_err(|e| csv_err(e.to_string()))?;
    reader
        .deserialize::<TranscriptRow>()
        .enumerate()
        .map(|(i, row)| {
            row.map(|r| (r.utt_id, r.text))
                .map_err(|e| csv_err(format!("line {}: {e}", i + 2)))
        })
        .collect()
}

/// Loads a recording file or a split folder.
pub fn load(path: &Path) -> Result<Recording, DatasetError> {
    if path.is_dir() {
        if path.join("utterances.csv").is_file() {
            return read_split(path);
        }
        return Err(DatasetError::Unknown {
            path: path.to_path_buf(),
        });
    }
    Recording::read(path).map_err(|e| match e {
        RecordingError::Io { source, .. } => DatasetError::Io {
            path: path.to_path_buf(),
            source,
        },
        source => DatasetError::Recording {
            path: path.to_path_buf(),
            source,
        },
    })
}
