//! The pipeline's public types: the window it takes, what it publishes per utterance, the
//! intermediates golden tests read, and its errors.

use thiserror::Error;

use crate::backend::BackendError;
use crate::diffusion::SamplerError;
use crate::model::ModelError;
use crate::multisample::SamplesError;
use crate::spectral::{Spectral, SpectralError};
use crate::tensor::Tensor;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("window holds {n} utterances, the model takes 1 to {w}")]
    WindowSize { n: usize, w: usize },
    #[error("utterance {index}: {modality} has {got} values, expected {want}")]
    FeatureSize {
        index: usize,
        modality: &'static str,
        got: usize,
        want: usize,
    },
    #[error("utterance {index}: {modality} has a non-finite value")]
    NonFinite { index: usize, modality: &'static str },
    #[error("utterance {index}: the model has no {modality} modality (it has {has})")]
    NoSuchModality {
        index: usize,
        modality: &'static str,
        has: String,
    },
    #[error("{part}: produced a non-finite value")]
    NonFiniteOutput { part: &'static str },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Spectral(#[from] SpectralError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error("completion samples: {0}")]
    Samples(#[from] SamplesError),
}

/// One utterance of a window: its speaker and raw (unstandardised) features by
/// `Modality::index`, `None` = missing (always `None` for a modality the model lacks).
#[derive(Debug, Clone, Copy)]
pub struct Utterance<'a> {
    pub speaker: u32,
    pub features: [Option<&'a [f32]>; 3],
}

/// Up to W utterances in spoken order.
#[derive(Debug, Clone, Default)]
pub struct Window<'a> {
    pub utterances: Vec<Utterance<'a>>,
}

/// Result for one utterance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UtteranceOutput {
    /// K calibrated class probabilities, in the manifest's class order.
    pub probs: Vec<f32>,
    /// Argmax of `probs` (the first maximum on ties).
    pub label: usize,
    /// Continuous estimate, when the model has a regression head.
    pub regression: Option<f32>,
    /// Modalities of the model that were missing and were completed, by `Modality::index`.
    pub imputed: [bool; 3],
    /// Raw features by `Modality::index`: observed ones as given, missing ones reconstructed and
    /// destandardised; empty for a modality the model lacks.
    pub features: [Vec<f32>; 3],
}

/// Result for one window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowOutput {
    pub utterances: Vec<UtteranceOutput>,
    /// Whether the diffusion sampler ran (gsdnet with something missing).
    pub sampled: bool,
}

/// Tensors of window 0 of the last call, padded to the model's W with batch 1, named as in
/// the golden cases; `inputs` and `recon` in slot order.
pub struct Intermediates<'a> {
    pub inputs: Vec<Tensor>,
    pub avail: Tensor,
    pub node_mask: Tensor,
    pub h: Tensor,
    pub cond: Tensor,
    pub spectral: &'a Spectral,
    pub lam_obs: Tensor,
    pub x0: Tensor,
    pub lam0: Tensor,
    pub adj_fusion: Tensor,
    pub recon: Vec<Tensor>,
    pub logits: Tensor,
    /// `None` when the model has no regression head.
    pub reg: Option<Tensor>,
    /// The window size N the call ran at, and its fusion rows (windows x samples).
    pub window: usize,
    pub rows: usize,
}
