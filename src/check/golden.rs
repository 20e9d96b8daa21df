//! Golden cases (`tests/golden/<case>/case.toml`, format in docs/DESIGN.md) as component
//! parity tests: reading a case's tensors and tolerances, finding each ONNX part's inputs and
//! outputs among them, and comparing what a backend computes with the recorded outputs.
//!
//! Invariant: a part is compared only when every one of its inputs is in the case; a tensor is
//! accepted only when its element count matches both the case's shape and the manifest's shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::backend::{Backend, BackendError, PartSpec};
use crate::tensor::Tensor;

/// |a - b| <= atol + rtol * |b|, b being the recorded value.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Tolerance {
    pub atol: f32,
    pub rtol: f32,
}

/// Used only when a case names no tolerance for a compared tensor; reported as such.
pub const DEFAULT_TOLERANCE: Tolerance = Tolerance { atol: 1e-4, rtol: 1e-3 };

#[derive(Debug, Error)]
pub enum GoldenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("case {case}: tensor `{name}`: {detail}")]
    Tensor { case: String, name: String, detail: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

#[derive(Debug, Deserialize)]
struct TensorEntry {
    file: String,
    shape: Vec<usize>,
}

#[derive(Debug, Deserialize)]
struct CaseFile {
    #[serde(default)]
    tensors: BTreeMap<String, TensorEntry>,
    #[serde(default)]
    tolerances: BTreeMap<String, Tolerance>,
}

#[derive(Debug)]
pub struct GoldenCase {
    pub name: String,
    dir: PathBuf,
    tensors: BTreeMap<String, TensorEntry>,
    tolerances: BTreeMap<String, Tolerance>,
}

impl GoldenCase {
    pub fn load(dir: &Path) -> Result<Self, GoldenError> {
        let path = dir.join("case.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| GoldenError::Io { path: path.clone(), source })?;
        let file: CaseFile = toml::from_str(&text).map_err(|e| GoldenError::Parse { path, detail: e.to_string() })?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(GoldenCase { name, dir: dir.to_path_buf(), tensors: file.tensors, tolerances: file.tolerances })
    }

    /// Every `<root>/*/case.toml`, sorted by case name; directories without one are ignored.
    pub fn discover(root: &Path) -> Result<Vec<GoldenCase>, GoldenError> {
        let rd = std::fs::read_dir(root).map_err(|source| GoldenError::Io { path: root.to_path_buf(), source })?;
        let mut dirs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("case.toml").is_file())
            .collect();
        dirs.sort();
        dirs.iter().map(|d| GoldenCase::load(d)).collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn tolerance(&self, name: &str) -> Option<Tolerance> {
        self.tolerances.get(name).copied()
    }

    /// Reads tensor `name` and gives it `shape` (e.g. the manifest's, with the batch axis).
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor, GoldenError> {
        let err = |detail: String| GoldenError::Tensor { case: self.name.clone(), name: name.into(), detail };
        let entry = self.tensors.get(name).ok_or_else(|| err("not in case.toml".into()))?;
        let path = self.dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|source| GoldenError::Io { path: path.clone(), source })?;
        if bytes.len() % 4 != 0 {
            return Err(err(format!("{} bytes is not a whole number of float32", bytes.len())));
        }
        let n = bytes.len() / 4;
        let declared: usize = entry.shape.iter().product();
        let wanted: usize = shape.iter().product();
        if n != declared || n != wanted {
            return Err(err(format!(
                "{n} values; case.toml shape {:?} holds {declared}, requested {shape:?} holds {wanted}",
                entry.shape
            )));
        }
        let data = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Tensor::from_vec(shape, data).map_err(|e| err(e.to_string()))
    }

    /// The case tensor holding input or output `io` of `part`, if the case has one.
    pub fn find(&self, part: &str, io: &str, is_output: bool) -> Option<String> {
        candidates(part, io, is_output).into_iter().find(|c| self.has(c))
    }
}

/// Names a part's tensor may have in a case, most specific first: `<part>_<io>` (step-0
/// component I/O), then the pipeline-level name DESIGN.md gives the same tensor.
fn candidates(part: &str, io: &str, is_output: bool) -> Vec<String> {
    let mut c = vec![format!("{part}_{io}")];
    match (part, io, is_output) {
        ("encoders", m, false) => c.extend([format!("std_{m}"), format!("{m}_std")]),
        ("recon" | "fusion", "x", false) => c.push("x0".into()),
        ("fusion", "adj", false) => c.push("adj_fusion".into()),
        _ => {}
    }
    // Raw `text`/`audio`/`visual` are unstandardised [N, dim]: never an encoder input. Outputs
    // fall back to a plain name only where the pipeline tensor is that output unchanged.
    let plain_ok = match (part, is_output) {
        ("encoders", false) => false,
        (_, false) => true,
        (_, true) => matches!(io, "h" | "logits" | "reg"),
    };
    if plain_ok {
        c.push(io.to_string());
    }
    c
}

/// One compared output of one part in one case.
#[derive(Debug, Clone)]
pub struct OutputParity {
    pub case: String,
    pub part: String,
    pub tensor: String,
    pub max_abs_diff: f32,
    pub tolerance: Tolerance,
    /// False when the case names no tolerance for this tensor and the default was used.
    pub named_tolerance: bool,
    pub within: bool,
}

/// Runs `backend` on the case's recorded inputs and compares every output the case records.
/// `Ok(Err(reason))` means the case does not hold this part's I/O (nothing to compare).
pub fn part_parity(case: &GoldenCase, backend: &mut dyn Backend) -> Result<Result<Vec<OutputParity>, String>, GoldenError> {
    let spec: PartSpec = backend.spec().clone();
    let mut inputs = Vec::with_capacity(spec.inputs.len());
    for s in &spec.inputs {
        let Some(name) = case.find(&spec.name, &s.name, false) else {
            return Ok(Err(format!("case {} has no tensor for {} input `{}`", case.name, spec.name, s.name)));
        };
        inputs.push(case.tensor(&name, &s.shape)?);
    }
    let mut outputs: Vec<Tensor> = spec.outputs.iter().map(|s| Tensor::zeros(&s.shape)).collect();
    let refs: Vec<&Tensor> = inputs.iter().collect();
    backend.run(&refs, &mut outputs)?;
    let mut rows = Vec::new();
    for (s, got) in spec.outputs.iter().zip(&outputs) {
        let Some(name) = case.find(&spec.name, &s.name, true) else { continue };
        let want = case.tensor(&name, &s.shape)?;
        let named = case.tolerance(&name).or_else(|| case.tolerance(&s.name));
        let tol = named.unwrap_or(DEFAULT_TOLERANCE);
        rows.push(OutputParity {
            case: case.name.clone(),
            part: spec.name.clone(),
            tensor: name,
            max_abs_diff: max_abs_diff(got, &want),
            tolerance: tol,
            named_tolerance: named.is_some(),
            within: within(got, &want, tol),
        });
    }
    if rows.is_empty() {
        return Ok(Err(format!("case {} records no output of {}", case.name, spec.name)));
    }
    Ok(Ok(rows))
}

/// Largest |a - b|; NaN anywhere gives NaN.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.data().iter().zip(b.data()).fold(0.0f32, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() || m.is_nan() { f32::NAN } else { m.max(d) }
    })
}

