//! Frontends: modalities a model computes from raw input instead of taking feature vectors.
//! The one kind is the text frontend, a sentence encoder (all-MiniLM-L6-v2): a transcript is
//! tokenised with the folder's tokenizer.json (`tokenize`), run through `encoder.onnx` on the
//! same `Backend` as the model's parts and mean-pooled and L2-normalised (`encoder`), giving
//! the model's text vector. The folder and its pins are `frontend.toml` (`config`); a model
//! names its folder in its manifest (`[frontends.text]`).
//!
//! Several texts are embedded per encoder call: sorted by token count, cut into batches of at
//! most `max_batch`, each padded to the smallest seq bucket that holds its longest row and to a
//! power-of-two row count (`buckets`), so the encoder only ever sees a small, known set of shapes
//! and `warm` readies all of them ahead (the daemon does before READY). On tract the encoder is
//! one plan for every shape (`tract_plan`). A row never depends on the rows it is batched with
//! (the encoder masks padded keys, pooling skips them, filler rows are dropped); padded to
//! another seq bucket than alone it can move in its last bits (tested in `tests`).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::backend::{BackendError, BackendKind, BackendOptions};
use crate::manifest::Manifest;
use crate::modality::Modality;

pub mod buckets;
pub mod config;
pub mod encoder;
pub mod recording;
pub mod tokenize;
pub mod tract_plan;

pub use buckets::{Buckets, MAX_BATCH, SEQ_BUCKETS};
pub use config::{FrontendConfig, SENTENCE_ENCODER, SETUP_COMMAND};
pub use encoder::{mean_pool, TextEncoder};
pub use tokenize::{TextTokenizer, TokenBatch};

#[derive(Debug, Error)]
pub enum FrontendError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("{file} is missing: run `{setup}` to set up the text frontend")]
    Missing { file: PathBuf, setup: &'static str },
    #[error("sha256 of {file} is {actual}, frontend.toml pins {expected}: run `{setup}` again")]
    Sha256 {
        file: PathBuf,
        expected: String,
        actual: String,
        setup: &'static str,
    },
    #[error("{path}: cannot load the tokenizer: {detail}")]
    Tokenizer { path: PathBuf, detail: String },
    #[error("cannot tokenise: {detail}")]
    Tokenize { detail: String },
    #[error("{detail}")]
    Data { detail: String },
    #[error("utterance `{utterance}` has no transcript (transcripts.csv)")]
    NoTranscript { utterance: String },
    #[error("the model's text modality has {model} values, the frontend's encoder gives {frontend}")]
    Width { model: usize, frontend: usize },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A loaded text frontend.
pub struct TextFrontend {
    config: FrontendConfig,
    tokenizer: TextTokenizer,
    encoder: TextEncoder,
    buckets: Buckets,
}

impl TextFrontend {
    /// Loads the frontend in `dir` (frontend.toml, the pinned files verified) with the engine
    /// `kind`.
    pub fn load(dir: &Path, kind: BackendKind, opts: &BackendOptions) -> Result<TextFrontend, FrontendError> {
        let config = FrontendConfig::load(dir, true)?;
        let tokenizer = TextTokenizer::load(&config.tokenizer, config.max_tokens)?;
        let encoder = TextEncoder::load(&config, kind, opts)?;
        let buckets = Buckets::new(config.max_tokens);
        log::info!("text frontend {} on {}", dir.display(), encoder.provider());
        Ok(TextFrontend {
            config,
            tokenizer,
            encoder,
            buckets,
        })
    }

    /// The text frontend `manifest` declares (`[frontends.text]`), loaded and checked against
    /// the model's text size; `None` when the model takes text vectors.
    pub fn for_manifest(
        manifest: &Manifest,
        kind: BackendKind,
        opts: &BackendOptions,
    ) -> Result<Option<TextFrontend>, FrontendError> {
        let Some(r) = &manifest.text_frontend else {
            return Ok(None);
        };
        let front = TextFrontend::load(&r.dir, kind, opts)?;
        let model = manifest.modalities.size(Modality::Text).unwrap_or(0);
        if model != front.hidden() {
            return Err(FrontendError::Width {
                model,
                frontend: front.hidden(),
            });
        }
        Ok(Some(front))
    }

    pub fn config(&self) -> &FrontendConfig {
        &self.config
    }

    /// Embedding width.
    pub fn hidden(&self) -> usize {
        self.config.hidden
    }

    /// What runs the encoder.
    pub fn provider(&self) -> String {
        self.encoder.provider()
    }

    /// Most texts per encoder call (at least 1).
    pub fn set_max_batch(&mut self, n: usize) {
        self.buckets.set_max_batch(n);
    }

    pub fn max_batch(&self) -> usize {
        self.buckets.max_batch()
    }

    /// The shapes the encoder is called at.
    pub fn buckets(&self) -> &Buckets {
        &self.buckets
    }

    /// Token ids of `text` as the encoder gets them ([CLS] ... [SEP], truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, FrontendError> {
        self.tokenizer.ids(text)
    }

    /// The seq bucket a row of `tokens` tokens runs at.
    pub fn bucket(&self, tokens: usize) -> usize {
        self.buckets.bucket(tokens)
    }

    /// One embedding (`hidden` values) per text, in order.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, FrontendError> {
        let rows = texts
            .iter()
            .map(|t| self.tokenizer.ids(t))
            .collect::<Result<Vec<_>, _>>()?;
        self.embed_tokens(&rows)
    }

    /// `embed` of texts already tokenised (`token_ids`).
    pub fn embed_tokens(&mut self, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, FrontendError> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut out = vec![Vec::new(); rows.len()];
        let hidden = self.config.hidden;
        let mut flat = Vec::new();
        for chunk in order.chunks(self.buckets.max_batch()) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| rows[i].clone()).collect();
            let longest = batch.iter().map(Vec::len).max().unwrap_or(1);
            let (call, seq) = self.buckets.call_shape(chunk.len(), longest);
            let tokens = TokenBatch::pad(&batch, seq, call, self.tokenizer.pad_id());
            flat.resize(chunk.len() * hidden, 0.0);
            self.encoder.embed(&tokens, &mut flat)?;
            for (&i, v) in chunk.iter().zip(flat.chunks_exact(hidden)) {
                out[i] = v.to_vec();
            }
        }
        Ok(out)
    }

    /// Readies the encoder for every call of up to `rows` texts (`Buckets::shapes`): the engine
    /// prepares each shape (tract's one plan needs nothing, ONNX Runtime binds its buffers), then
    /// one call runs so the first transcript does not pay the engine's first run. Returns how
    /// many shapes were prepared.
    pub fn warm(&mut self, rows: usize) -> Result<usize, FrontendError> {
        let shapes = self.buckets.shapes(rows);
        for &(batch, seq) in &shapes {
            self.encoder.prepare(batch, seq)?;
        }
        self.embed(&[""])?;
        Ok(shapes.len())
    }
}

/// The repository's frontend folder's config, or None (with a note) before the set-up
/// (`SETUP_COMMAND`): tests that need the encoder skip then.
#[cfg(test)]
pub(crate) fn test_config() -> Option<FrontendConfig> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/frontends/all-minilm-l6-v2");
    match FrontendConfig::load(&dir, false) {
        Ok(c) => Some(c),
        Err(e @ FrontendError::Missing { .. }) => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}

#[cfg(test)]
mod tests;
