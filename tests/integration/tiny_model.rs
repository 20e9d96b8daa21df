//! The tract backend, model loading and the pipeline on `tests/fixtures/tiny-model` (random
//! weights, DESIGN.md's exact I/O; regenerate with `tests/fixtures/make_tiny_model.py`).

use std::path::Path;

use crate::util::tiny::{
    assert_complete_window_skips_the_sampler, assert_completions_differ, assert_observed_unchanged,
};
use crate::util::{tiny_model, tract_pipeline, wiggle};
use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::manifest::Manifest;
use gsdnet_edge::masks::Pattern;
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{Completion, Pipeline, PipelineOptions, Utterance, Window};
use gsdnet_edge::tensor::Tensor;

#[test]
fn tract_matches_onnxruntime_on_every_part() {
    crate::util::parts_match_reference(&tiny_model(), |spec, be| {
        // Wrong input shape is a clear error.
        let mut inputs: Vec<Tensor> = spec.inputs.iter().map(|s| Tensor::zeros(&s.shape)).collect();
        inputs[0] = Tensor::zeros(&[1, 2]);
        let mut outputs: Vec<Tensor> = spec.outputs.iter().map(|s| Tensor::zeros(&s.shape)).collect();
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let err = be.run(&refs, &mut outputs).unwrap_err().to_string();
        assert!(err.contains(&spec.name) && err.contains("shape"), "{err}");
    });
}

fn features(n: usize) -> Vec<[Vec<f32>; 3]> {
    (0..n)
        .map(|i| {
            std::array::from_fn(|m| {
                (0..[100, 73, 100][m])
                    .map(|c| 2.0 * wiggle(1000 * i + 10 * c + m))
                    .collect()
            })
        })
        .collect()
}

fn window<'a>(feats: &'a [[Vec<f32>; 3]], avail: &[[bool; 3]]) -> Window<'a> {
    Window {
        utterances: feats
            .iter()
            .zip(avail)
            .enumerate()
            .map(|(i, (f, a))| Utterance {
                speaker: (i % 2) as u32,
                features: std::array::from_fn(|m| a[m].then_some(f[m].as_slice())),
            })
            .collect(),
    }
}

/// Availability of each utterance from its pattern ("TV": text and visual).
fn by_pattern<const N: usize>(patterns: [&str; N]) -> [[bool; 3]; N] {
    patterns.map(|p| p.parse::<Pattern>().unwrap().avail())
}

fn pipeline() -> Pipeline {
    tract_pipeline(&tiny_model(), &PipelineOptions::default())
}

#[test]
fn pipeline_outputs_are_consistent() {
    let mut p = pipeline();
    let feats = features(5);
    let avail = by_pattern(["TAV", "TV", "A", "TAV", "V"]);
    let win = window(&feats, &avail);
    let mut outs = Vec::new();
    for c in Completion::ALL {
        let out = p.run(&win, c, &mut SeededNoise::from_key(1)).unwrap();
        assert_eq!(out.utterances.len(), 5);
        assert_eq!(out.sampled, c == Completion::Gsdnet);
        for (u, (f, a)) in out.utterances.iter().zip(feats.iter().zip(&avail)) {
            assert!((u.probs[0] + u.probs[1] - 1.0).abs() < 1e-6);
            assert_eq!(u.label, usize::from(u.probs[1] > u.probs[0]));
            assert!(u.regression.is_some_and(f32::is_finite));
            assert_eq!(u.imputed, a.map(|x| !x));
            assert_observed_unchanged(&u.features, f, a);
        }
        outs.push(out);
    }
    assert_completions_differ(&outs);
    // Same seed, same result; a different seed changes the sample.
    let again = p.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(1)).unwrap();
    assert_eq!(again, outs[0]);
    let other = p.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(2)).unwrap();
    assert_ne!(other, outs[0]);
}

#[test]
fn complete_window_skips_the_sampler() {
    let mut p = pipeline();
    let feats = features(8);
    let win = window(&feats, &[[true; 3]; 8]);
    assert_complete_window_skips_the_sampler(&mut p, &win, 7);
}

