//! The model-defined contract on `tests/fixtures/tiny-ta3` (random weights; regenerate with
//! `tests/fixtures/make_tiny_model.py`): two modalities (text 12, audio 1024, no visual), three
//! classes (calm, happy, angry) and no regression head. Loading, tract parity with
//! onnxruntime, the pipeline, its errors, `eval::evaluate` and the masks, all at M = 2, K = 3.
//! Functional checks only: the weights are random, so no number here is an accuracy claim.

use crate::util::tiny::{
    assert_complete_window_skips_the_sampler, assert_completions_differ, assert_observed_unchanged,
};
use crate::util::{tiny_ta3, tract_pipeline, wiggle};
use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::eval::{self, EvalConfig, EvalError, ResultRow, Scenario};
use gsdnet_edge::manifest::{expected_io, CompletionChoice, CompletionPolicy, Manifest};
use gsdnet_edge::masks::{self, Pattern};
use gsdnet_edge::modality::{Modalities, Modality};
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{Completion, Pipeline, PipelineError, PipelineOptions, Utterance, Window};
use gsdnet_edge::recording::{Conversation, Recording, UtteranceRecord};

/// Feature sizes by `Modality::index` (no visual).
const SIZES: [usize; 3] = [12, 1024, 0];
const CLASSES: [&str; 3] = ["calm", "happy", "angry"];

fn mods() -> Modalities {
    Modalities::new(SIZES).unwrap()
}

fn pipeline() -> Pipeline {
    tract_pipeline(&tiny_ta3(), &PipelineOptions::default())
}

#[test]
fn manifest_declares_two_modalities_three_classes_and_no_regression() {
    let man = Manifest::load(&tiny_ta3()).unwrap();
    assert_eq!(man.modalities.count(), 2);
    assert_eq!(man.modalities, mods());
    assert_eq!(man.modalities.letters(), "TA");
    assert_eq!(man.modalities.size(Modality::Audio), Some(1024));
    assert_eq!(man.modalities.size(Modality::Visual), None);
    assert_eq!(man.modalities.slot(Modality::Audio), Some(1));
    assert_eq!(man.model.classes, CLASSES);
    assert!(!man.model.has_regression);
    assert_eq!((man.dims.window, man.dims.latent, man.dims.k), (8, 4, 3));
    assert!(man.norm.mean[2].is_empty() && man.norm.std[2].is_empty());
    assert_eq!(man.norm.mean[1].len(), 1024);
    let fusion = man.part("fusion").unwrap();
    let outs: Vec<(&str, &[usize])> = fusion
        .outputs
        .iter()
        .map(|s| (s.name.as_str(), s.shape.as_slice()))
        .collect();
    assert_eq!(
        outs,
        [("logits", &[1usize, 8, 3][..])],
        "fusion must have no `reg` output"
    );
    let enc: Vec<&str> = man
        .part("encoders")
        .unwrap()
        .inputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(enc, ["text", "audio"]);
    for p in &man.parts {
        let (ins, outs) = expected_io(&p.name, &man.modalities, 3, false, &man.dims, false).unwrap();
        assert_eq!((&p.inputs, &p.outputs), (&ins, &outs), "{}", p.name);
    }
}

#[test]
fn tract_matches_onnxruntime_on_every_part() {
    crate::util::parts_match_reference(&tiny_ta3(), |_, _| {});
}

/// Raw features of `n` utterances by `Modality::index`; visual empty.
fn features(n: usize) -> Vec<[Vec<f32>; 3]> {
    (0..n)
        .map(|i| std::array::from_fn(|m| (0..SIZES[m]).map(|c| 2.0 * wiggle(5000 * i + 3 * c + m)).collect()))
        .collect()
}

/// A window over `feats` with T/A availability `avail`; speakers 0, 1, 1, 0, 1, ...
fn window<'a>(feats: &'a [[Vec<f32>; 3]], avail: &[[bool; 2]]) -> Window<'a> {
    let utterances = feats
        .iter()
        .zip(avail)
        .enumerate()
        .map(|(i, (f, a))| Utterance {
            speaker: u32::from(i % 3 != 0),
            features: std::array::from_fn(|m| (m < 2 && a[m]).then_some(f[m].as_slice())),
        })
        .collect();
    Window { utterances }
}

