//! Reader of the shared split layout (`utterances.csv` + `text.f32`, `audio.f32`, `visual.f32`,
//! see `../shared/data/cmu-mosi/README.md`) into a `Recording`, and the loader that accepts
//! either a split folder or a recording file.
//!
//! Every video is one conversation with one speaker (speaker 0); rows keep their CSV order.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::manifest::FEATURE_DIMS;
use crate::recording::{Conversation, Recording, RecordingError, UtteranceRecord};

const FILES: [&str; 3] = ["text.f32", "audio.f32", "visual.f32"];

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
    #[error("{path}: is neither a recording file nor a folder with utterances.csv")]
    Unknown { path: PathBuf },
    #[error("{path}: {source}")]
    Recording { path: PathBuf, source: RecordingError },
}

#[derive(Debug, Deserialize)]
struct Row {
    utt_id: String,
    video_id: String,
    position: u32,
    label_cont: f32,
    label_bin: u8,
}

fn read_rows(path: &Path) -> Result<Vec<Row>, DatasetError> {
    let csv_err = |detail: String| DatasetError::Csv {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| csv_err(e.to_string()))?;
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        let row = row.map_err(|e| csv_err(format!("line {}: {e}", i + 2)))?;
        if !row.label_cont.is_finite() || row.label_bin > 1 {
            return Err(csv_err(format!(
                "line {}: bad label {} / {}",
                i + 2,
                row.label_cont,
                row.label_bin
            )));
        }
        rows.push(row);
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

/// Reads a split folder.
pub fn read_split(dir: &Path) -> Result<Recording, DatasetError> {
    let rows = read_rows(&dir.join("utterances.csv"))?;
    let mut mats = Vec::with_capacity(3);
    for (m, file) in FILES.iter().enumerate() {
        mats.push(read_matrix(&dir.join(file), rows.len(), FEATURE_DIMS[m])?);
    }
    let mut conversations: Vec<Conversation> = Vec::new();
    for (r, row) in rows.into_iter().enumerate() {
        let features: [Option<Vec<f32>>; 3] = std::array::from_fn(|m| {
            let dim = FEATURE_DIMS[m];
            Some(mats[m][r * dim..(r + 1) * dim].to_vec())
        });
        if let Some(m) = (0..3).find(|&m| features[m].iter().flatten().any(|v| !v.is_finite())) {
            return Err(DatasetError::NonFinite {
                path: dir.join(FILES[m]),
                row: r,
                utt: row.utt_id,
            });
        }
        if conversations.last().is_none_or(|c| c.id != row.video_id) {
            conversations.push(Conversation {
                id: row.video_id.clone(),
                utterances: Vec::new(),
            });
        }
        let utt = UtteranceRecord {
            conversation: row.video_id,
            id: row.utt_id,
            speaker: 0,
            position: row.position,
            timestamp_ms: None,
            label_cont: Some(row.label_cont),
            label_bin: Some(row.label_bin),
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