#[test]
fn bad_windows_are_errors() {
    let mut p = pipeline();
    let feats = features(9);
    let too_long = window(&feats, &[[true; 3]; 9]);
    let err = p
        .run(&too_long, Completion::Gsdnet, &mut SeededNoise::from_key(0))
        .unwrap_err();
    assert!(err.to_string().contains("1 to 8"), "{err}");
    let empty = Window::default();
    assert!(p
        .run(&empty, Completion::Gsdnet, &mut SeededNoise::from_key(0))
        .is_err());
    let short = vec![0.0f32; 50];
    let mut nan = feats[0][1].clone();
    nan[3] = f32::NAN;
    for (m, bad, want) in [(0, &short, "has 50 values, expected 100"), (1, &nan, "non-finite")] {
        let mut win = window(&feats[..2], &[[true; 3]; 2]);
        win.utterances[1].features[m] = Some(bad.as_slice());
        let err = p
            .run(&win, Completion::Meanfill, &mut SeededNoise::from_key(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want) && err.contains("utterance 1"), "{err}");
    }
}

/// A temporary copy of the tiny model folder.
fn tiny_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(tiny_model()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    dir
}

/// Copies the tiny model to a temp dir, applies `edit` to the manifest text, loads it.
fn load_edited(edit: impl Fn(&Path, String) -> String) -> String {
    let dir = tiny_dir();
    let path = dir.path().join("manifest.toml");
    let text = edit(dir.path(), std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, text).unwrap();
    match Model::load(dir.path(), BackendKind::Tract, &BackendOptions::default()) {
        Ok(_) => "loaded".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_models_give_precise_errors() {
    assert_eq!(load_edited(|_, t| t), "loaded");
    let err = load_edited(|d, t| {
        std::fs::remove_file(d.join("recon.onnx")).unwrap();
        t
    });
    assert!(err.contains("recon") && err.contains("does not exist"), "{err}");
    let err = load_edited(|_, t| {
        t.replace(
            "{ name = \"h\", shape = [1, 3, 8, 4] }",
            "{ name = \"h\", shape = [1, 3, 8, 5] }",
        )
    });
    assert!(err.contains("encoders") && err.contains("DESIGN.md expects"), "{err}");
    let err = load_edited(|d, t| {
        let mut bytes = std::fs::read(d.join("fusion.onnx")).unwrap();
        bytes.push(0);
        std::fs::write(d.join("fusion.onnx"), bytes).unwrap();
        t
    });
    assert!(err.contains("fusion") && err.contains("sha256"), "{err}");
    let err = load_edited(|_, t| t.replace("k = 3", "k = 9"));
    assert!(err.contains("k <= window"), "{err}");
    let err = load_edited(|_, t| t.replace("[graph]\nwindow_same = 2\n", "[graph]\n"));
    assert!(err.contains("window_same"), "{err}");
    let err = load_edited(|_, t| t.replacen("audio_std = [", "audio_std = [1.0, ", 1));
    assert!(err.contains("audio_std has 74 values"), "{err}");
    model_defined_layout_errors();
}

/// The manifest defines modalities, sizes and classes; each mistake in them is named.
fn model_defined_layout_errors() {
    // The old format kept feature sizes in [dims].
    let err = load_edited(|_, t| t.replace("[dims]\n", "[dims]\ntext = 100\n"));
    assert!(err.contains("[dims]") && err.contains("[modalities]"), "{err}");
    let err = load_edited(|_, t| t.replace("audio = 73\nvisual = 100\n", ""));
    assert!(err.contains("two or three"), "{err}");
    let err = load_edited(|_, t| t.replace("visual = 100\n", "visual = 100\ndepth = 5\n"));
    assert!(err.contains("`depth` is not a modality"), "{err}");
    let err = load_edited(|_, t| t.replace("visual = 100\n", "visual = 4096\n"));
    assert!(err.contains("1..=2048"), "{err}");
    let err = load_edited(|_, t| t.replace("classes = [\"negative\", \"positive\"]", "classes = [\"only\"]"));
    assert!(err.contains("2 to 64 classes"), "{err}");
    let err = load_edited(|_, t| t.replace("classes = [\"negative\", \"positive\"]", "classes = [\"a\", \"a\"]"));
    assert!(err.contains("appears twice"), "{err}");
    // Three classes: fusion's logits no longer match the declared part.
    let err = load_edited(|_, t| t.replace("classes = [\"negative\", \"positive\"]", "classes = 3"));
    assert!(err.contains("fusion") && err.contains("logits [1, 8, 3]"), "{err}");
    let err = load_edited(|_, t| t.replace("has_regression = true", "has_regression = false"));
    assert!(err.contains("fusion") && err.contains("outputs"), "{err}");
    let err = load_edited(|_, t| t.replacen("visual_mean = [", "depth_mean = [1.0]\nvisual_mean = [", 1));
    assert!(err.contains("depth_mean: not a statistic"), "{err}");
}

/// A copy of the tiny model whose manifest ends with `extra` (a `[calibration]` table).
fn tiny_copy(extra: &str) -> tempfile::TempDir {
    let dir = tiny_dir();
    let path = dir.path().join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap() + extra;
    std::fs::write(&path, text).unwrap();
    dir
}

#[test]
fn calibration_temperature_divides_the_logits() {
    assert_eq!(Manifest::load(&tiny_model()).unwrap().calibration.temperature, 1.0);
    let dir = tiny_copy("\n[calibration]\ntemperature = 2.0\nfitted_on = \"val\"\n");
    let mut hot = tract_pipeline(dir.path(), &PipelineOptions::default());
    assert_eq!(hot.model().manifest.calibration.temperature, 2.0);
    let mut plain = pipeline();
    let feats = features(4);
    let avail = by_pattern(["TV", "AV", "TAV", "T"]);
    let win = window(&feats, &avail);
    for c in Completion::ALL {
        let a = plain.run(&win, c, &mut SeededNoise::from_key(3)).unwrap();
        let b = hot.run(&win, c, &mut SeededNoise::from_key(3)).unwrap();
        let logits = hot.intermediates().logits.data().to_vec();
        for (i, (ua, ub)) in a.utterances.iter().zip(&b.utterances).enumerate() {
            assert_eq!(ua.label, ub.label, "{c}: the temperature moved a label");
            assert_eq!(ua.regression, ub.regression);
            let (l0, l1) = (logits[2 * i] / 2.0, logits[2 * i + 1] / 2.0);
            let m = l0.max(l1);
            let (e0, e1) = ((l0 - m).exp(), (l1 - m).exp());
            assert_eq!(ub.probs, [e0 / (e0 + e1), e1 / (e0 + e1)], "{c}: utterance {i}");
            // Softer: the calibrated confidence is closer to 1/2 unless the logits tie.
            assert!((ub.probs[0] - 0.5).abs() <= (ua.probs[0] - 0.5).abs());
        }
    }
    for bad in ["0.0", "-1.0", "nan", "\"warm\""] {
        let dir = tiny_copy(&format!("\n[calibration]\ntemperature = {bad}\n"));
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("[calibration] temperature"), "{bad}: {err}");
    }
}

#[test]
fn calibration_patterns_pick_each_utterances_temperature_by_its_availability() {
    let dir = tiny_copy("\n[calibration]\ntemperature = 3.0\n\n[calibration.patterns]\nTV = 2.0\nAV = 0.5\n");
    let mut p = tract_pipeline(dir.path(), &PipelineOptions::default());
    let feats = features(4);
    // TV, AV, TAV (unlisted: 3.0), T (unlisted: 3.0).
    let avail = by_pattern(["TV", "AV", "TAV", "T"]);
    let want_t = [2.0f32, 0.5, 3.0, 3.0];
    let win = window(&feats, &avail);
    for c in Completion::ALL {
        let out = p.run(&win, c, &mut SeededNoise::from_key(3)).unwrap();
        let logits = p.intermediates().logits.data().to_vec();
        for (i, u) in out.utterances.iter().enumerate() {
            let (l0, l1) = (logits[2 * i] / want_t[i], logits[2 * i + 1] / want_t[i]);
            let m = l0.max(l1);
            let (e0, e1) = ((l0 - m).exp(), (l1 - m).exp());
            assert_eq!(u.probs, [e0 / (e0 + e1), e1 / (e0 + e1)], "{c}: utterance {i}");
        }
    }
    let dir = tiny_copy("\n[calibration]\n[calibration.patterns]\nTX = 1.0\n");
    let err = Manifest::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("TX"), "{err}");
}

