//! Frontends: modalities a model computes from raw input instead of taking feature vectors.
//! The one kind is the text frontend, a sentence encoder (all-MiniLM-L6-v2): a transcript is
//! tokenised with the folder's tokenizer.json (`tokenize`), run through `encoder.onnx` on the
//! same `Backend` as the model's parts and mean-pooled and L2-normalised (`encoder`), giving
//! the model's text vector. The folder and its pins are `frontend.toml` (`config`); a model
//! names its folder in its manifest (`[frontends.text]`).
//!
//! Several texts are embedded per encoder call: sorted by token count, cut into batches of at
//! most `max_batch`, each padded to the smallest seq bucket that holds its longest row and to a
//! power-of-two row count, so an engine that builds one plan per shape (tract) builds a bounded
//! number of them. Padding never changes a row's embedding (the encoder masks padded keys,
//! pooling skips them, filler rows are dropped).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::backend::{BackendError, BackendKind, BackendOptions};
use crate::manifest::Manifest;
use crate::modality::Modality;

pub mod config;
pub mod encoder;
pub mod recording;
pub mod tokenize;

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

/// Token counts a batch is padded to (then `max_tokens`): steps of 8 up to 32 tokens, where most
/// utterances are (a 20-token transcript runs at 24; at 32 tract took 1.6x the time), coarser
/// above, so tract builds at most 8 seq x 5 batch plans (measured about 12 MB each).
pub const SEQ_BUCKETS: [usize; 7] = [8, 16, 24, 32, 48, 64, 96];
/// Most texts in one encoder call.
pub const MAX_BATCH: usize = 16;

/// A loaded text frontend.
pub struct TextFrontend {
    config: FrontendConfig,
    tokenizer: TextTokenizer,
    encoder: TextEncoder,
    buckets: Vec<usize>,
    max_batch: usize,
}

impl TextFrontend {
    /// Loads the frontend in `dir` (frontend.toml, the pinned files verified) with the engine
    /// `kind`.
    pub fn load(dir: &Path, kind: BackendKind, opts: &BackendOptions) -> Result<TextFrontend, FrontendError> {
        let config = FrontendConfig::load(dir, true)?;
        let tokenizer = TextTokenizer::load(&config.tokenizer, config.max_tokens)?;
        let encoder = TextEncoder::load(&config, kind, opts)?;
        let mut buckets: Vec<usize> = SEQ_BUCKETS.iter().copied().filter(|&b| b < config.max_tokens).collect();
        buckets.push(config.max_tokens);
        log::info!("text frontend {} on {}", dir.display(), encoder.provider());
        Ok(TextFrontend {
            config,
            tokenizer,
            encoder,
            buckets,
            max_batch: MAX_BATCH,
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
        self.max_batch = n.max(1);
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Token ids of `text` as the encoder gets them ([CLS] ... [SEP], truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, FrontendError> {
        self.tokenizer.ids(text)
    }

    /// The seq bucket a row of `tokens` tokens runs at.
    pub fn bucket(&self, tokens: usize) -> usize {
        self.buckets
            .iter()
            .copied()
            .find(|&b| b >= tokens)
            .unwrap_or(self.config.max_tokens)
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
        for chunk in order.chunks(self.max_batch) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| rows[i].clone()).collect();
            let longest = batch.iter().map(Vec::len).max().unwrap_or(1);
            let call = chunk.len().next_power_of_two().min(self.max_batch.next_power_of_two());
            let tokens = TokenBatch::pad(&batch, self.bucket(longest), call, self.tokenizer.pad_id());
            flat.resize(chunk.len() * hidden, 0.0);
            self.encoder.embed(&tokens, &mut flat)?;
            for (&i, v) in chunk.iter().zip(flat.chunks_exact(hidden)) {
                out[i] = v.to_vec();
            }
        }
        Ok(out)
    }

    /// Builds the encoder's plans for calls of up to `rows` texts (rounded as `embed` rounds
    /// them) at every seq bucket, ahead of the first call (engines that build plans lazily
    /// otherwise do it on first use).
    pub fn warm(&mut self, rows: usize) -> Result<(), FrontendError> {
        let mut batch = 1;
        while batch <= rows.min(self.max_batch).next_power_of_two() {
            for seq in self.buckets.clone() {
                self.encoder.prepare(batch, seq)?;
            }
            batch *= 2;
        }
        Ok(())
    }
}
