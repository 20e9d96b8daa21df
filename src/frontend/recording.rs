//! The text frontend over a whole recording (`gsdnet eval` of a model whose text modality is a
//! frontend): every utterance's text vector becomes the embedding of its transcript, computed
//! by the same `TextFrontend` the daemon runs, so offline numbers are the runtime's own.

use std::collections::HashMap;
use std::path::Path;

use super::{FrontendError, TextFrontend};
use crate::dataset::{read_transcripts, DatasetError};
use crate::modality::Modality;
use crate::recording::Recording;

/// `encode_transcripts` with the transcripts of `data`, the split folder `rec` was read from
/// (its transcripts.csv); a recording file carries no transcripts and is refused.
pub fn encode_split(rec: &mut Recording, data: &Path, front: &mut TextFrontend) -> Result<usize, FrontendError> {
    if !data.is_dir() {
        return Err(FrontendError::Data {
            detail: format!(
                "{}: the model's text is a frontend: give a split folder with transcripts.csv",
                data.display()
            ),
        });
    }
    let rows = read_transcripts(data).map_err(|e: DatasetError| FrontendError::Data { detail: e.to_string() })?;
    encode_transcripts(rec, &rows.into_iter().collect(), front)
}

/// Replaces the text features of every utterance of `rec` by the embedding of its transcript
/// (`transcripts`: utterance id -> text). Every utterance needs one: a missing transcript is an
/// error naming it. Returns the number of utterances encoded.
pub fn encode_transcripts(
    rec: &mut Recording,
    transcripts: &HashMap<String, String>,
    front: &mut TextFrontend,
) -> Result<usize, FrontendError> {
    let mut texts = Vec::with_capacity(rec.n_utterances());
    for u in rec.conversations.iter().flat_map(|c| &c.utterances) {
        let text = transcripts.get(&u.id).ok_or_else(|| FrontendError::NoTranscript {
            utterance: u.id.clone(),
        })?;
        texts.push(text.as_str());
    }
    let vectors = front.embed(&texts)?;
    let utterances = rec.conversations.iter_mut().flat_map(|c| c.utterances.iter_mut());
    for (u, v) in utterances.zip(vectors) {
        u.features[Modality::Text.index()] = Some(v);
    }
    Ok(texts.len())
}