fn pipeline_with_samples(s: usize) -> Pipeline {
    let opts = PipelineOptions {
        samples: Some(s),
        ..Default::default()
    };
    tract_pipeline(&tiny_model(), &opts)
}

/// A window with missing entries of every modality (so the sampler runs).
const GAPPY: [&str; 6] = ["TV", "AV", "TA", "T", "V", "TAV"];

#[test]
fn samples_average_the_per_sample_probabilities() {
    use gsdnet_edge::diffusion::sample_key;
    let (feats, key) = (features(6), 0xC0FFEE);
    let win = window(&feats, &by_pattern(GAPPY));
    let mut four = pipeline_with_samples(4);
    let out = four
        .run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(key))
        .unwrap();
    let logits4 = four.intermediates().logits.data().to_vec();
    // By hand: four single-sample runs on the sample keys, averaged in f64 in sample order.
    let mut one = pipeline();
    let runs: Vec<_> = (0..4)
        .map(|s| {
            one.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(sample_key(key, s)))
                .unwrap()
        })
        .collect();
    assert_ne!(runs[0], runs[1], "samples 0 and 1 drew the same noise");
    for (i, u) in out.utterances.iter().enumerate() {
        let mean = |f: &dyn Fn(&gsdnet_edge::pipeline::UtteranceOutput) -> f32| {
            (runs.iter().map(|r| f64::from(f(&r.utterances[i]))).sum::<f64>() / 4.0) as f32
        };
        let probs = [mean(&|o| o.probs[0]), mean(&|o| o.probs[1])];
        assert_eq!(u.probs, probs, "utterance {i}");
        assert_eq!(u.label, usize::from(probs[1] > probs[0]));
        assert_eq!(u.regression, Some(mean(&|o| o.regression.unwrap())));
        // Features and imputation flags are sample 0's, i.e. the single-sample run's.
        assert_eq!(u.features, runs[0].utterances[i].features);
        assert_eq!(u.imputed, runs[0].utterances[i].imputed);
    }
    // Sample 0 runs last: the intermediates are exactly the single-sample run's.
    one.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(key))
        .unwrap();
    assert_eq!(logits4, one.intermediates().logits.data());
}

