//! The engine boundary: one `Backend` trait for a loaded ONNX part, and `load`, the only place
//! that knows which engines were compiled in (the `ort` feature is looked at here and nowhere
//! else).
//!
//! A backend is loaded for one part; names and shapes are checked once at load against the
//! manifest's `PartSpec`, so `run` only checks shapes of what it is handed. A part's axes are
//! fixed or one of the symbolic axes (`Axis::Batch`, `Axis::Window`, `Axis::Seq`); one call binds
//! each symbol to one size for all its inputs and outputs (`check_call`), and an engine may
//! specialise (and cache) its plan per bound `Shape`.
//!
//! Inputs are float32 (`Tensor`) or int64 (`TensorI64`, the text encoder's token ids and mask),
//! as each input's `TensorSpec::dtype` says; outputs are float32. `Backend::run` takes float32
//! inputs (every GSDNet part), `Backend::run_typed` any (`Input`); engines implement the latter.

use std::path::PathBuf;

use thiserror::Error;

use crate::tensor::{Tensor, TensorI64};

pub mod provider;
pub mod rows;
pub mod tract;

pub use provider::ProviderKind;

/// What one axis of a part's input or output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Always the size in `TensorSpec::shape`.
    Fixed,
    /// `"batch"`: windows of one call (1 in `TensorSpec::shape`).
    Batch,
    /// `"window"`: utterance rows of every window of the call (W in `TensorSpec::shape`).
    Window,
    /// `"seq"`: token positions of the text encoder (its most, `max_tokens`, in
    /// `TensorSpec::shape`).
    Seq,
}

/// The sizes one call binds the symbolic axes to (0: the part has no such axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub batch: usize,
    pub window: usize,
    pub seq: usize,
}

impl Shape {
    /// Batch and window of a GSDNet part (no token axis).
    pub fn windows(batch: usize, window: usize) -> Shape {
        Shape { batch, window, seq: 0 }
    }
}

/// Element type of a part's input (outputs are always float32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F32,
    I64,
}

impl ElementType {
    /// ONNX's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "float32",
            ElementType::I64 => "int64",
        }
    }
}

/// One input of a call, of either element type.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    F32(&'a Tensor),
    I64(&'a TensorI64),
}

impl Input<'_> {
    pub fn shape(&self) -> &[usize] {
        match self {
            Input::F32(t) => t.shape(),
            Input::I64(t) => t.shape(),
        }
    }

    pub fn dtype(&self) -> ElementType {
        match self {
            Input::F32(_) => ElementType::F32,
            Input::I64(_) => ElementType::I64,
        }
    }
}

/// The inputs of one call as `Input`s, without a heap allocation (a part has at most 8).
pub type Inputs<'a> = heapless::Vec<Input<'a>, 8>;

/// Wraps float32 inputs; more than 8 is an `Arity` error.
pub fn f32_inputs<'a>(spec: &PartSpec, inputs: &[&'a Tensor]) -> Result<Inputs<'a>, BackendError> {
    let mut v = Inputs::new();
    for &t in inputs {
        v.push(Input::F32(t)).map_err(|_| arity(spec, inputs.len(), 0))?;
    }
    Ok(v)
}

fn arity(spec: &PartSpec, got: usize, got_out: usize) -> BackendError {
    BackendError::Arity {
        part: spec.name.clone(),
        expected: spec.inputs.len(),
        expected_out: spec.outputs.len(),
        got,
        got_out,
    }
}

/// Name, element type and shape of one ONNX input or output: `shape` is the shape at batch 1
/// and the model's window W (or most tokens); `axes` (same length) says which axes are symbolic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub axes: Vec<Axis>,
    pub dtype: ElementType,
}

impl TensorSpec {
    /// A float32 spec whose every axis is fixed.
    pub fn fixed(name: &str, shape: &[usize]) -> TensorSpec {
        TensorSpec::new(name, shape, &vec![Axis::Fixed; shape.len()])
    }

    /// A float32 spec with the given axes (`shape` and `axes` of the same length).
    pub fn new(name: &str, shape: &[usize], axes: &[Axis]) -> TensorSpec {
        TensorSpec {
            name: name.to_string(),
            shape: shape.to_vec(),
            axes: axes.to_vec(),
            dtype: ElementType::F32,
        }
    }

