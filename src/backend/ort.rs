//! ONNX Runtime backend (feature `ort`): one session per part, with the execution provider chosen
//! by probing the board profile's list in order and I/O bound once through an `IoBinding`.
//!
//! Invariants:
//! - `provider` is the provider whose registration *and* session creation succeeded; every
//!   provider tried before it is recorded in `fallbacks` with ONNX Runtime's reason.
//! - With `require_accelerator`, a session that would run on the CPU provider is never created.
//! - One session per part serves every shape its spec allows (symbolic axes are dynamic in the
//!   ONNX file); each bound `Shape` gets its own `IoBinding` with owned staging inputs and
//!   preallocated outputs, made on first use and kept. An input is copied and re-bound only when
//!   its bits differ from what is bound, so conditioning that stays fixed across the reverse-SDE
//!   steps of a window is bound once.
//! - TensorRT gets one optimisation profile per part spanning batch 1..=`rows::MAX_CALL_ROWS`
//!   and window `min_window`..=W (optimised at `max_batch` x W), so its engine cache holds one
//!   engine per part and every call the row caller makes fits it.

pub mod providers;
pub mod runtime;

use ort::session::{IoBinding, Session};
use ort::value::{Tensor as OrtTensor, ValueType};

use self::runtime::Runtime;
use super::provider::with_cpu_fallback;
use super::ProviderKind;
use super::{
    check_call, f32_inputs, Backend, BackendError, BackendOptions, ElementType, Input, OrtLibraryInfo, PartSpec, Shape,
    TensorSpec,
};
use crate::tensor::Tensor;

/// A provider that was tried for a part and could not run it.
#[derive(Debug, Clone)]
pub struct ProviderFallback {
    pub provider: ProviderKind,
    pub reason: String,
}

pub struct OrtBackend {
    spec: PartSpec,
    runtime: &'static Runtime,
    provider: ProviderKind,
    fallbacks: Vec<ProviderFallback>,
    session: Session,
    bindings: Vec<Binding>,
}

/// The I/O binding of one shape.
struct Binding {
    at: Shape,
    binding: IoBinding,
    staged: Vec<Staged>,
    bound: Vec<bool>,
}

/// An owned staging input of its spec's element type.
enum Staged {
    F32(OrtTensor<f32>),
    I64(OrtTensor<i64>),
}

impl Staged {
    /// Copies `input` into the staging tensor unless it already holds those bits; returns
    /// whether it changed. The element types agree (`check_call`).
    fn stage(&mut self, input: &Input<'_>) -> bool {
        match (self, input) {
            (Staged::F32(s), Input::F32(t)) => {
                let (_, staged) = s.extract_tensor_mut();
                let same = same_bits(staged, t.data());
                if !same {
                    staged.copy_from_slice(t.data());
                }
                !same
            }
            (Staged::I64(s), Input::I64(t)) => {
                let (_, staged) = s.extract_tensor_mut();
                let same = *staged == *t.data();
                if !same {
                    staged.copy_from_slice(t.data());
                }
                !same
            }
            _ => true,
        }
    }

    fn bind(&self, binding: &mut IoBinding, name: String) -> ort::Result<()> {
        match self {
            Staged::F32(t) => binding.bind_input(name, t),
            Staged::I64(t) => binding.bind_input(name, t),
        }
    }
}

fn engine_err(spec: &PartSpec, e: impl std::fmt::Display) -> BackendError {
    BackendError::Engine {
        part: spec.name.clone(),
        engine: "onnxruntime",
        detail: e.to_string(),
    }
}

impl OrtBackend {
    /// Loads the library if needed, probes providers in order and binds fixed-shape I/O.
    pub fn load(spec: &PartSpec, opts: &BackendOptions) -> Result<Self, BackendError> {
        let runtime = runtime::load(opts.ort_library.as_deref()).map_err(|e| engine_err(spec, e))?;
        let bytes = std::fs::read(&spec.path).map_err(|source| BackendError::Io {
            part: spec.name.clone(),
            path: spec.path.clone(),
            source,
        })?;
        let list = with_cpu_fallback(&opts.providers);
        let trt_cache = trt_cache_for(spec, opts, runtime, &list, &bytes)?;
        let mut fallbacks = Vec::new();
        let mut chosen = None;
        for (i, &kind) in list.iter().enumerate() {
            if kind == ProviderKind::Cpu && opts.require_accelerator {
                break;
            }
            match build_session(spec, opts, runtime, kind, &list[i + 1..], trt_cache.as_deref(), &bytes) {
                Ok(session) => {
                    chosen = Some((kind, session));
                    break;
                }
                Err(reason) => {
                    let reason = reason.trim().to_string();
                    log::warn!("{}: {} unavailable: {reason}", spec.name, kind.ort_name());
                    fallbacks.push(ProviderFallback { provider: kind, reason });
                }
            }
        }
        let Some((provider, session)) = chosen else {
            return Err(no_provider_error(spec, opts, &fallbacks));
        };
        check_io(spec, &session)?;
        log::info!("{}: running on {}", spec.name, provider.ort_name());
        let mut backend = OrtBackend {
            spec: spec.clone(),
            runtime,
            provider,
            fallbacks,
            session,
            bindings: Vec::new(),
        };
        backend.binding(spec.reference_shape())?;
        Ok(backend)
    }

