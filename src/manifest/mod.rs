//! Model manifest (`models/<name>/manifest.toml`): parsed as raw TOML, then validated into
//! settings with precise errors (missing keys or files, wrong dims, part I/O that disagrees
//! with DESIGN.md's table, sha256 mismatch).
//!
//! The model defines its inputs and outputs here and nowhere else: `[modalities]` (which of
//! text / audio / visual, each with its feature size), `[model] classes` (K >= 2 names) and
//! `has_regression`, `[dims] window`. Every other module reads them from the `Manifest`.
//!
//! Part shapes are written with sizes or the symbolic axes `"batch"` and `"window"` (DESIGN.md
//! "ONNX parts"); all parts one way or all the other. `[dims] buckets` lists the window sizes a
//! model with a symbolic window runs at (absent: `[W]`).
//!
//! Invariant of a `Manifest`: every part's inputs and outputs are exactly DESIGN.md's names and
//! shapes for the manifest's modalities, classes and dims, every part file exists with the declared sha256, and the
//! `[calibration]` temperature is finite and in [0.01, 100] (absent: 1.0). Only the parts are
//! hashed, not the manifest itself, so fitting a temperature changes no sha256.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::backend::{Axis, PartSpec, TensorSpec};
use crate::calibration::Calibration;
use crate::capacity::MAX_SAMPLES;
use crate::diffusion::SamplerKind;
use crate::modality::Modalities;
use crate::spectral::GraphSettings;

mod completion;
mod frontends;
mod layout;

pub use completion::{avail_bits, CompletionChoice, CompletionPolicy, PolicyError};
pub use frontends::{FrontendRef, SENTENCE_ENCODER};
pub use layout::expected_io;
use layout::{check_buckets, check_classes, check_dims, check_modalities, check_norm};

/// Part names in load order.
pub const PART_NAMES: [&str; 5] = ["encoders", "s_theta", "s_phi", "recon", "fusion"];

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid manifest: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("{path}: part `{part}`: {detail}")]
    Part {
        path: PathBuf,
        part: String,
        detail: String,
    },
    #[error("part `{part}`: sha256 of {file} is {actual}, manifest says {expected}")]
    Sha256 {
        part: String,
        file: PathBuf,
        expected: String,
        actual: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawClasses {
    Count(usize),
    Names(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct RawModel {
    name: String,
    version: toml::Value,
    classes: RawClasses,
    has_regression: bool,
}

#[derive(Debug, Deserialize)]
struct RawIo {
    name: String,
    shape: Vec<RawDim>,
}

#[derive(Debug, Deserialize)]
struct RawPart {
    file: String,
    sha256: String,
    inputs: Vec<RawIo>,
    outputs: Vec<RawIo>,
}

#[derive(Debug, Deserialize)]
struct RawManifest {
    model: RawModel,
    #[serde(default)]
    modalities: BTreeMap<String, usize>,
    dims: RawDims,
    graph: GraphSettings,
    sde: SdeSettings,
    normalisation: RawNorm,
    parts: BTreeMap<String, RawPart>,
    #[serde(default)]
    training: toml::Table,
    #[serde(default)]
    metrics: toml::Table,
    #[serde(default)]
    calibration: toml::Table,
    completion: Option<toml::Table>,
    #[serde(default)]
    frontends: frontends::RawFrontends,
}

/// `[normalisation]`: `<name>_mean` and `<name>_std` of each present modality.
pub(super) type RawNorm = BTreeMap<String, Vec<f32>>;

#[derive(Debug, Deserialize)]
pub(super) struct RawDims {
    pub(super) window: usize,
    pub(super) latent: usize,
    pub(super) k: usize,
    #[serde(default)]
    pub(super) buckets: Option<Vec<usize>>,
    /// Remaining keys: feature sizes of the old format are refused with a pointer to
    /// `[modalities]`.
    #[serde(flatten)]
    pub(super) other: BTreeMap<String, toml::Value>,
}

/// `[dims]`: window W, latent width d, eigenpairs k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub window: usize,
    pub latent: usize,
    pub k: usize,
}

/// `[sde]`: VE SDE constants and sampler settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SdeSettings {
    pub sigma_x: f64,
    pub sigma_lambda: f64,
    pub eps: f64,
    pub steps: usize,
    pub sampler: SamplerKind,
    /// Completion samples S per window (DESIGN.md "Multi-sample completion"); absent = 1, valid
    /// 1..=`MAX_SAMPLES`.
    #[serde(default = "one_sample")]
    pub samples: usize,
}

fn one_sample() -> usize {
    1
}

/// A training std below this marks a column constant in training (DESIGN.md "Conventions").
pub const STD_CONSTANT: f32 = 1e-6;
/// Bound on |z| of every other column (DESIGN.md "Conventions": above sqrt(N_train - 1)).
pub const Z_CLIP: f32 = 40.0;

/// Per-feature training mean and std (as in the manifest: finite, >= 0), indexed by
/// `Modality::index`; empty for a modality the model lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalisation {
    pub mean: [Vec<f32>; 3],
    pub std: [Vec<f32>; 3],
}

