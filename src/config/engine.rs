//! The `[engine]` table of a board profile: its raw form (`RawEngine`), the validated
//! `EngineSettings` and the checks between them (backend and providers, ONNX Runtime keys,
//! sampler, samples, queue, watchdog, abstention, batching). Names (backend, execution
//! providers, completion, sampler) are parsed here, once, into the typed settings the rest of
//! the crate uses (`BackendKind`, `ProviderKind`, `Completion`, `SamplerKind`).
//!
//! Batching: `max_batch` (default `DEFAULT_MAX_BATCH`, 1..=`MAX_BATCH`) is the most windows the
//! inference thread runs at once, 1 being one window at a time; `batch_latency_ms` (default
//! `DEFAULT_BATCH_LATENCY_MS`) is the latency budget of a window from enqueue to result within
//! which the thread sizes its batches (`daemon::batching`).

use std::path::{Path, PathBuf};

use serde::de::value::{Error as NameError, StrDeserializer};
use serde::{Deserialize, Serialize};

use super::{check, check_range, ConfigError};
use crate::backend::{BackendKind, BackendOptions, ProviderKind};
use crate::capacity::{MAX_BATCH, MAX_SAMPLES};
use crate::diffusion::SamplerKind;
use crate::manifest::CompletionChoice;
use crate::multisample::check_samples;
use crate::pipeline::PipelineOptions;

/// `engine.max_batch` when the profile does not say.
pub const DEFAULT_MAX_BATCH: usize = 8;
/// `engine.batch_latency_ms` when the profile does not say: well under the 3 s between one
/// speaker's utterances, on top of the assembly deadlines (300-600 ms).
pub const DEFAULT_BATCH_LATENCY_MS: u64 = 250;
/// Upper bound of `engine.batch_latency_ms`.
pub const MAX_BATCH_LATENCY_MS: u64 = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    pub backend: String,
    #[serde(default)]
    pub execution_providers: Vec<String>,
    /// 0 = let the engine decide.
    #[serde(default)]
    pub threads: usize,
    pub models: PathBuf,
    #[serde(default = "default_completion")]
    pub completion: String,
    /// Sampler steps; absent = the manifest's.
    pub steps: Option<usize>,
    /// Integrator (`euler_maruyama_inpaint` / `em`, `pf_ode_heun_inpaint` / `heun`); absent =
    /// the manifest's.
    pub sampler: Option<String>,
    /// Completion samples per window of the gsdnet mode (1..=64); absent = the manifest's.
    pub samples: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    pub queue_capacity: usize,
    /// ort only: path of libonnxruntime.so; absent = `ORT_DYLIB_PATH`.
    pub ort_library: Option<PathBuf>,
    /// ort only: falling back to the CPU provider is a start-up error.
    #[serde(default)]
    pub require_accelerator: bool,
    /// ort with tensorrt only: TensorRT engine and timing caches (keyed per model and version).
    pub cache_dir: Option<PathBuf>,
    /// Failed windows in a row after which the watchdog is no longer fed.
    #[serde(default = "default_max_consecutive_errors")]
    pub max_consecutive_errors: u32,
    /// `Scored` results whose confidence is below this are marked uncertain; absent = never.
    pub abstain_below: Option<f32>,
    /// Most windows (of any conversations) run in one call of each part, 1..=`MAX_BATCH`.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Latency budget of a window from enqueue to result, in ms; it limits batches.
    #[serde(default = "default_batch_latency_ms")]
    pub batch_latency_ms: u64,
}

fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH
}

fn default_batch_latency_ms() -> u64 {
    DEFAULT_BATCH_LATENCY_MS
}

fn default_max_consecutive_errors() -> u32 {
    5
}

/// Absent `engine.completion`: the model manifest's `[completion]` policy.
fn default_completion() -> String {
    "default".to_string()
}

/// Engine settings after validation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineSettings {
    pub backend: BackendKind,
    pub execution_providers: Vec<ProviderKind>,
    pub threads: usize,
    pub models: PathBuf,
    /// A mode, or `default`: the manifest's `[completion]` per window.
    pub completion: CompletionChoice,
    pub steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "sampler_name")]
    pub sampler: Option<SamplerKind>,
    /// Completion samples S; absent = the manifest's `[sde] samples`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    pub seed: u64,
    pub queue_capacity: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ort_library: Option<PathBuf>,
    pub require_accelerator: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    pub max_consecutive_errors: u32,
    /// 0 = no abstention threshold.
    pub abstain_below: f32,
    /// Most windows run as one batch (1 = one window at a time).
    pub max_batch: usize,
    /// Latency budget of a window from enqueue to result (ms), limiting batches.
    pub batch_latency_ms: u64,
}

impl EngineSettings {
    /// What the backend is loaded with (`serve`, `warmup`).
    pub fn backend_options(&self) -> BackendOptions {
        BackendOptions {
            threads: self.threads,
            providers: self.execution_providers.clone(),
            ort_library: self.ort_library.clone(),
            require_accelerator: self.require_accelerator,
            cache_dir: self.cache_dir.clone(),
            // TensorRT's optimisation profile must cover the daemon's largest batch.
            max_batch: self.max_batch,
            ..BackendOptions::default()
        }
    }

    /// How the daemon's pipeline runs (steps, integrator, samples, batch cap).
    pub fn pipeline_options(&self) -> PipelineOptions {
        PipelineOptions {
            steps: self.steps,
            sampler: self.sampler,
            samples: self.samples,
            max_batch: self.max_batch,
        }
    }