    /// Index of the binding for `at`, made if there is none yet.
    fn binding(&mut self, at: Shape) -> Result<usize, BackendError> {
        if let Some(i) = self.bindings.iter().position(|b| b.at == at) {
            return Ok(i);
        }
        let (binding, staged) = bind_io(&self.spec, &self.session, at).map_err(|e| engine_err(&self.spec, e))?;
        let bound = vec![false; staged.len()];
        self.bindings.push(Binding {
            at,
            binding,
            staged,
            bound,
        });
        Ok(self.bindings.len() - 1)
    }

    /// The provider that runs this part.
    pub fn provider_kind(&self) -> ProviderKind {
        self.provider
    }

    /// Providers tried before the one that runs, with the reason each could not.
    pub fn fallbacks(&self) -> &[ProviderFallback] {
        &self.fallbacks
    }

    /// The loaded ONNX Runtime library.
    pub fn runtime(&self) -> &'static Runtime {
        self.runtime
    }
}

/// Loads the library `opts` point at (if not yet) and describes it.
pub fn library_info(opts: &BackendOptions) -> Result<OrtLibraryInfo, BackendError> {
    let rt = runtime::load(opts.ort_library.as_deref()).map_err(|e| BackendError::Engine {
        part: "library".into(),
        engine: "onnxruntime",
        detail: e.to_string(),
    })?;
    Ok(OrtLibraryInfo {
        path: rt.path.clone(),
        version: rt.version.clone(),
        tensorrt: runtime::tensorrt_version(),
    })
}

fn no_provider_error(spec: &PartSpec, opts: &BackendOptions, fallbacks: &[ProviderFallback]) -> BackendError {
    let tried: Vec<String> = fallbacks
        .iter()
        .map(|f| format!("{}: {}", f.provider.name(), f.reason))
        .collect();
    let what = if opts.require_accelerator {
        "require_accelerator is set and no accelerator could run it"
    } else {
        "no execution provider could run it"
    };
    let tried = if tried.is_empty() {
        "no accelerator listed in providers".to_string()
    } else {
        tried.join("; ")
    };
    engine_err(spec, format!("{what} (tried {tried})"))
}

/// Creates (and checks writable) the versioned TensorRT cache directory when TensorRT is listed.
fn trt_cache_for(
    spec: &PartSpec,
    opts: &BackendOptions,
    rt: &Runtime,
    list: &[ProviderKind],
    bytes: &[u8],
) -> Result<Option<std::path::PathBuf>, BackendError> {
    let Some(base) = opts.cache_dir.as_deref() else {
        return Ok(None);
    };
    if !list.contains(&ProviderKind::TensorRt) {
        return Ok(None);
    }
    let trt = runtime::tensorrt_version().unwrap_or_else(|| "none".into());
    let dir = providers::trt_cache_dir(base, &spec.name, &providers::model_sha256(bytes), &rt.version, &trt);
    std::fs::create_dir_all(&dir).map_err(|source| BackendError::Io {
        part: spec.name.clone(),
        path: dir.clone(),
        source,
    })?;
    Ok(Some(dir))
}

/// One probe: registers `kind` (its failure is this probe's failure), then the accelerators
/// listed after it as per-node fallbacks, then creates the session.
fn build_session(
    spec: &PartSpec,
    opts: &BackendOptions,
    rt: &Runtime,
    kind: ProviderKind,
    later: &[ProviderKind],
    trt_cache: Option<&std::path::Path>,
    bytes: &[u8],
) -> Result<Session, String> {
    let mut b = Session::builder(&rt.environment).map_err(|e| e.to_string())?;
    if opts.threads > 0 {
        b = b.with_intra_threads(opts.threads).map_err(|e| e.to_string())?;
    }
    if kind.is_accelerator() {
        let profile = providers::trt_profile(spec, opts);
        providers::dispatch(kind, &profile, trt_cache)
            .register(&mut b)
            .map_err(|e| e.to_string())?;
        for &l in later.iter().filter(|l| l.is_accelerator()) {
            if let Err(e) = providers::dispatch(l, &profile, trt_cache).register(&mut b) {
                log::debug!("{}: {} not added as fallback: {e}", spec.name, l.ort_name());
            }
        }
    }
    b.commit_from_memory(bytes).map_err(|e| e.to_string())
}