#[test]
fn pipeline_completes_text_and_audio_with_three_classes() {
    let mut p = pipeline();
    let feats = features(5);
    let avail = [[true, true], [true, false], [false, true], [true, true], [false, true]];
    let win = window(&feats, &avail);
    let mut outs = Vec::new();
    for c in Completion::ALL {
        let out = p.run(&win, c, &mut SeededNoise::from_key(7)).unwrap();
        assert_eq!(out.utterances.len(), 5);
        assert_eq!(out.sampled, c == Completion::Gsdnet, "{c}");
        assert!(p.intermediates().reg.is_none());
        assert_eq!(p.intermediates().logits.shape(), &[1, 8, 3]);
        for (i, (u, (f, a))) in out.utterances.iter().zip(feats.iter().zip(&avail)).enumerate() {
            assert_eq!(u.probs.len(), 3, "{c} {i}");
            assert!(u.probs.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)));
            let sum: f32 = u.probs.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{c} {i}: probabilities sum to {sum}");
            let best = (0..3).fold(0, |b, k| if u.probs[k] > u.probs[b] { k } else { b });
            assert_eq!(u.label, best, "{c} {i}: label is not the argmax");
            assert_eq!(u.regression, None);
            assert_eq!(u.imputed, [!a[0], !a[1], false], "{c} {i}");
            assert!(
                u.features[2].is_empty(),
                "{c} {i}: visual features for a model without visual"
            );
            for (m, &size) in SIZES[..2].iter().enumerate() {
                assert_eq!(u.features[m].len(), size, "{c} {i} modality {m}");
            }
            assert_observed_unchanged(&u.features, f, a);
        }
        outs.push(out);
    }
    assert_completions_differ(&outs);
    let again = p.run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(7)).unwrap();
    assert_eq!(again, outs[0], "same key, different result");
}

#[test]
fn complete_window_skips_the_sampler() {
    let mut p = pipeline();
    let feats = features(8);
    let win = window(&feats, &[[true, true]; 8]);
    let a = assert_complete_window_skips_the_sampler(&mut p, &win, 9);
    assert!(a.utterances.iter().all(|u| u.imputed == [false; 3]));
}

#[test]
fn visual_features_and_wrong_sizes_are_errors() {
    let mut p = pipeline();
    let feats = features(3);
    let visual = vec![0.5f32; 100];
    let mut win = window(&feats, &[[true, true]; 3]);
    win.utterances[1].features[2] = Some(visual.as_slice());
    let err = p
        .run(&win, Completion::Gsdnet, &mut SeededNoise::from_key(0))
        .unwrap_err();
    let msg = err.to_string();
    match err {
        PipelineError::NoSuchModality { index, modality, has } => {
            assert_eq!((index, modality, has.as_str()), (1, "visual", "TA"));
        }
        other => panic!("expected NoSuchModality, got {other:?}"),
    }
    assert!(msg.contains("visual") && msg.contains("utterance 1"), "{msg}");
    let short = vec![0.0f32; 1023];
    let mut win = window(&feats, &[[true, true]; 3]);
    win.utterances[2].features[1] = Some(short.as_slice());
    let err = p
        .run(&win, Completion::Meanfill, &mut SeededNoise::from_key(0))
        .unwrap_err();
    match err {
        PipelineError::FeatureSize {
            index,
            modality,
            got,
            want,
        } => {
            assert_eq!((index, modality, got, want), (2, "audio", 1023, 1024));
        }
        other => panic!("expected FeatureSize, got {other:?}"),
    }
    // After the refusals the pipeline still runs a valid window.
    let ok = window(&feats, &[[true, false]; 3]);
    assert!(p.run(&ok, Completion::Zero, &mut SeededNoise::from_key(0)).is_ok());
}

/// A synthetic recording: conversations of 6, 11 (two windows) and 3 utterances, labels
/// 0, 1, 2 in turn, two speakers, text and audio features, no visual, no continuous label.
fn recording() -> Recording {
    let conversations = [("c-a", 6), ("c-b", 11), ("c-c", 3)]
        .iter()
        .enumerate()
        .map(|(ci, &(id, n))| Conversation {
            id: id.to_string(),
            utterances: (0..n).map(|i| utterance(id, ci, i)).collect(),
        })
        .collect();
    Recording { conversations }
}

fn utterance(conv: &str, ci: usize, i: usize) -> UtteranceRecord {
    let base = 100_000 * (ci + 1) + 7 * i;
    UtteranceRecord {
        conversation: conv.to_string(),
        id: format!("{conv}-{i}"),
        speaker: (i % 2) as u32,
        position: i as u32,
        timestamp_ms: None,
        label: Some(((i + ci) % 3) as u32),
        label_cont: None,
        features: std::array::from_fn(|m| {
            (SIZES[m] > 0).then(|| (0..SIZES[m]).map(|c| 1.5 * wiggle(base + 11 * c + m)).collect())
        }),
    }
}

fn config(scenarios: Vec<Scenario>) -> EvalConfig {
    EvalConfig {
        completions: Completion::ALL.map(Into::into).to_vec(),
        seeds: vec![0, 1],
        scenarios,
        threads: 1,
    }
}