impl Normalisation {
    /// Whether feature `c` of modality `m` was constant in training (std < `STD_CONSTANT`).
    pub fn is_constant(&self, m: usize, c: usize) -> bool {
        self.std[m][c] < STD_CONSTANT
    }

    /// z of the finite raw value `x`: 0 in a constant column, else `(x - mean) / std` clipped
    /// to [-Z_CLIP, Z_CLIP]. Always finite (an overflow to +-Inf clips to the bound).
    pub fn standardise(&self, m: usize, c: usize, x: f32) -> f32 {
        if self.is_constant(m, c) {
            return 0.0;
        }
        ((x - self.mean[m][c]) / self.std[m][c]).clamp(-Z_CLIP, Z_CLIP)
    }

    /// Raw value of `z`: the training mean in a constant column, else `z * std + mean`.
    pub fn destandardise(&self, m: usize, c: usize, z: f32) -> f32 {
        if self.is_constant(m, c) {
            return self.mean[m][c];
        }
        z * self.std[m][c] + self.mean[m][c]
    }
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    /// Kept as written (string or number).
    pub version: String,
    pub classes: Vec<String>,
    pub has_regression: bool,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub dir: PathBuf,
    pub model: ModelInfo,
    pub modalities: Modalities,
    pub dims: Dims,
    pub graph: GraphSettings,
    pub sde: SdeSettings,
    pub norm: Normalisation,
    /// Parts in `PART_NAMES` order.
    pub parts: Vec<PartSpec>,
    /// Window sizes the parts run at (ascending, the last is W; `[W]` for fixed-shape parts).
    pub buckets: Vec<usize>,
    /// Whether the parts take a batch of windows (a symbolic batch axis) or one at a time.
    pub batched: bool,
    pub training: toml::Table,
    pub metrics: toml::Table,
    /// `[calibration]`: the temperature applied to the fusion logits before the softmax.
    pub calibration: Calibration,
    /// `[completion]`: the mode a window runs when the caller names none (absent: gsdnet).
    pub completion: CompletionPolicy,
    /// Declared sha256 of each part, in `PART_NAMES` order.
    pub sha256: Vec<String>,
    /// `[frontends.text]`: the text modality is computed from transcripts by this frontend.
    pub text_frontend: Option<FrontendRef>,
}

/// One axis as the manifest writes it: a size or the name of a symbolic axis.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum RawDim {
    Size(usize),
    Name(String),
}