/// Every manifest input must be a model input of its spec's element type and a compatible shape
/// and the model may have no other inputs; every manifest output must exist as float32 with a
/// compatible shape.
fn check_io(spec: &PartSpec, session: &Session) -> Result<(), BackendError> {
    let mismatch = |detail: String| BackendError::Mismatch {
        part: spec.name.clone(),
        detail,
    };
    let model_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    for name in &model_in {
        if !spec.inputs.iter().any(|s| s.name == *name) {
            return Err(mismatch(format!("model input `{name}` is not in the manifest")));
        }
    }
    let find = |outlets: &[ort::value::Outlet], s: &TensorSpec| -> Result<(), BackendError> {
        let o = outlets
            .iter()
            .find(|o| o.name() == s.name)
            .ok_or_else(|| mismatch(format!("model has no tensor `{}`", s.name)))?;
        match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                let want = match s.dtype {
                    ElementType::F32 => ort::value::TensorElementType::Float32,
                    ElementType::I64 => ort::value::TensorElementType::Int64,
                };
                if *ty != want {
                    return Err(mismatch(format!("`{}` is {ty:?}, expected {}", s.name, s.dtype.name())));
                }
                let ok =
                    shape.len() == s.shape.len() && shape.iter().zip(&s.shape).all(|(&m, &w)| m < 0 || m as usize == w);
                if !ok {
                    return Err(mismatch(format!(
                        "`{}` has shape {shape:?}, manifest says {:?}",
                        s.name, s.shape
                    )));
                }
                Ok(())
            }
            other => Err(mismatch(format!("`{}` is {other:?}, expected a tensor", s.name))),
        }
    };
    for s in &spec.inputs {
        find(session.inputs(), s)?;
    }
    for s in &spec.outputs {
        find(session.outputs(), s)?;
    }
    Ok(())
}

/// Staging input tensors (bound on first use) and preallocated outputs bound once, at `at`.
fn bind_io(spec: &PartSpec, session: &Session, at: Shape) -> ort::Result<(IoBinding, Vec<Staged>)> {
    let mut binding = session.create_binding()?;
    let mut staged = Vec::with_capacity(spec.inputs.len());
    for s in &spec.inputs {
        let shape = s.shape_at(at);
        let n: usize = shape.iter().product();
        staged.push(match s.dtype {
            ElementType::F32 => Staged::F32(OrtTensor::from_array((shape, vec![0.0f32; n]))?),
            ElementType::I64 => Staged::I64(OrtTensor::from_array((shape, vec![0i64; n]))?),
        });
    }
    for s in &spec.outputs {
        let out = OrtTensor::<f32>::new(session.allocator(), s.shape_at(at))?;
        binding.bind_output(s.name.clone(), out)?;
    }
    Ok((binding, staged))
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl Backend for OrtBackend {
    fn spec(&self) -> &PartSpec {
        &self.spec
    }

    fn provider(&self) -> String {
        format!("onnxruntime {}", self.provider.ort_name())
    }

    fn provider_notes(&self) -> Vec<String> {
        self.fallbacks
            .iter()
            .map(|f| format!("{}: {}", f.provider.name(), f.reason))
            .collect()
    }

    fn prepare(&mut self, at: Shape) -> Result<(), BackendError> {
        self.binding(at).map(|_| ())
    }

    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let inputs = f32_inputs(&self.spec, inputs)?;
        self.run_typed(&inputs, outputs)
    }

    fn run_typed(&mut self, inputs: &[Input<'_>], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let at = check_call(&self.spec, inputs, outputs)?;
        let index = self.binding(at)?;
        let (spec, b) = (&self.spec, &mut self.bindings[index]);
        for (i, t) in inputs.iter().enumerate() {
            if !b.staged[i].stage(t) && b.bound[i] {
                continue;
            }
            b.bound[i] = false;
            let name = spec.inputs[i].name.clone();
            b.staged[i]
                .bind(&mut b.binding, name)
                .map_err(|e| engine_err(spec, e))?;
            b.bound[i] = true;
        }
        let results = self.session.run_binding(&b.binding).map_err(|e| engine_err(spec, e))?;
        for (out, s) in outputs.iter_mut().zip(&spec.outputs) {
            let value = results
                .get(&s.name)
                .ok_or_else(|| engine_err(spec, format!("output `{}` missing from the run", s.name)))?;
            let (_, data) = value.try_extract_tensor::<f32>().map_err(|e| engine_err(spec, e))?;
            if data.len() != out.len() {
                return Err(engine_err(
                    spec,
                    format!(
                        "output `{}` holds {} values, expected {}",
                        s.name,
                        data.len(),
                        out.len()
                    ),
                ));
            }
            out.data_mut().copy_from_slice(data);
        }
        Ok(())
    }
}