/// Utterances of each class in `rec`.
fn class_counts(rec: &Recording) -> [u64; 3] {
    let mut counts = [0u64; 3];
    for u in rec.conversations.iter().flat_map(|c| &c.utterances) {
        counts[u.label.unwrap() as usize] += 1;
    }
    counts
}

fn check_row(r: &ResultRow, counts: [u64; 3], seeds: usize) {
    let n = counts.iter().sum::<u64>() as usize;
    let what = format!("{:?} {:?} {}", r.missing_rate, r.pattern, r.completion);
    assert_eq!(r.n, n, "{what}");
    assert!((0.0..=1.0).contains(&r.accuracy), "{what}: accuracy {}", r.accuracy);
    assert!(
        (0.0..=1.0).contains(&r.f1_weighted),
        "{what}: f1_weighted {}",
        r.f1_weighted
    );
    assert_eq!(r.f1_per_class.len(), 3, "{what}");
    assert!(r.f1_per_class.iter().all(|f| (0.0..=1.0).contains(f)), "{what}");
    assert_eq!(r.confusion.len(), 3, "{what}");
    assert!(r.confusion.iter().all(|row| row.len() == 3), "{what}");
    let total: u64 = r.confusion.iter().flatten().sum();
    assert_eq!(total, (n * seeds) as u64, "{what}: confusion total");
    let diag: u64 = (0..3).map(|k| r.confusion[k][k]).sum();
    assert!(
        (diag as f64 / total as f64 - r.accuracy).abs() < 1e-9,
        "{what}: accuracy vs confusion"
    );
    // Rows are the truth: each class's utterances once per seed, whatever was predicted.
    for (k, row) in r.confusion.iter().enumerate() {
        assert_eq!(row.iter().sum::<u64>(), counts[k] * seeds as u64, "{what}: class {k}");
    }
    assert_eq!(
        (r.acc2, r.mae),
        (None, None),
        "{what}: regression metrics without a head"
    );
}

#[test]
fn evaluate_gives_k_class_rows_over_the_models_scenarios() {
    let rec = recording();
    let n = rec.n_utterances();
    assert_eq!(n, 20);
    let scenarios = EvalConfig::default_scenarios(&mods());
    let cfg = config(scenarios.clone());
    let rows = eval::evaluate(&rec, &cfg, &|| Ok(pipeline()), &|_| {}).unwrap();
    assert_eq!(rows.len(), scenarios.len() * 3);
    let rates: Vec<f64> = scenarios
        .iter()
        .filter_map(|s| match s {
            Scenario::Rate(r) => Some(*r),
            Scenario::Pattern(_) => None,
        })
        .collect();
    assert_eq!(rates, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]);
    let mut row_rates: Vec<f64> = rows.iter().filter_map(|r| r.missing_rate).collect();
    row_rates.dedup();
    assert_eq!(row_rates, rates);
    let mut patterns: Vec<&str> = rows.iter().filter_map(|r| r.pattern.as_deref()).collect();
    patterns.dedup();
    assert_eq!(patterns, ["T", "A", "TA"]);
    for r in &rows {
        check_row(r, class_counts(&rec), cfg.seeds.len());
        let json = serde_json::to_value(r).unwrap();
        assert!(json.get("acc2").is_none() && json.get("mae").is_none(), "{json}");
    }
    // Nothing missing: rate 0.0 and pattern TA are the same condition for the deterministic
    // completions, and every completion agrees.
    let pick = |rate: Option<f64>, pat: Option<&str>, c: &str| {
        rows.iter()
            .find(|r| r.missing_rate == rate && r.pattern.as_deref() == pat && r.completion == c)
            .unwrap()
    };
    for c in ["gsdnet", "meanfill", "zero"] {
        assert_eq!(
            pick(Some(0.0), None, c).confusion,
            pick(None, Some("TA"), c).confusion,
            "{c}"
        );
        assert_eq!(
            pick(Some(0.0), None, c).confusion,
            pick(Some(0.0), None, "gsdnet").confusion
        );
    }
}

#[test]
fn scenarios_and_labels_outside_the_model_are_refused() {
    let v: Pattern = "V".parse().unwrap();
    let tv: Pattern = "TV".parse().unwrap();
    for sc in [Scenario::Pattern(v), Scenario::Pattern(tv), Scenario::Rate(0.6)] {
        let err = config(vec![sc]).check_scenarios(&mods()).unwrap_err();
        assert!(matches!(err, EvalError::Scenario { .. }), "{sc}: {err:?}");
        assert!(err.to_string().contains("TA"), "{err}");
    }
    config(EvalConfig::default_scenarios(&mods()))
        .check_scenarios(&mods())
        .unwrap();
    let err = eval::evaluate(
        &recording(),
        &config(vec![Scenario::Pattern(v)]),
        &|| Ok(pipeline()),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, EvalError::Scenario { .. }), "{err:?}");
    let mut rec = recording();
    rec.conversations[1].utterances[4].label = Some(3);
    let cfg = config(vec![Scenario::Rate(0.0)]);
    let err = eval::evaluate(&rec, &cfg, &|| Ok(pipeline()), &|_| {}).unwrap_err();
    match err {
        EvalError::Label { conv, utt, label, k } => {
            assert_eq!((conv.as_str(), utt.as_str(), label, k), ("c-b", "c-b-4", 3, 3));
        }
        other => panic!("expected EvalError::Label, got {other:?}"),
    }
}

