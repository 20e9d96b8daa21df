//! Model manifest (`models/<name>/manifest.toml`): parsed as raw TOML, then validated into
//! settings with precise errors (missing keys or files, wrong dims, part I/O that disagrees
//! with DESIGN.md's table, sha256 mismatch).
//!
//! Invariant of a `Manifest`: every part's inputs and outputs are exactly DESIGN.md's names and
//! shapes for the manifest's dims, every part file exists with the declared sha256, and the
//! `[calibration]` temperature is finite and in [0.01, 100] (absent: 1.0). Only the parts are
//! hashed, not the manifest itself, so fitting a temperature changes no sha256.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::backend::{PartSpec, TensorSpec};
use crate::calibration::Calibration;
use crate::diffusion::SamplerKind;
use crate::multisample::MAX_SAMPLES;

/// Feature widths of text, audio and visual, fixed by the data.
pub const FEATURE_DIMS: [usize; 3] = [100, 73, 100];
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
enum RawClasses {
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
    shape: Vec<usize>,
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
    dims: Dims,
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
}

#[derive(Debug, Deserialize)]
struct RawNorm {
    text_mean: Vec<f32>,
    text_std: Vec<f32>,
    audio_mean: Vec<f32>,
    audio_std: Vec<f32>,
    visual_mean: Vec<f32>,
    visual_std: Vec<f32>,
}

/// `[dims]`: feature widths, window W, latent width d, eigenpairs k.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct Dims {
    pub text: usize,
    pub audio: usize,
    pub visual: usize,
    pub window: usize,
    pub latent: usize,
    pub k: usize,
}

impl Dims {
    /// Feature widths in T, A, V order.
    pub fn features(&self) -> [usize; 3] {
        [self.text, self.audio, self.visual]
    }
}

/// `[graph]`: neighbourhood sizes of the structural adjacency.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct GraphSettings {
    pub window_same: usize,
    pub window_other: usize,
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

/// Per-feature training mean and std (as in the manifest: finite, >= 0), T, A, V order.
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
    pub dims: Dims,
    pub graph: GraphSettings,
    pub sde: SdeSettings,
    pub norm: Normalisation,
    /// Parts in `PART_NAMES` order.
    pub parts: Vec<PartSpec>,
    pub training: toml::Table,
    pub metrics: toml::Table,
    /// `[calibration]`: the temperature applied to the fusion logits before the softmax.
    pub calibration: Calibration,
    /// Declared sha256 of each part, in `PART_NAMES` order.
    pub sha256: Vec<String>,
}

fn io(name: &str, shape: &[usize]) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        shape: shape.to_vec(),
    }
}