/// `(name, [size or axis])` of the manifest into a spec at batch 1 and window W; an axis name
/// other than "batch" / "window" is an error.
fn raw_spec(r: RawIo, window: usize) -> Result<TensorSpec, String> {
    let mut spec = TensorSpec::fixed(&r.name, &[]);
    for d in r.shape {
        let (size, axis) = match d {
            RawDim::Size(n) => (n, Axis::Fixed),
            RawDim::Name(s) if s == "batch" => (1, Axis::Batch),
            RawDim::Name(s) if s == "window" => (window, Axis::Window),
            RawDim::Name(s) => return Err(format!("`{}`: unknown axis `{s}` (known: batch, window)", r.name)),
        };
        spec.shape.push(size);
        spec.axes.push(axis);
    }
    Ok(spec)
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Manifest {
    /// Reads and validates `<dir>/manifest.toml`; checks every part file's sha256.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join("manifest.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let raw: RawManifest = toml::from_str(&text).map_err(|source| ManifestError::Parse {
            path: path.clone(),
            source,
        })?;
        let m = Self::validate(dir, &path, raw)?;
        for (part, expected) in m.parts.iter().zip(&m.sha256) {
            check_sha(part, expected)?;
        }
        Ok(m)
    }

    fn validate(dir: &Path, path: &Path, raw: RawManifest) -> Result<Manifest, ManifestError> {
        let invalid = invalid_at(path);
        let dims = check_dims(&raw.dims).map_err(invalid)?;
        let modalities = check_modalities(&raw.modalities).map_err(invalid)?;
        check_sde(&raw.sde).map_err(invalid)?;
        let calibration = Calibration::from_table(raw.calibration).map_err(|e| invalid(e.to_string()))?;
        let completion = CompletionPolicy::from_table(raw.completion.as_ref()).map_err(|e| invalid(e.to_string()))?;
        let norm = check_norm(raw.normalisation, &modalities).map_err(invalid)?;
        let text_frontend = frontends::check_frontends(raw.frontends, dir, &modalities).map_err(invalid)?;
        let classes = check_classes(raw.model.classes).map_err(invalid)?;
        let version = match raw.model.version {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        let has_regression = raw.model.has_regression;
        let layout = (&modalities, classes.len(), has_regression, &dims);
        let (parts, sha256) = check_parts(dir, path, raw.parts, layout)?;
        let symbolic = parts[0].is_symbolic();
        let buckets = check_buckets(raw.dims.buckets.as_deref(), dims.window, symbolic).map_err(invalid)?;
        let model = ModelInfo {
            name: raw.model.name,
            version,
            classes,
            has_regression,
        };
        Ok(Manifest {
            dir: dir.to_path_buf(),
            model,
            modalities,
            dims,
            graph: raw.graph,
            sde: raw.sde,
            norm,
            parts,
            buckets,
            batched: symbolic,
            training: raw.training,
            metrics: raw.metrics,
            calibration,
            completion,
            sha256,
            text_frontend,
        })
    }

    /// The spec of part `name` (one of `PART_NAMES`).
    pub fn part(&self, name: &str) -> Option<&PartSpec> {
        self.parts.iter().find(|p| p.name == name)
    }
}

fn check_sha(part: &PartSpec, expected: &str) -> Result<(), ManifestError> {
    let actual = sha256_file(&part.path).map_err(|source| ManifestError::Io {
        path: part.path.clone(),
        source,
    })?;
    if !actual.eq_ignore_ascii_case(expected) {
        let (part, file, expected) = (part.name.clone(), part.path.clone(), expected.to_string());
        return Err(ManifestError::Sha256 {
            part,
            file,
            expected,
            actual,
        });
    }
    Ok(())
}

fn check_sde(s: &SdeSettings) -> Result<(), String> {
    if !(s.sigma_x > 1.0 && s.sigma_x.is_finite() && s.sigma_lambda > 1.0 && s.sigma_lambda.is_finite()) {
        return Err(format!(
            "[sde] sigma_x and sigma_lambda must be finite and > 1, got {} and {}",
            s.sigma_x, s.sigma_lambda
        ));
    }
    if !(s.eps > 0.0 && s.eps < 1.0) {
        return Err(format!("[sde] eps must be in (0, 1), got {}", s.eps));
    }
    if s.steps == 0 {
        return Err("[sde] steps must be at least 1".into());
    }
    if !(1..=MAX_SAMPLES).contains(&s.samples) {
        return Err(format!("[sde] samples must be 1..={MAX_SAMPLES}, got {}", s.samples));
    }
    Ok(())
}

