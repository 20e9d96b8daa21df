//! Golden cases (`tests/golden/<case>/case.toml`, format in docs/DESIGN.md) as component
//! parity tests: reading a case's tensors and tolerances, finding each ONNX part's inputs and
//! outputs among them, and comparing what a backend computes with the recorded outputs.
//!
//! A case may store only the valid region of a tensor (the first N nodes of each window axis):
//! its `full_shape` is what the parts see. Inputs are zero-padded back to `full_shape`; outputs
//! are compared on the stored region only.
//!
//! Invariant: a part is compared only when every one of its inputs is in the case; a tensor is
//! accepted only when its file holds `shape`'s element count, `shape` fits inside `full_shape`
//! axis by axis, and `full_shape` has the manifest's element count.

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
    /// Shape of the stored values.
    shape: Vec<usize>,
    /// Shape the pipeline and parts see; absent when the tensor is stored whole.
    #[serde(default)]
    full_shape: Option<Vec<usize>>,
}

impl TensorEntry {
    fn full(&self) -> &[usize] {
        self.full_shape.as_deref().unwrap_or(&self.shape)
    }
}

#[derive(Debug, Deserialize)]
struct CaseFile {
    #[serde(default)]
    meta: toml::Table,
    #[serde(default)]
    tensors: BTreeMap<String, TensorEntry>,
    #[serde(default)]
    tolerances: BTreeMap<String, Tolerance>,
}

#[derive(Debug)]
pub struct GoldenCase {
    pub name: String,
    /// `[meta] model`: the model the case was recorded with, when it says.
    pub model: Option<String>,
    dir: PathBuf,
    tensors: BTreeMap<String, TensorEntry>,
    tolerances: BTreeMap<String, Tolerance>,
}

