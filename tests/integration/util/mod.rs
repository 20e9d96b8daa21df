//! Helpers shared by the integration tests: repository paths, a model folder loaded as a tract
//! pipeline, raw f32 files and tolerance checks here; in the submodules the daemon harness with
//! its mock runners and the serial rig (`daemon`), the real-pipeline replay rig (`replay`),
//! pipeline checks on the fixture models (`tiny`), batching checks, ort helpers, property-test
//! generators and the IEMOCAP splits with the models' text view.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod batching;
pub mod daemon;
pub mod iemocap;
#[cfg(feature = "ort")]
pub mod ort;
pub mod prop;
pub mod replay;
pub mod tiny;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that has the project's packages: the test command's virtual environment
/// (`.venv`, made by scripts/test.sh) when it exists, else `python3` on PATH, so a test does not
/// depend on which Python comes first on PATH.
pub fn python3() -> PathBuf {
    let venv = repo().join(".venv/bin/python3");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

pub fn tiny_model() -> PathBuf {
    repo().join("tests/fixtures/tiny-model")
}

/// The two-modality fixture: text 12, audio 1024, no visual; classes calm/happy/angry; no
/// regression head.
pub fn tiny_ta3() -> PathBuf {
    repo().join("tests/fixtures/tiny-ta3")
}

/// The model in `dir` on tract (default backend options), as a pipeline with `opts`.
pub fn tract_pipeline(dir: &Path, opts: &gsdnet_edge::pipeline::PipelineOptions) -> gsdnet_edge::pipeline::Pipeline {
    use gsdnet_edge::backend::{BackendKind, BackendOptions};
    let model = gsdnet_edge::model::Model::load(dir, BackendKind::Tract, &BackendOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    gsdnet_edge::pipeline::Pipeline::new(model, opts).unwrap()
}

/// Little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len() % 4, 0, "{}: size not a multiple of 4", path.display());
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Largest violation of `|a - b| <= atol + rtol |b|` as (index, a, b), or None when all pass.
pub fn violation(a: &[f32], b: &[f32], atol: f64, rtol: f64) -> Option<(usize, f32, f32, f64)> {
    assert_eq!(a.len(), b.len(), "length {} vs {}", a.len(), b.len());
    let mut worst: Option<(usize, f32, f32, f64)> = None;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let excess = f64::from((x - y).abs()) - (atol + rtol * f64::from(y.abs()));
        if (excess > 0.0 || !x.is_finite()) && worst.is_none_or(|w| excess > w.3) {
            worst = Some((i, x, y, excess));
        }
    }
    worst
}

/// Panics with a readable message when `a` and `b` disagree beyond the tolerance.
pub fn assert_close(what: &str, a: &[f32], b: &[f32], atol: f64, rtol: f64) {
    if let Some((i, x, y, _)) = violation(a, b, atol, rtol) {
        let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        panic!("{what}: index {i}: rust {x} vs reference {y} (atol {atol}, rtol {rtol}; max |diff| {max})");
    }
}

/// A deterministic pseudo-random value in [-1, 1) (test inputs, not data).
pub fn wiggle(i: usize) -> f32 {
    ((i as f32 * 12.9898).sin() * 43758.547).fract()
}

#[derive(serde::Deserialize)]
struct RefPart {
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// Every part of the fixture model in `model_dir` on tract, fed the inputs of its
/// `reference/reference.toml` (onnxruntime's, from `tests/fixtures/make_tiny_model.py`), must
/// give its recorded outputs within atol 1e-5, rtol 1e-4. `extra` runs on each loaded part.
pub fn parts_match_reference(
    model_dir: &Path,
    mut extra: impl FnMut(&gsdnet_edge::backend::PartSpec, &mut dyn gsdnet_edge::backend::Backend),
) {
    use gsdnet_edge::backend::{self, BackendKind, BackendOptions};
    use gsdnet_edge::tensor::Tensor;
    let manifest = gsdnet_edge::manifest::Manifest::load(model_dir).unwrap();
    let dir = model_dir.join("reference");
    let text = std::fs::read_to_string(dir.join("reference.toml")).unwrap();
    let refs: std::collections::BTreeMap<String, RefPart> = toml::from_str(&text).unwrap();
    assert_eq!(refs.len(), 5);
    for spec in &manifest.parts {
        let r = &refs[&spec.name];
        assert_eq!(r.inputs.len(), spec.inputs.len(), "{}", spec.name);
        assert_eq!(r.outputs.len(), spec.outputs.len(), "{}", spec.name);
        let mut be = backend::load(BackendKind::Tract, spec, &BackendOptions::default()).unwrap();
        let inputs: Vec<Tensor> = spec
            .inputs
            .iter()
            .zip(&r.inputs)
            .map(|(s, f)| Tensor::from_vec(&s.shape, read_f32(&dir.join(f))).unwrap())
            .collect();
        let mut outputs: Vec<Tensor> = spec.outputs.iter().map(|s| Tensor::zeros(&s.shape)).collect();
        let refs_in: Vec<&Tensor> = inputs.iter().collect();
        be.run(&refs_in, &mut outputs).unwrap();
        for (o, f) in outputs.iter().zip(&r.outputs) {
            assert_close(
                &format!("{} {f}", spec.name),
                o.data(),
                &read_f32(&dir.join(f)),
                1e-5,
                1e-4,
            );
        }
        extra(spec, be.as_mut());
    }
}
