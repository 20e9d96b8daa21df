//! The standardisation rule of DESIGN.md "Conventions" on the shipped model (32 visual columns
//! constant in training): a constant column standardises to 0 whatever the input and is
//! reconstructed as the training mean; every other z is clipped to +-Z_CLIP, so one utterance
//! with absurd (finite) values never fails a window nor gives a non-finite encoder input.
//! Before the rule, such an utterance gave +-Inf inputs: NaN latents under ONNX Runtime (a
//! failed window) and saturated, meaningless ones under tract. With `--features ort` and
//! ORT_DYLIB_PATH set, the windows also run through ONNX Runtime.

use crate::util::{repo, wiggle};
use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::manifest::{Normalisation, STD_CONSTANT, Z_CLIP};
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{Completion, Pipeline, Utterance, Window};

const N: usize = 6;
const BAD: usize = 2;
/// Utterance whose visual modality is missing (the sampler runs in every window holding it).
const NO_VISUAL: usize = 4;

fn pipeline() -> Pipeline {
    pipeline_on(BackendKind::Tract, &BackendOptions::default())
}

fn pipeline_on(kind: BackendKind, opts: &BackendOptions) -> Pipeline {
    let model = Model::load(&repo().join("models/gsdnet-mosi"), kind, opts).unwrap();
    Pipeline::new(model, &gsdnet_edge::pipeline::PipelineOptions::default()).unwrap()
}

/// Tract, plus ONNX Runtime (CPU) when compiled in and ORT_DYLIB_PATH names its library.
fn backends() -> Vec<(BackendKind, BackendOptions)> {
    let mut out = vec![(BackendKind::Tract, BackendOptions::default())];
    let lib = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty());
    if let (true, Some(lib)) = (cfg!(feature = "ort"), lib) {
        let opts = BackendOptions {
            ort_library: Some(lib.into()),
            ..BackendOptions::default()
        };
        out.push((BackendKind::Ort, opts));
    }
    out
}

fn constant_columns(norm: &Normalisation, m: usize) -> Vec<usize> {
    (0..norm.std[m].len()).filter(|&c| norm.is_constant(m, c)).collect()
}

/// Plausible raw features (mean + a fraction of std), constant columns at the mean; utterance
/// `BAD` has 1e30 and +-f32::MAX in normal columns (unclipped z: 2e30 and +-Inf), 1e-3 and
/// +-1e33 in constant ones (z over a floored std: 1e3 and +-Inf).
fn features(norm: &Normalisation) -> Vec<[Vec<f32>; 3]> {
    let mut feats: Vec<[Vec<f32>; 3]> = (0..N)
        .map(|i| {
            std::array::from_fn(|m| {
                let (mean, std) = (&norm.mean[m], &norm.std[m]);
                (0..mean.len())
                    .map(|c| mean[c] + 0.5 * std[c] * wiggle(1000 * i + 10 * c + m))
                    .collect()
            })
        })
        .collect();
    let constant = constant_columns(norm, 2);
    feats[BAD][0][0] = 1e30;
    feats[BAD][1][1] = f32::MAX;
    feats[BAD][1][2] = -f32::MAX;
    feats[BAD][2][constant[0]] = 1e-3;
    feats[BAD][2][constant[1]] = 1e33;
    feats[BAD][2][constant[2]] = -1e33;
    feats
}

fn window(feats: &[[Vec<f32>; 3]], range: std::ops::Range<usize>) -> Window<'_> {
    Window {
        utterances: range
            .map(|i| Utterance {
                speaker: 0,
                features: std::array::from_fn(|m| (m != 2 || i != NO_VISUAL).then_some(feats[i][m].as_slice())),
            })
            .collect(),
    }
}

/// Every encoder input of the last run is finite, within +-Z_CLIP, and 0 in constant columns.
fn check_inputs(p: &Pipeline, what: &str) {
    let norm = &p.model().manifest.norm;
    for (m, t) in p.intermediates().inputs.iter().enumerate() {
        let dim = norm.std[m].len();
        for (j, &z) in t.data().iter().enumerate() {
            assert!(
                z.is_finite() && z.abs() <= Z_CLIP,
                "{what}: modality {m} input {j} is {z}"
            );
            if norm.is_constant(m, j % dim) {
                assert_eq!(z, 0.0, "{what}: constant column {} of modality {m}", j % dim);
            }
        }
    }
}

#[test]
fn the_shipped_model_has_32_constant_visual_columns() {
    let p = pipeline();
    let norm = &p.model().manifest.norm;
    assert_eq!(constant_columns(norm, 0).len(), 0);
    assert_eq!(constant_columns(norm, 1).len(), 0);
    assert_eq!(constant_columns(norm, 2).len(), 32);
    assert!(constant_columns(norm, 2).iter().all(|&c| norm.std[2][c] < STD_CONSTANT));
}