impl GoldenCase {
    pub fn load(dir: &Path) -> Result<Self, GoldenError> {
        let path = dir.join("case.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| GoldenError::Io {
            path: path.clone(),
            source,
        })?;
        let file: CaseFile = toml::from_str(&text).map_err(|e| GoldenError::Parse {
            path,
            detail: e.to_string(),
        })?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let model = file.meta.get("model").and_then(|v| v.as_str()).map(str::to_string);
        Ok(GoldenCase {
            name,
            model,
            dir: dir.to_path_buf(),
            tensors: file.tensors,
            tolerances: file.tolerances,
        })
    }

    /// Every `<root>/*/case.toml`, sorted by case name; directories without one are ignored.
    pub fn discover(root: &Path) -> Result<Vec<GoldenCase>, GoldenError> {
        let rd = std::fs::read_dir(root).map_err(|source| GoldenError::Io {
            path: root.to_path_buf(),
            source,
        })?;
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

    fn err(&self, name: &str, detail: String) -> GoldenError {
        GoldenError::Tensor {
            case: self.name.clone(),
            name: name.into(),
            detail,
        }
    }

    fn entry(&self, name: &str) -> Result<&TensorEntry, GoldenError> {
        self.tensors
            .get(name)
            .ok_or_else(|| self.err(name, "not in case.toml".into()))
    }

    /// The stored values of `name`, checked against its `shape` and `full_shape`.
    fn read_stored(&self, name: &str) -> Result<Vec<f32>, GoldenError> {
        let entry = self.entry(name)?;
        fits(&entry.shape, entry.full()).map_err(|d| self.err(name, d))?;
        let path = self.dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|source| GoldenError::Io {
            path: path.clone(),
            source,
        })?;
        if bytes.len() % 4 != 0 {
            return Err(self.err(name, format!("{} bytes is not a whole number of float32", bytes.len())));
        }
        let declared: usize = entry.shape.iter().product();
        if bytes.len() / 4 != declared {
            let detail = format!(
                "{} values; case.toml shape {:?} holds {declared}",
                bytes.len() / 4,
                entry.shape
            );
            return Err(self.err(name, detail));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Reads tensor `name` as the parts see it (zero-padded to its `full_shape`) and gives it
    /// `shape` (e.g. the manifest's, with the batch axis), which must hold as many values.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor, GoldenError> {
        let entry = self.entry(name)?;
        let full: usize = entry.full().iter().product();
        let wanted: usize = shape.iter().product();
        if full != wanted {
            let detail = format!(
                "full shape {:?} holds {full}, requested {shape:?} holds {wanted}",
                entry.full()
            );
            return Err(self.err(name, detail));
        }
        let data = pad(&self.read_stored(name)?, &entry.shape, entry.full()).map_err(|d| self.err(name, d))?;
        Tensor::from_vec(shape, data).map_err(|e| self.err(name, e.to_string()))
    }

    /// The stored region of tensor `name`, with its stored shape.
    pub fn stored(&self, name: &str) -> Result<Tensor, GoldenError> {
        let data = self.read_stored(name)?;
        Tensor::from_vec(&self.entry(name)?.shape, data).map_err(|e| self.err(name, e.to_string()))
    }

    /// The region of `got` (any shape holding `full_shape`'s values) that the case stores for
    /// `name`: what is compared with [`GoldenCase::stored`].
    pub fn crop_to_stored(&self, name: &str, got: &Tensor) -> Result<Tensor, GoldenError> {
        let entry = self.entry(name)?;
        let data = crop(got.data(), entry.full(), &entry.shape).map_err(|d| self.err(name, d))?;
        Tensor::from_vec(&entry.shape, data).map_err(|e| self.err(name, e.to_string()))
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
pub fn part_parity(
    case: &GoldenCase,
    backend: &mut dyn Backend,
) -> Result<Result<Vec<OutputParity>, String>, GoldenError> {
    let spec: PartSpec = backend.spec().clone();
    let mut inputs = Vec::with_capacity(spec.inputs.len());
    for s in &spec.inputs {
        let Some(name) = case.find(&spec.name, &s.name, false) else {
            return Ok(Err(format!(
                "case {} has no tensor for {} input `{}`",
                case.name, spec.name, s.name
            )));
        };
        inputs.push(case.tensor(&name, &s.shape)?);
    }
    let mut outputs: Vec<Tensor> = spec.outputs.iter().map(|s| Tensor::zeros(&s.shape)).collect();
    let refs: Vec<&Tensor> = inputs.iter().collect();
    backend.run(&refs, &mut outputs)?;
    let mut rows = Vec::new();
    for (s, got) in spec.outputs.iter().zip(&outputs) {
        let Some(name) = case.find(&spec.name, &s.name, true) else {
            continue;
        };
        let want = case.stored(&name)?;
        let got = &case.crop_to_stored(&name, got)?;
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

/// `stored` fits inside `full`: same rank, no axis longer.
fn fits(stored: &[usize], full: &[usize]) -> Result<(), String> {
    if stored.len() != full.len() || stored.iter().zip(full).any(|(s, f)| s > f) {
        return Err(format!("stored shape {stored:?} does not fit in full_shape {full:?}"));
    }
    Ok(())
}

/// Offsets (in the stored data, in the full data) of each contiguous innermost run of the
/// stored region, which sits at the start of every axis of `full`; runs are `stored.last()` long.
fn runs(stored: &[usize], full: &[usize]) -> Vec<(usize, usize)> {
    let Some((&inner, outer)) = stored.split_last() else {
        return vec![(0, 0)];
    };
    let mut strides = vec![1usize; full.len()];
    for j in (0..full.len().saturating_sub(1)).rev() {
        strides[j] = strides[j + 1] * full[j + 1];
    }
    (0..outer.iter().product::<usize>())
        .map(|i| {
            let (mut rem, mut off) = (i, 0);
            for j in (0..outer.len()).rev() {
                off += (rem % outer[j]) * strides[j];
                rem /= outer[j];
            }
            (i * inner, off)
        })
        .collect()
}

/// Row-major `data` of shape `stored` zero-padded at the end of each axis to `full`.
pub fn pad(data: &[f32], stored: &[usize], full: &[usize]) -> Result<Vec<f32>, String> {
    fits(stored, full)?;
    if data.len() != stored.iter().product::<usize>() {
        return Err(format!("{} values for stored shape {stored:?}", data.len()));
    }
    let len = stored.last().copied().unwrap_or(1);
    let mut out = vec![0.0f32; full.iter().product()];
    for (s, f) in runs(stored, full) {
        out[f..f + len].copy_from_slice(&data[s..s + len]);
    }
    Ok(out)
}

/// The leading `stored` region of row-major `data` of shape `full` (the inverse of [`pad`]).
pub fn crop(data: &[f32], full: &[usize], stored: &[usize]) -> Result<Vec<f32>, String> {
    fits(stored, full)?;
    if data.len() != full.iter().product::<usize>() {
        return Err(format!("{} values for full shape {full:?}", data.len()));
    }
    let len = stored.last().copied().unwrap_or(1);
    let mut out = Vec::with_capacity(stored.iter().product());
    for (_, f) in runs(stored, full) {
        out.extend_from_slice(&data[f..f + len]);
    }
    Ok(out)
}

/// Largest |a - b|; NaN anywhere gives NaN.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.data().iter().zip(b.data()).fold(0.0f32, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(d)
        }
    })
}