    /// The same spec with element type `dtype`.
    pub fn with_dtype(self, dtype: ElementType) -> TensorSpec {
        TensorSpec { dtype, ..self }
    }

    /// The concrete shape at `at` (fixed axes as in `shape`).
    pub fn shape_at(&self, at: Shape) -> Vec<usize> {
        self.shape
            .iter()
            .zip(&self.axes)
            .map(|(&d, a)| match a {
                Axis::Fixed => d,
                Axis::Batch => at.batch,
                Axis::Window => at.window,
                Axis::Seq => at.seq,
            })
            .collect()
    }

    /// Whether any axis is symbolic.
    pub fn is_symbolic(&self) -> bool {
        self.axes.iter().any(|a| *a != Axis::Fixed)
    }
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

impl PartSpec {
    /// The shape of a call at batch 1 and the model's window or most tokens (every fixed-shape
    /// part's only one).
    pub fn reference_shape(&self) -> Shape {
        let mut at = Shape {
            batch: 1,
            window: 0,
            seq: 0,
        };
        for s in self.inputs.iter().chain(&self.outputs) {
            for (&d, a) in s.shape.iter().zip(&s.axes) {
                match a {
                    Axis::Window => at.window = d,
                    Axis::Seq => at.seq = d,
                    Axis::Fixed | Axis::Batch => {}
                }
            }
        }
        at
    }

    /// Whether any input or output has a symbolic axis.
    pub fn is_symbolic(&self) -> bool {
        self.inputs.iter().chain(&self.outputs).any(TensorSpec::is_symbolic)
    }
}

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("{part}: cannot read model file {path}: {source}")]
    Io {
        part: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{part}: model does not match its manifest: {detail}")]
    Mismatch { part: String, detail: String },
    #[error("{part}: {engine} failed: {detail}")]
    Engine {
        part: String,
        engine: &'static str,
        detail: String,
    },
    /// A call's tensor does not fit its spec (`detail` names it, e.g. "input 1 has shape ...").
    #[error("{part}: {detail}")]
    Binding { part: String, detail: String },
    #[error("{part}: expected {expected} inputs and {expected_out} outputs, got {got} and {got_out}")]
    Arity {
        part: String,
        expected: usize,
        expected_out: usize,
        got: usize,
        got_out: usize,
    },
    #[error("backend `{0}` was not compiled into this binary (rebuild with `--features {0}`)")]
    NotCompiled(String),
    #[error("unknown backend `{0}` (known: tract, ort)")]
    Unknown(String),
}

/// A loaded ONNX part, ready to run at any shape its spec allows.
pub trait Backend: Send {
    /// The part's specification (names and shapes) this backend was loaded with.
    fn spec(&self) -> &PartSpec;

    /// What actually executes the part, e.g. "tract (cpu)" or "onnxruntime CUDAExecutionProvider".
    fn provider(&self) -> String;

    /// Runs a part whose inputs are all float32. `inputs` and `outputs` follow the spec's order
    /// and shapes (symbolic axes bound by the call, `check_call`); outputs are written in place
    /// so a caller can reuse its buffers across calls.
    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError>;

    /// `run` with inputs of any element type (each as its spec's `dtype`). Engines override it;
    /// the default serves float32-only backends.
    fn run_typed(&mut self, inputs: &[Input<'_>], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let mut f32s: heapless::Vec<&Tensor, 8> = heapless::Vec::new();
        for i in inputs {
            let t = match i {
                Input::F32(t) => *t,
                Input::I64(_) => {
                    let detail = "this backend takes float32 inputs only".to_string();
                    return Err(BackendError::Binding {
                        part: self.spec().name.clone(),
                        detail,
                    });
                }
            };
            f32s.push(t)
                .map_err(|_| arity(self.spec(), inputs.len(), outputs.len()))?;
        }
        self.run(&f32s, outputs)
    }

    /// Builds whatever the engine specialises per shape for `at` ahead of the first call
    /// (warm-up); engines that need nothing do nothing.
    fn prepare(&mut self, at: Shape) -> Result<(), BackendError> {
        let _ = at;
        Ok(())
    }

    /// Why preferred engines or providers are not the one running (e.g. "cuda: <reason>").
    fn provider_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Which engine to load a part with; its name (`name`, serde) is the one board profiles,
/// `--backend` and reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Tract,
    Ort,
}

impl BackendKind {
    pub const ALL: [BackendKind; 2] = [BackendKind::Tract, BackendKind::Ort];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::Ort => "ort",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Command-line spelling: the names, and `onnxruntime` for `ort`.
impl std::str::FromStr for BackendKind {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "onnxruntime" => Ok(BackendKind::Ort),
            name => BackendKind::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| BackendError::Unknown(name.to_string())),
        }
    }
}

