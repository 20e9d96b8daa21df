//! A loaded model: the validated manifest and its five ONNX parts, all on one engine.

use std::path::Path;

use thiserror::Error;

use crate::backend::{self, Backend, BackendError, BackendKind, BackendOptions};
use crate::diffusion::{SamplerKind, SdeParams, Ve};
use crate::manifest::{Manifest, ManifestError, PART_NAMES};

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("sampler: steps must be at least 1")]
    Steps,
    #[error("parts must be {PART_NAMES:?} in that order, got {0:?}")]
    Parts(Vec<String>),
}

/// Index of each part in `Model::parts` (the `PART_NAMES` order).
#[derive(Debug, Clone, Copy)]
pub enum Part {
    Encoders = 0,
    STheta = 1,
    SPhi = 2,
    Recon = 3,
    Fusion = 4,
}

pub struct Model {
    pub manifest: Manifest,
    pub kind: BackendKind,
    parts: Vec<Box<dyn Backend>>,
}

impl Model {
    /// Loads `<dir>/manifest.toml` and every part with `kind`.
    pub fn load(dir: &Path, kind: BackendKind, opts: &BackendOptions) -> Result<Model, ModelError> {
        let manifest = Manifest::load(dir)?;
        Self::from_manifest(manifest, kind, opts)
    }

    /// Loads the parts of an already validated manifest (workers share one validation).
    pub fn from_manifest(manifest: Manifest, kind: BackendKind, opts: &BackendOptions) -> Result<Model, ModelError> {
        // TensorRT's profile spans the manifest's smallest bucket unless the caller says more.
        let mut opts = opts.clone();
        if opts.min_window == 0 {
            opts.min_window = manifest.buckets.first().copied().unwrap_or(manifest.dims.window);
        }
        let parts = manifest
            .parts
            .iter()
            .map(|spec| backend::load(kind, spec, &opts))
            .collect::<Result<Vec<_>, _>>()?;
        debug_assert_eq!(parts.len(), PART_NAMES.len());
        log::debug!("loaded model {} on {}", manifest.model.name, parts[0].provider());
        Ok(Model { manifest, kind, parts })
    }

    /// Builds a model from backends already loaded (tests use mock backends), in `PART_NAMES`
    /// order.
    pub fn from_parts(
        manifest: Manifest,
        kind: BackendKind,
        parts: Vec<Box<dyn Backend>>,
    ) -> Result<Model, ModelError> {
        let names: Vec<&str> = parts.iter().map(|p| p.spec().name.as_str()).collect();
        if names != PART_NAMES {
            return Err(ModelError::Parts(names.iter().map(|s| s.to_string()).collect()));
        }
        Ok(Model { manifest, kind, parts })
    }

    pub fn part(&mut self, p: Part) -> &mut dyn Backend {
        self.parts[p as usize].as_mut()
    }

    /// Both score networks at once (the sampler needs them together).
    pub fn score_nets(&mut self) -> (&mut dyn Backend, &mut dyn Backend) {
        let (a, b) = self.parts.split_at_mut(Part::SPhi as usize);
        (a[Part::STheta as usize].as_mut(), b[0].as_mut())
    }

    /// Builds every part's engine plan for `at` (see `Backend::prepare`).
    pub fn prepare(&mut self, at: backend::Shape) -> Result<(), BackendError> {
        self.parts.iter_mut().try_for_each(|p| p.prepare(at))
    }

    /// What executes the parts, e.g. "tract (cpu)".
    pub fn provider(&self) -> String {
        self.parts[0].provider()
    }

    /// Sampler settings from the manifest, with `steps` and `kind` overriding `[sde] steps` and
    /// `[sde] sampler`.
    pub fn sde(&self, steps: Option<usize>, kind: Option<SamplerKind>) -> Result<SdeParams, ModelError> {
        let s = &self.manifest.sde;
        let steps = steps.unwrap_or(s.steps);
        if steps == 0 {
            return Err(ModelError::Steps);
        }
        Ok(SdeParams {
            x: Ve { sigma: s.sigma_x },
            lam: Ve { sigma: s.sigma_lambda },
            eps: s.eps,
            steps,
            kind: kind.unwrap_or(s.sampler),
        })
    }
}