/// Every element within `tol` of `want` (NaN never is).
pub fn within(got: &Tensor, want: &Tensor, tol: Tolerance) -> bool {
    got.shape() == want.shape()
        && got
            .data()
            .iter()
            .zip(want.data())
            .all(|(g, w)| (g - w).abs() <= tol.atol + tol.rtol * w.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_names_follow_design() {
        assert_eq!(candidates("s_theta", "x_t", false), vec!["s_theta_x_t", "x_t"]);
        assert_eq!(candidates("s_theta", "score", true), vec!["s_theta_score"]);
        assert_eq!(
            candidates("encoders", "text", false),
            vec!["encoders_text", "std_text", "text_std"]
        );
        assert_eq!(candidates("encoders", "h", true), vec!["encoders_h", "h"]);
        assert_eq!(
            candidates("fusion", "adj", false),
            vec!["fusion_adj", "adj_fusion", "adj"]
        );
        assert_eq!(candidates("recon", "audio", true), vec!["recon_audio"]);
    }

    #[test]
    fn pad_and_crop_place_the_stored_region_at_the_start_of_each_axis() {
        // [2, 2, 3] stored inside [2, 3, 4]: element (a, b, c) lands at a*12 + b*4 + c.
        let data: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let full = pad(&data, &[2, 2, 3], &[2, 3, 4]).unwrap();
        assert_eq!(full.len(), 24);
        for (a, b, c) in (0..2).flat_map(|a| (0..2).flat_map(move |b| (0..3).map(move |c| (a, b, c)))) {
            assert_eq!(full[a * 12 + b * 4 + c], data[a * 6 + b * 3 + c]);
        }
        assert_eq!(full.iter().filter(|v| **v != 0.0).count(), 12);
        assert_eq!(crop(&full, &[2, 3, 4], &[2, 2, 3]).unwrap(), data);
        assert_eq!(pad(&[5.0], &[], &[]).unwrap(), vec![5.0]);
        assert_eq!(pad(&data, &[12], &[12]).unwrap(), data);
        assert!(pad(&data, &[2, 2, 3], &[2, 3]).is_err());
        assert!(pad(&data, &[2, 2, 3], &[2, 1, 4]).is_err());
        assert!(pad(&data[1..], &[2, 2, 3], &[2, 3, 4]).is_err());
        assert!(crop(&data, &[2, 3, 4], &[2, 2, 3]).is_err());
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