/// `ManifestError::Invalid` of the manifest at `path`, for `map_err` on the checks' messages.
fn invalid_at(path: &Path) -> impl Fn(String) -> ManifestError + Copy + '_ {
    move |detail| ManifestError::Invalid {
        path: path.to_path_buf(),
        detail,
    }
}

/// Every part of `PART_NAMES`, in that order, each checked against the layout (no part missing,
/// none unknown, all fixed or all symbolic shapes); with the recorded sha256 of each.
fn check_parts(
    dir: &Path,
    path: &Path,
    mut raw_parts: BTreeMap<String, RawPart>,
    layout: (&Modalities, usize, bool, &Dims),
) -> Result<(Vec<PartSpec>, Vec<String>), ManifestError> {
    let invalid = invalid_at(path);
    let mut parts = Vec::with_capacity(PART_NAMES.len());
    let mut sha256 = Vec::with_capacity(PART_NAMES.len());
    for name in PART_NAMES {
        let part = raw_parts
            .remove(name)
            .ok_or_else(|| invalid(format!("missing [parts.{name}]")))?;
        sha256.push(part.sha256.clone());
        parts.push(check_part(dir, path, name, part, layout)?);
    }
    if let Some(extra) = raw_parts.keys().next() {
        return Err(invalid(format!("unknown part [parts.{extra}] (known: {PART_NAMES:?})")));
    }
    let symbolic = parts[0].is_symbolic();
    if parts.iter().any(|p| p.is_symbolic() != symbolic) {
        return Err(invalid(
            "parts mix fixed and symbolic (\"batch\" / \"window\") shapes; export them all one way".into(),
        ));
    }
    Ok((parts, sha256))
}

fn check_part(
    dir: &Path,
    path: &Path,
    name: &str,
    raw: RawPart,
    layout: (&Modalities, usize, bool, &Dims),
) -> Result<PartSpec, ManifestError> {
    let err = |detail: String| ManifestError::Part {
        path: path.to_path_buf(),
        part: name.to_string(),
        detail,
    };
    let (mods, classes, reg, dims) = layout;
    let specs = |v: Vec<RawIo>| {
        v.into_iter()
            .map(|r| raw_spec(r, dims.window))
            .collect::<Result<Vec<_>, _>>()
    };
    let got_in = specs(raw.inputs).map_err(err)?;
    let got_out = specs(raw.outputs).map_err(err)?;
    let symbolic = got_in.iter().chain(&got_out).any(TensorSpec::is_symbolic);
    let (inputs, outputs) =
        expected_io(name, mods, classes, reg, dims, symbolic).ok_or_else(|| err("unknown part".into()))?;
    for (kind, got, want) in [("inputs", &got_in, &inputs), ("outputs", &got_out, &outputs)] {
        if got != want {
            return Err(err(format!(
                "{kind} are {}, DESIGN.md expects {} for these modalities, classes and dims",
                fmt_io(got),
                fmt_io(want)
            )));
        }
    }
    if raw.sha256.len() != 64 || !raw.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(err(format!("sha256 `{}` is not 64 hex digits", raw.sha256)));
    }
    let file = dir.join(&raw.file);
    if !file.is_file() {
        return Err(err(format!("model file {} does not exist", file.display())));
    }
    Ok(PartSpec {
        name: name.to_string(),
        path: file,
        inputs,
        outputs,
    })
}

/// `[batch, window, 100]` / `[1, 64, 100]`, as the manifest writes it.
fn fmt_shape(s: &TensorSpec) -> String {
    let dims: Vec<String> = s
        .shape
        .iter()
        .zip(&s.axes)
        .map(|(d, a)| match a {
            Axis::Fixed => d.to_string(),
            Axis::Batch => "batch".into(),
            Axis::Window => "window".into(),
            Axis::Seq => "seq".into(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

fn fmt_io(v: &[TensorSpec]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{} {}", s.name, fmt_shape(s))).collect();
    format!("[{}]", items.join(", "))
}