#[test]
fn random_masks_never_mark_visual_and_keep_one() {
    let mods = mods();
    for rate in masks::protocol_rates(mods.count()) {
        for seed in [0u64, 3, 11] {
            let mask = masks::random_mask(seed, rate, "Ses01F_impro01", 400, &mods);
            assert_eq!(mask.len(), 400);
            for a in &mask {
                assert!(!a[2], "rate {rate}: visual marked available");
                assert!(a[0] || a[1], "rate {rate}: an utterance lost both modalities");
            }
            if rate == 0.0 {
                assert!(mask.iter().all(|a| a[0] && a[1]));
            }
            if rate == 0.5 {
                assert!(mask.iter().all(|a| a[0] != a[1]), "rate 0.5 keeps exactly one");
            }
        }
    }
    let pats: Vec<String> = Pattern::all_for(&mods).iter().map(|p| p.to_string()).collect();
    assert_eq!(pats, ["T", "A", "TA"]);
}

/// `tiny-ta3` with a `[completion]` table appended (DESIGN.md "Default completion").
fn with_policy(table: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("tiny-ta3");
    std::fs::create_dir(&to).unwrap();
    for e in std::fs::read_dir(tiny_ta3()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    let man = to.join("manifest.toml");
    let text = std::fs::read_to_string(&man).unwrap();
    std::fs::write(&man, format!("{text}\n[completion]\n{table}\n")).unwrap();
    (dir, to)
}

#[test]
fn eval_default_follows_the_manifests_completion_policy() {
    let (_dir, folder) =
        with_policy("default = \"meanfill\"\nchosen_on = \"val\"\n[completion.patterns]\nA = \"gsdnet\"");
    let man = Manifest::load(&folder).unwrap();
    assert_eq!(man.completion.to_string(), "meanfill, A: gsdnet");
    let make = || {
        let model = Model::load(&folder, BackendKind::Tract, &BackendOptions::default())?;
        Pipeline::new(model, &PipelineOptions::default())
    };
    let choices = vec![
        CompletionChoice::Default,
        Completion::Gsdnet.into(),
        Completion::Meanfill.into(),
    ];
    let scenarios = vec![
        Scenario::Pattern("T".parse().unwrap()),
        Scenario::Pattern("A".parse().unwrap()),
    ];
    let cfg = EvalConfig {
        completions: choices,
        seeds: vec![0, 1],
        scenarios,
        threads: 1,
    };
    let rows = eval::evaluate(&recording(), &cfg, &make, &|_| {}).unwrap();
    let row = |p: &str, c: &str| {
        rows.iter()
            .find(|r| r.pattern.as_deref() == Some(p) && r.completion == c)
            .unwrap()
    };
    // T is not listed: the default (meanfill); A is: gsdnet (same sampler streams as the gsdnet
    // rows). The two modes differ at both patterns, so each equality says which mode ran.
    for (p, ran, other) in [("T", "meanfill", "gsdnet"), ("A", "gsdnet", "meanfill")] {
        assert_eq!(row(p, "default").confidence, row(p, ran).confidence, "{p}");
        assert_eq!(row(p, "default").confusion, row(p, ran).confusion, "{p}");
        assert_ne!(
            row(p, ran).confidence,
            row(p, other).confidence,
            "{p}: the modes must differ here"
        );
    }
}

#[test]
fn a_bad_completion_table_is_a_load_error() {
    for (table, says) in [
        ("patterns = 1", "default"),
        ("default = \"tweedie\"", "tweedie"),
        ("default = \"zero\"\n[completion.patterns]\nX = \"zero\"", "\"X\""),
    ] {
        let (_dir, folder) = with_policy(table);
        let e = Manifest::load(&folder).unwrap_err().to_string();
        assert!(e.contains("[completion") && e.contains(says), "{table}: {e}");
    }
    let man = Manifest::load(&tiny_ta3()).unwrap();
    assert_eq!(
        man.completion,
        CompletionPolicy::fixed(Completion::Gsdnet),
        "absent table: gsdnet"
    );
}