/// Engine options that come from the board profile.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// Intra-op threads; 0 lets the engine choose.
    pub threads: usize,
    /// ONNX Runtime only: execution providers in order of preference (empty: CPU).
    pub providers: Vec<ProviderKind>,
    /// ONNX Runtime only: path of libonnxruntime.so; falls back to `ORT_DYLIB_PATH`.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime only: a fallback to the CPU provider is an error instead of a warning.
    pub require_accelerator: bool,
    /// ONNX Runtime only: where TensorRT engine and timing caches live.
    pub cache_dir: Option<PathBuf>,
    /// ONNX Runtime + TensorRT only: the largest batch and the smallest window of the
    /// optimisation profile of symbolic parts (0 = 1 and W).
    pub max_batch: usize,
    pub min_window: usize,
}

/// Backends compiled into this binary.
pub fn compiled() -> &'static [BackendKind] {
    if cfg!(feature = "ort") {
        &BackendKind::ALL
    } else {
        &[BackendKind::Tract]
    }
}

/// Loads one part with the chosen engine. The single place where the `ort` feature is checked.
pub fn load(kind: BackendKind, spec: &PartSpec, opts: &BackendOptions) -> Result<Box<dyn Backend>, BackendError> {
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

/// Checks call arity, input element types and shapes against the spec and returns the sizes
/// the call binds the symbolic axes to (the reference shape's where a part has none). Shared by
/// all engines.
pub fn check_call(spec: &PartSpec, inputs: &[Input<'_>], outputs: &[Tensor]) -> Result<Shape, BackendError> {
    if inputs.len() != spec.inputs.len() || outputs.len() != spec.outputs.len() {
        return Err(arity(spec, inputs.len(), outputs.len()));
    }
    for (index, (i, s)) in inputs.iter().zip(&spec.inputs).enumerate() {
        if i.dtype() != s.dtype {
            let detail = format!(
                "input {index} (`{}`) is {}, expected {}",
                s.name,
                i.dtype().name(),
                s.dtype.name()
            );
            return Err(BackendError::Binding {
                part: spec.name.clone(),
                detail,
            });
        }
    }
    let mut bound: [Option<usize>; 3] = [None; 3];
    let shapes = inputs.iter().map(|t| ("input", t.shape())).zip(&spec.inputs);
    let out_shapes = outputs.iter().map(|t| ("output", t.shape())).zip(&spec.outputs);
    for (index, ((what, got), s)) in shapes.enumerate().chain(out_shapes.enumerate()) {
        if !bind(s, got, &mut bound) {
            let [batch, window, seq] = bound;
            let detail = format!(
                "{what} {index} has shape {got:?}, which does not fit {:?} with batch {batch:?}, window {window:?} and seq {seq:?}",
                s.shape
            );
            return Err(BackendError::Binding {
                part: spec.name.clone(),
                detail,
            });
        }
    }
    let reference = spec.reference_shape();
    Ok(Shape {
        batch: bound[0].unwrap_or(reference.batch),
        window: bound[1].unwrap_or(reference.window),
        seq: bound[2].unwrap_or(reference.seq),
    })
}

/// Whether `got` fits `s`, binding `[batch, window, seq]` on first sight (sizes >= 1; a window
/// or seq at most the reference's).
fn bind(s: &TensorSpec, got: &[usize], bound: &mut [Option<usize>; 3]) -> bool {
    if got.len() != s.shape.len() {
        return false;
    }
    got.iter().zip(&s.shape).zip(&s.axes).all(|((&g, &d), a)| {
        let slot = match a {
            Axis::Fixed => return g == d,
            Axis::Batch => &mut bound[0],
            Axis::Window | Axis::Seq if g > d => return false,
            Axis::Window => &mut bound[1],
            Axis::Seq => &mut bound[2],
        };
        match *slot {
            Some(b) => b == g,
            None if g == 0 => false,
            None => {
                *slot = Some(g);
                true
            }
        }
    })
}