/// DESIGN.md's inputs and outputs of `part` for `dims`.
pub fn expected_io(part: &str, d: &Dims) -> Option<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let (w, l, k) = (d.window, d.latent, d.k);
    let lat = [1, 3, w, l];
    let feats = vec![
        io("text", &[1, w, d.text]),
        io("audio", &[1, w, d.audio]),
        io("visual", &[1, w, d.visual]),
    ];
    let (avail, mask) = (io("avail", &[1, w, 3]), io("node_mask", &[1, w]));
    Some(match part {
        "encoders" => (feats, vec![io("h", &lat)]),
        "s_theta" => (
            vec![
                io("x_t", &lat),
                io("t", &[1]),
                io("cond", &lat),
                avail,
                io("adj_t", &[1, 3, w, w]),
                mask,
            ],
            vec![io("score", &lat)],
        ),
        "s_phi" => (
            vec![
                io("lam_t", &[1, 3, k]),
                io("t", &[1]),
                io("lam_obs", &[1, 3, k]),
                io("u", &[1, w, k]),
                io("cond", &lat),
                avail,
                mask,
            ],
            vec![io("score", &[1, 3, k])],
        ),
        "recon" => (vec![io("x", &lat)], feats),
        "fusion" => (
            vec![io("x", &lat), avail, io("adj", &[1, 2, w, w]), mask],
            vec![io("logits", &[1, w, 2]), io("reg", &[1, w, 1])],
        ),
        _ => return None,
    })
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
        let invalid = |detail: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let dims = raw.dims;
        if dims.features() != FEATURE_DIMS {
            return Err(invalid(format!(
                "[dims] text/audio/visual are {:?}, the data has {:?}",
                dims.features(),
                FEATURE_DIMS
            )));
        }
        if dims.window == 0 || dims.latent == 0 || dims.k == 0 || dims.k > dims.window {
            return Err(invalid(format!(
                "[dims] need window, latent, k > 0 and k <= window, got {dims:?}"
            )));
        }
        check_sde(&raw.sde).map_err(invalid)?;
        let calibration =
            Calibration::from_table(raw.calibration).map_err(|e| invalid(e.to_string()))?;
        let norm = check_norm(raw.normalisation, &dims).map_err(invalid)?;
        let classes = match raw.model.classes {
            RawClasses::Count(n) => (0..n).map(|i| i.to_string()).collect(),
            RawClasses::Names(v) => v,
        };
        if classes.len() != 2 {
            return Err(invalid(format!(
                "[model] classes: the runtime handles 2 classes, got {}",
                classes.len()
            )));
        }
        let version = match raw.model.version {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        let mut parts = Vec::with_capacity(5);
        let mut sha256 = Vec::with_capacity(5);
        let mut raw_parts = raw.parts;
        for name in PART_NAMES {
            let part = raw_parts
                .remove(name)
                .ok_or_else(|| invalid(format!("missing [parts.{name}]")))?;
            sha256.push(part.sha256.clone());
            parts.push(check_part(dir, path, name, part, &dims)?);
        }
        if let Some(extra) = raw_parts.keys().next() {
            return Err(invalid(format!(
                "unknown part [parts.{extra}] (known: {PART_NAMES:?})"
            )));
        }
        let model = ModelInfo {
            name: raw.model.name,
            version,
            classes,
            has_regression: raw.model.has_regression,
        };
        Ok(Manifest {
            dir: dir.to_path_buf(),
            model,
            dims,
            graph: raw.graph,
            sde: raw.sde,
            norm,
            parts,
            training: raw.training,
            metrics: raw.metrics,
            calibration,
            sha256,
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

fn check_norm(n: RawNorm, dims: &Dims) -> Result<Normalisation, String> {
    let names = ["text", "audio", "visual"];
    let means = [n.text_mean, n.audio_mean, n.visual_mean];
    let stds = [n.text_std, n.audio_std, n.visual_std];
    for m in 0..3 {
        let want = dims.features()[m];
        for (kind, v) in [("mean", &means[m]), ("std", &stds[m])] {
            if v.len() != want {
                return Err(format!(
                    "[normalisation] {}_{kind} has {} values, expected {want}",
                    names[m],
                    v.len()
                ));
            }
            if !v.iter().all(|x| x.is_finite()) {
                return Err(format!(
                    "[normalisation] {}_{kind} has a non-finite value",
                    names[m]
                ));
            }
        }
        if stds[m].iter().any(|&s| s < 0.0) {
            return Err(format!("[normalisation] {}_std has a negative value", names[m]));
        }
    }
    Ok(Normalisation { mean: means, std: stds })
}

fn check_part(
    dir: &Path,
    path: &Path,
    name: &str,
    raw: RawPart,
    dims: &Dims,
) -> Result<PartSpec, ManifestError> {
    let err = |detail: String| ManifestError::Part {
        path: path.to_path_buf(),
        part: name.to_string(),
        detail,
    };
    let (inputs, outputs) = expected_io(name, dims).ok_or_else(|| err("unknown part".into()))?;
    let got_in: Vec<TensorSpec> = raw.inputs.into_iter().map(|r| io(&r.name, &r.shape)).collect();
    let got_out: Vec<TensorSpec> = raw.outputs.into_iter().map(|r| io(&r.name, &r.shape)).collect();
    for (kind, got, want) in [("inputs", &got_in, &inputs), ("outputs", &got_out, &outputs)] {
        if got != want {
            return Err(err(format!(
                "{kind} are {}, DESIGN.md expects {} for these dims",
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

fn fmt_io(v: &[TensorSpec]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{} {:?}", s.name, s.shape)).collect();
    format!("[{}]", items.join(", "))
}
