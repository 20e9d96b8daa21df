//! The engine boundary: one `Backend` trait for a loaded ONNX part, and `load`, the only place
//! that knows which engines were compiled in (the `ort` feature is looked at here and nowhere
//! else).
//!
//! A backend is loaded for one part with fixed input shapes; names and shapes are checked once at
//! load against the manifest's `PartSpec`, so `run` only checks shapes of what it is handed.

use std::path::PathBuf;

use thiserror::Error;

use crate::tensor::{Tensor, TensorError};

pub mod tract;

/// Name and fixed shape of one ONNX input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// One ONNX part as the manifest describes it; inputs and outputs in manifest order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    /// Part name: "encoders", "s_theta", "s_phi", "recon" or "fusion".
    pub name: String,
    pub path: PathBuf,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("{part}: cannot read model file {path}: {source}")]
    Io { part: String, path: PathBuf, source: std::io::Error },
    #[error("{part}: model does not match its manifest: {detail}")]
    Mismatch { part: String, detail: String },
    #[error("{part}: {engine} failed: {detail}")]
    Engine { part: String, engine: &'static str, detail: String },
    #[error("{part}: input {index}: {source}")]
    Input { part: String, index: usize, source: TensorError },
    #[error("{part}: expected {expected} inputs and {expected_out} outputs, got {got} and {got_out}")]
    Arity { part: String, expected: usize, expected_out: usize, got: usize, got_out: usize },
    #[error("backend `{0}` was not compiled into this binary (rebuild with `--features {0}`)")]
    NotCompiled(String),
    #[error("unknown backend `{0}` (known: tract, ort)")]
    Unknown(String),
}

/// A loaded ONNX part ready to run with fixed shapes.
pub trait Backend: Send {
    /// The part's specification (names and shapes) this backend was loaded with.
    fn spec(&self) -> &PartSpec;

    /// What actually executes the part, e.g. "tract (cpu)" or "onnxruntime CUDAExecutionProvider".
    fn provider(&self) -> String;

    /// Runs the part. `inputs` and `outputs` follow the spec's order and shapes; outputs are
    /// written in place so a caller can reuse its buffers across calls.
    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError>;

    /// Why preferred engines or providers are not the one running (e.g. "cuda: <reason>").
    fn provider_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Which engine to load a part with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Tract,
    Ort,
}

impl std::str::FromStr for BackendKind {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tract" => Ok(BackendKind::Tract),
            "ort" | "onnxruntime" => Ok(BackendKind::Ort),
            other => Err(BackendError::Unknown(other.to_string())),
        }
    }
}

/// Engine options that come from the board profile.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// Intra-op threads; 0 lets the engine choose.
    pub threads: usize,
    /// ONNX Runtime only: execution providers in order of preference ("tensorrt", "cuda", "cpu").
    pub providers: Vec<String>,
    /// ONNX Runtime only: path of libonnxruntime.so; falls back to `ORT_DYLIB_PATH`.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime only: a fallback to the CPU provider is an error instead of a warning.
    pub require_accelerator: bool,
    /// ONNX Runtime only: where TensorRT engine and timing caches live.
    pub cache_dir: Option<PathBuf>,
}

/// Backends compiled into this binary.
pub fn compiled() -> &'static [&'static str] {
    if cfg!(feature = "ort") {
        &["tract", "ort"]
    } else {
        &["tract"]
    }
}

/// Loads one part with the chosen engine. The single place where the `ort` feature is checked.
pub fn load(
    kind: BackendKind,
    spec: &PartSpec,
    opts: &BackendOptions,
) -> Result<Box<dyn Backend>, BackendError> {
    match kind {
        BackendKind::Tract => Ok(Box::new(tract::TractBackend::load(spec, opts)?)),
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Box::new(ort::OrtBackend::load(spec, opts)?)),
        #[cfg(not(feature = "ort"))]
        BackendKind::Ort => Err(BackendError::NotCompiled("ort".into())),
    }
}

#[cfg(feature = "ort")]
pub mod ort;

/// The ONNX Runtime library a process uses, as `gsdnet check` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtLibraryInfo {
    pub path: PathBuf,
    pub version: String,
    /// TensorRT version when libnvinfer is loadable.
    pub tensorrt: Option<String>,
}

/// Loads (if needed) and describes the ONNX Runtime library `opts` point at.
pub fn ort_library(opts: &BackendOptions) -> Result<OrtLibraryInfo, BackendError> {
    #[cfg(feature = "ort")]
    {
        ort::library_info(opts)
    }
    #[cfg(not(feature = "ort"))]
    {
        let _ = opts;
        Err(BackendError::NotCompiled("ort".into()))
    }
}

/// Checks call arity and input shapes against the spec (shared by all engines).
pub fn check_call(spec: &PartSpec, inputs: &[&Tensor], outputs: &[Tensor]) -> Result<(), BackendError> {
    if inputs.len() != spec.inputs.len() || outputs.len() != spec.outputs.len() {
        return Err(BackendError::Arity {
            part: spec.name.clone(),
            expected: spec.inputs.len(),
            expected_out: spec.outputs.len(),
            got: inputs.len(),
            got_out: outputs.len(),
        });
    }
    for (index, (t, s)) in inputs.iter().zip(&spec.inputs).enumerate() {
        t.expect_shape(&s.shape)
            .map_err(|source| BackendError::Input { part: spec.name.clone(), index, source })?;
    }
    for (index, (t, s)) in outputs.iter().zip(&spec.outputs).enumerate() {
        t.expect_shape(&s.shape).map_err(|source| BackendError::Input {
            part: format!("{} (output)", spec.name),
            index,
            source,
        })?;
    }
    Ok(())
}