/// Every element within `tol` of `want` (NaN never is).
pub fn within(got: &Tensor, want: &Tensor, tol: Tolerance) -> bool {
    got.shape() == want.shape()
        && got.data().iter().zip(want.data()).all(|(g, w)| (g - w).abs() <= tol.atol + tol.rtol * w.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_names_follow_design() {
        assert_eq!(candidates("s_theta", "x_t", false), vec!["s_theta_x_t", "x_t"]);
        assert_eq!(candidates("s_theta", "score", true), vec!["s_theta_score"]);
        assert_eq!(candidates("encoders", "text", false), vec!["encoders_text", "std_text", "text_std"]);
        assert_eq!(candidates("encoders", "h", true), vec!["encoders_h", "h"]);
        assert_eq!(candidates("fusion", "adj", false), vec!["fusion_adj", "adj_fusion", "adj"]);
        assert_eq!(candidates("recon", "audio", true), vec!["recon_audio"]);
    }

    #[test]
    fn tolerance_check_is_strict() {
        let w = Tensor::from_vec(&[3], vec![1.0, -2.0, 0.0]).unwrap();
        let g = Tensor::from_vec(&[3], vec![1.0005, -2.0, 0.0]).unwrap();
        assert!(within(&g, &w, Tolerance { atol: 1e-3, rtol: 0.0 }));
        assert!(!within(&g, &w, Tolerance { atol: 1e-4, rtol: 0.0 }));
        let nan = Tensor::from_vec(&[3], vec![f32::NAN, -2.0, 0.0]).unwrap();
        assert!(!within(&nan, &w, Tolerance { atol: 1.0, rtol: 1.0 }));
        assert!(max_abs_diff(&nan, &w).is_nan());
    }
}