#[test]
fn one_sample_and_deterministic_modes_are_todays_path() {
    let feats = features(6);
    let win = window(&feats, &by_pattern(GAPPY));
    let mut plain = pipeline();
    let mut one = pipeline_with_samples(1);
    let mut four = pipeline_with_samples(4);
    assert_eq!((plain.samples(), one.samples(), four.samples()), (1, 1, 4));
    for c in Completion::ALL {
        let a = plain.run(&win, c, &mut SeededNoise::from_key(5)).unwrap();
        let b = one.run(&win, c, &mut SeededNoise::from_key(5)).unwrap();
        assert_eq!(a, b, "{c}: S = 1 differs from the default path");
        let d = four.run(&win, c, &mut SeededNoise::from_key(5)).unwrap();
        if c == Completion::Gsdnet {
            assert_ne!(a, d, "four samples gave the single-sample result");
        } else {
            assert_eq!(a, d, "{c} is deterministic: S must not change it");
        }
    }
    // Nothing missing: the sampler is skipped, S has no effect.
    let full = window(&feats, &[[true; 3]; 6]);
    let a = plain
        .run(&full, Completion::Gsdnet, &mut SeededNoise::from_key(5))
        .unwrap();
    assert_eq!(
        a,
        four.run(&full, Completion::Gsdnet, &mut SeededNoise::from_key(5))
            .unwrap()
    );
}

#[test]
fn multi_sample_windows_depend_only_on_their_key() {
    let feats = features(7);
    let win = window(&feats[..6], &by_pattern(GAPPY));
    let other = window(&feats[1..], &[[false, true, true]; 6]);
    let mut p = pipeline_with_samples(3);
    let first = p.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(11)).unwrap();
    assert_eq!(
        first,
        p.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(11)).unwrap()
    );
    p.run(&other, Completion::Gsdnet, &mut SeededNoise::from_key(12))
        .unwrap();
    p.run(&other, Completion::Zero, &mut SeededNoise::from_key(12)).unwrap();
    let after = p.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(11)).unwrap();
    assert_eq!(first, after, "a window's result depends on what ran before");
    let fresh = pipeline_with_samples(3)
        .run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(11))
        .unwrap();
    assert_eq!(first, fresh);
    assert_ne!(
        first,
        p.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(13)).unwrap()
    );
}

#[test]
fn samples_are_validated() {
    let set = |v: &'static str| {
        move |_: &Path, t: String| {
            t.replace(
                "sampler = \"euler_maruyama_inpaint\"\n",
                &format!("sampler = \"euler_maruyama_inpaint\"\nsamples = {v}\n"),
            )
        }
    };
    assert_eq!(load_edited(set("64")), "loaded");
    for bad in ["0", "65"] {
        let err = load_edited(set(bad));
        assert!(err.contains("[sde] samples must be 1..=64"), "{bad}: {err}");
    }
    let model = Model::load(&tiny_model(), BackendKind::Tract, &BackendOptions::default()).unwrap();
    let err = Pipeline::new(
        model,
        &PipelineOptions {
            samples: Some(0),
            ..Default::default()
        },
    )
    .err()
    .expect("S = 0 refused")
    .to_string();
    assert!(err.contains("samples must be 1..=64"), "{err}");
    assert_eq!(pipeline().samples(), 1, "the manifest's S when none is asked for");
}
