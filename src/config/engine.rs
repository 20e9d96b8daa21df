//! The `[engine]` table of a board profile: its raw form (`RawEngine`), the validated
//! `EngineSettings` and the checks between them (backend and providers, ONNX Runtime keys,
//! sampler, samples, queue, watchdog, abstention, batching).
//!
//! Batching: `max_batch` (default `DEFAULT_MAX_BATCH`, 1..=`MAX_BATCH`) is the most windows the
//! inference thread runs at once, 1 being one window at a time; `batch_latency_ms` (default
//! `DEFAULT_BATCH_LATENCY_MS`) is the latency budget of a window from enqueue to result within
//! which the thread sizes its batches (`daemon::batching`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{check, ConfigError};
use crate::backend::BackendOptions;
use crate::diffusion::SamplerKind;
use crate::multisample::{check_samples, MAX_SAMPLES};

const EXECUTION_PROVIDERS: [&str; 3] = ["tensorrt", "cuda", "cpu"];
const COMPLETIONS: [&str; 3] = ["gsdnet", "meanfill", "zero"];
/// Upper bound of `engine.max_batch` (the pipeline's batch buffers grow with it).
pub const MAX_BATCH: usize = 64;
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

fn default_completion() -> String {
    "gsdnet".to_string()
}

/// Engine settings after validation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineSettings {
    /// "tract" or "ort".
    pub backend: String,
    pub execution_providers: Vec<String>,
    pub threads: usize,
    pub models: PathBuf,
    pub completion: String,
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

    /// The latency budget as a duration (`ServeOptions::batch_latency`).
    pub fn batch_latency(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.batch_latency_ms)
    }

    /// TensorRT may build engines while the models load (minutes on a first start).
    pub fn builds_tensorrt_engines(&self) -> bool {
        self.backend == "ort" && self.execution_providers.iter().any(|p| p == "tensorrt")
    }
}

fn sampler_name<S: serde::Serializer>(k: &Option<SamplerKind>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.map_or("", SamplerKind::name))
}

pub(super) fn validate_engine(e: RawEngine, path: &Path) -> Result<EngineSettings, ConfigError> {
    check(matches!(e.backend.as_str(), "tract" | "ort"), path, "engine.backend", || {
        format!("is {:?}; expected \"tract\" or \"ort\"", e.backend)
    })?;
    for ep in &e.execution_providers {
        check(EXECUTION_PROVIDERS.contains(&ep.as_str()), path, "engine.execution_providers", || {
            format!("has {ep:?}; known: {EXECUTION_PROVIDERS:?}")
        })?;
    }
    check(e.backend == "ort" || e.execution_providers.is_empty(), path, "engine.execution_providers", || {
        "only applies to backend \"ort\"".into()
    })?;
    validate_ort(&e, path)?;
    check(e.threads <= 256, path, "engine.threads", || format!("is {}; at most 256", e.threads))?;
    check(COMPLETIONS.contains(&e.completion.as_str()), path, "engine.completion", || {
        format!("is {:?}; known: {COMPLETIONS:?}", e.completion)
    })?;
    check(e.steps.is_none_or(|s| (1..=1000).contains(&s)), path, "engine.steps", || "must be 1..=1000".into())?;
    let sampler = match &e.sampler {
        None => None,
        Some(name) => Some(name.parse::<SamplerKind>().map_err(|detail| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: "engine.sampler",
            detail,
        })?),
    };
    check(e.samples.is_none_or(|s| check_samples(s).is_ok()), path, "engine.samples", || {
        format!("is {:?}; must be 1..={MAX_SAMPLES}", e.samples)
    })?;
    check((1..=1024).contains(&e.queue_capacity), path, "engine.queue_capacity", || {
        format!("is {}; must be 1..=1024", e.queue_capacity)
    })?;
    check((1..=10_000).contains(&e.max_consecutive_errors), path, "engine.max_consecutive_errors", || {
        format!("is {}; must be 1..=10000", e.max_consecutive_errors)
    })?;
    check(e.abstain_below.is_none_or(|t| t > 0.0 && t <= 1.0), path, "engine.abstain_below", || {
        format!("is {:?}; must be in (0, 1]", e.abstain_below)
    })?;
    check((1..=MAX_BATCH).contains(&e.max_batch), path, "engine.max_batch", || {
        format!("is {}; must be 1..={MAX_BATCH}", e.max_batch)
    })?;
    check((1..=MAX_BATCH_LATENCY_MS).contains(&e.batch_latency_ms), path, "engine.batch_latency_ms", || {
        format!("is {}; must be 1..={MAX_BATCH_LATENCY_MS}", e.batch_latency_ms)
    })?;
    Ok(EngineSettings {
        backend: e.backend,
        execution_providers: e.execution_providers,
        threads: e.threads,
        models: e.models,
        completion: e.completion,
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

/// ONNX Runtime keys: only with backend "ort"; absolute paths (the unit's working directory is
/// not the operator's); an accelerator required only when one is listed; a cache only for TensorRT.
fn validate_ort(e: &RawEngine, path: &Path) -> Result<(), ConfigError> {
    let ort = e.backend == "ort";
    check(ort || e.ort_library.is_none(), path, "engine.ort_library", || "only applies to backend \"ort\"".into())?;
    check(ort || !e.require_accelerator, path, "engine.require_accelerator", || "only applies to backend \"ort\"".into())?;
    check(ort || e.cache_dir.is_none(), path, "engine.cache_dir", || "only applies to backend \"ort\"".into())?;
    if let Some(lib) = &e.ort_library {
        check(lib.is_absolute(), path, "engine.ort_library", || format!("{} must be absolute", lib.display()))?;
    }
    let accel = e.execution_providers.iter().any(|p| p == "tensorrt" || p == "cuda");
    check(!e.require_accelerator || accel, path, "engine.require_accelerator", || {
        "is true but execution_providers lists neither \"tensorrt\" nor \"cuda\"".into()
    })?;
    if let Some(dir) = &e.cache_dir {
        check(dir.is_absolute(), path, "engine.cache_dir", || format!("{} must be absolute", dir.display()))?;
        check(e.execution_providers.iter().any(|p| p == "tensorrt"), path, "engine.cache_dir", || {
            "is set but execution_providers does not list \"tensorrt\"".into()
        })?;
    }
    Ok(())
}