#[test]
fn one_bad_utterance_never_fails_a_window() {
    for (kind, opts) in backends() {
        let mut p = pipeline_on(kind, &opts);
        let feats = features(&p.model().manifest.norm);
        // Windows as a conversation slides over them: growing prefixes, then shrinking suffixes.
        let ranges: Vec<_> = (1..=N).map(|e| 0..e).chain((1..N).map(|s| s..N)).collect();
        for completion in Completion::ALL {
            for (index, range) in ranges.iter().enumerate() {
                let what = format!("{kind:?} {completion} window {range:?}");
                let win = window(&feats, range.clone());
                let out = p
                    .run(&win, completion, &mut SeededNoise::from_key(index as u64))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                check_inputs(&p, &what);
                for u in &out.utterances {
                    assert!(u.probs.iter().all(|v| v.is_finite()), "{what}: {:?}", u.probs);
                    assert!(u.regression.is_some_and(f32::is_finite), "{what}");
                    assert!(u.features.iter().flatten().all(|v| v.is_finite()), "{what}");
                }
                if range.contains(&BAD) {
                    let row = |m: usize| {
                        let t = &p.intermediates().inputs[m];
                        t.data()[(BAD - range.start) * t.shape()[2]..][..3].to_vec()
                    };
                    assert_eq!(row(0)[0], Z_CLIP, "{what}: 1e30 clips to the bound");
                    assert_eq!(row(1)[1..], [Z_CLIP, -Z_CLIP], "{what}: +-f32::MAX clip");
                }
            }
        }
        // A window after the bad ones gives exactly what a fresh pipeline gives.
        let win = window(&feats, BAD + 1..N);
        let after = p.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(7)).unwrap();
        let fresh = pipeline_on(kind, &opts)
            .run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(7))
            .unwrap();
        assert_eq!(after, fresh, "{kind:?}");
    }
}

#[test]
fn a_reconstructed_constant_column_is_the_training_mean() {
    let mut p = pipeline();
    let norm = p.model().manifest.norm.clone();
    let feats = features(&norm);
    let constant = constant_columns(&norm, 2);
    for completion in Completion::ALL {
        let out = p
            .run(&window(&feats, 0..N), completion, &mut SeededNoise::from_key(3))
            .unwrap();
        let u = &out.utterances[NO_VISUAL];
        assert!(u.imputed[2]);
        for &c in &constant {
            assert_eq!(u.features[2][c], norm.mean[2][c], "{completion}: visual column {c}");
        }
        assert!((0..100).any(|c| !norm.is_constant(2, c) && u.features[2][c] != norm.mean[2][c]));
    }
}

#[test]
fn the_rule_on_a_synthetic_normalisation() {
    // Column 0 constant (std 0, mean 3), column 1 std 2 mean -1, column 2 std just below the
    // threshold.
    let col = |v: [f32; 3]| v.to_vec();
    let norm = Normalisation {
        mean: [col([3.0, -1.0, 5.0]), col([0.0; 3]), col([0.0; 3])],
        std: [col([0.0, 2.0, STD_CONSTANT * 0.5]), col([1.0; 3]), col([1.0; 3])],
    };
    assert!(norm.is_constant(0, 0) && !norm.is_constant(0, 1) && norm.is_constant(0, 2));
    for x in [3.0, 3.000001, -1e-30, 1e30, f32::MAX, f32::MIN, 0.0] {
        assert_eq!(norm.standardise(0, 0, x), 0.0, "constant column, x = {x}");
        assert_eq!(norm.standardise(0, 2, x), 0.0, "near-constant column, x = {x}");
    }
    assert_eq!(norm.standardise(0, 1, 2.0), 1.5);
    assert_eq!(norm.standardise(0, 1, 1e30), Z_CLIP);
    assert_eq!(norm.standardise(0, 1, f32::MIN), -Z_CLIP);
    assert_eq!(norm.standardise(0, 1, -1.0 + 2.0 * Z_CLIP), Z_CLIP);
    for z in [0.0, 1.5, -7.0, Z_CLIP] {
        assert_eq!(
            norm.destandardise(0, 0, z),
            3.0,
            "constant column comes back as the mean"
        );
        assert_eq!(norm.destandardise(0, 2, z), 5.0);
        assert_eq!(norm.destandardise(0, 1, z), z * 2.0 - 1.0);
    }
}

#[test]
fn a_negative_std_is_a_manifest_error() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crate::util::tiny_model()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let file = dir.path().join("manifest.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("audio_std = ["), "fixture layout changed");
    // Negates the first (positive) audio std.
    std::fs::write(&file, text.replace("audio_std = [", "audio_std = [-")).unwrap();
    let err = gsdnet_edge::manifest::Manifest::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("audio_std has a negative value"), "{err}");
}