    /// The latency budget as a duration (`ServeOptions::batch_latency`).
    pub fn batch_latency(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.batch_latency_ms)
    }

    /// TensorRT may build engines while the models load (minutes on a first start).
    pub fn builds_tensorrt_engines(&self) -> bool {
        self.backend == BackendKind::Ort && self.execution_providers.contains(&ProviderKind::TensorRt)
    }
}

fn sampler_name<S: serde::Serializer>(k: &Option<SamplerKind>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.map_or("", SamplerKind::name))
}

/// `name` as the serde enum `T` (its variant names are the profile's), or the field's error.
fn named<'a, T: Deserialize<'a>>(name: &'a str, path: &Path, field: &'static str) -> Result<T, ConfigError> {
    T::deserialize(StrDeserializer::<NameError>::new(name)).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        field,
        detail: format!("is {name:?}: {e}"),
    })
}

pub(super) fn validate_engine(e: RawEngine, path: &Path) -> Result<EngineSettings, ConfigError> {
    let backend: BackendKind = named(&e.backend, path, "engine.backend")?;
    let providers = e
        .execution_providers
        .iter()
        .map(|p| named(p, path, "engine.execution_providers"))
        .collect::<Result<Vec<ProviderKind>, _>>()?;
    check(
        backend == BackendKind::Ort || providers.is_empty(),
        path,
        "engine.execution_providers",
        || "only applies to backend \"ort\"".into(),
    )?;
    validate_ort(&e, backend, &providers, path)?;
    check_range(e.threads, 0..=256, path, "engine.threads")?;
    let completion: CompletionChoice = named(&e.completion, path, "engine.completion")?;
    let sampler = match &e.sampler {
        None => None,
        Some(name) => Some(name.parse::<SamplerKind>().map_err(|detail| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: "engine.sampler",
            detail,
        })?),
    };
    validate_limits(&e, path)?;
    Ok(EngineSettings {
        backend,
        execution_providers: providers,
        threads: e.threads,
        models: e.models,
        completion,
        steps: e.steps,
        sampler,
        samples: e.samples,
        seed: e.seed,
        queue_capacity: e.queue_capacity,
        ort_library: e.ort_library,
        require_accelerator: e.require_accelerator,
        cache_dir: e.cache_dir,
        max_consecutive_errors: e.max_consecutive_errors,
        abstain_below: e.abstain_below.unwrap_or(0.0),
        max_batch: e.max_batch,
        batch_latency_ms: e.batch_latency_ms,
    })
}

/// The engine's numeric limits: sampler steps and samples, the job queue, the error budget, the
/// abstention threshold and the batching of windows.
fn validate_limits(e: &RawEngine, path: &Path) -> Result<(), ConfigError> {
    if let Some(steps) = e.steps {
        check_range(steps, 1..=1000, path, "engine.steps")?;
    }
    if let Some(s) = e.samples {
        check(check_samples(s).is_ok(), path, "engine.samples", || {
            format!("is {s}; must be 1..={MAX_SAMPLES}")
        })?;
    }
    check_range(e.queue_capacity, 1..=1024, path, "engine.queue_capacity")?;
    check_range(
        e.max_consecutive_errors,
        1..=10_000,
        path,
        "engine.max_consecutive_errors",
    )?;
    if let Some(t) = e.abstain_below {
        check(t > 0.0 && t <= 1.0, path, "engine.abstain_below", || {
            format!("is {t}; must be in (0, 1]")
        })?;
    }
    check_range(e.max_batch, 1..=MAX_BATCH, path, "engine.max_batch")?;
    check_range(
        e.batch_latency_ms,
        1..=MAX_BATCH_LATENCY_MS,
        path,
        "engine.batch_latency_ms",
    )?;
    Ok(())
}

/// ONNX Runtime keys: only with backend "ort"; absolute paths (the unit's working directory is
/// not the operator's); an accelerator required only when one is listed; a cache only for TensorRT.
fn validate_ort(
    e: &RawEngine,
    backend: BackendKind,
    providers: &[ProviderKind],
    path: &Path,
) -> Result<(), ConfigError> {
    let ort = backend == BackendKind::Ort;
    check(ort || e.ort_library.is_none(), path, "engine.ort_library", || {
        "only applies to backend \"ort\"".into()
    })?;
    check(
        ort || !e.require_accelerator,
        path,
        "engine.require_accelerator",
        || "only applies to backend \"ort\"".into(),
    )?;
    check(ort || e.cache_dir.is_none(), path, "engine.cache_dir", || {
        "only applies to backend \"ort\"".into()
    })?;
    if let Some(lib) = &e.ort_library {
        check(lib.is_absolute(), path, "engine.ort_library", || {
            format!("{} must be absolute", lib.display())
        })?;
    }
    let accel = providers.iter().any(|p| p.is_accelerator());
    check(
        !e.require_accelerator || accel,
        path,
        "engine.require_accelerator",
        || "is true but execution_providers lists neither \"tensorrt\" nor \"cuda\"".into(),
    )?;
    if let Some(dir) = &e.cache_dir {
        check(dir.is_absolute(), path, "engine.cache_dir", || {
            format!("{} must be absolute", dir.display())
        })?;
        check(
            providers.contains(&ProviderKind::TensorRt),
            path,
            "engine.cache_dir",
            || "is set but execution_providers does not list \"tensorrt\"".into(),
        )?;
    }
    Ok(())
}
