//! Evaluation parity: the Rust `eval` on CMU-MOSI val (the shared folder when present, else the
//! bundled recording converted from it) must reproduce the Python reference evaluation
//! (`tests/golden/eval_val_reference.json`, or `GSDNET_EVAL_REFERENCE`) within 0.5 points of
//! acc2 and weighted F1 in every row, with the same utterance counts.

mod common;

use std::path::PathBuf;

use common::repo;
use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::eval::{self, EvalConfig, ResultRow, Scenario};
use gsdnet_edge::manifest::Manifest;
use gsdnet_edge::masks::Pattern;
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{Completion, Pipeline};
use gsdnet_edge::{dataset, recording::Recording};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    seeds: Vec<u64>,
    steps: usize,
    results: Vec<RefRow>,
}

#[derive(Deserialize)]
struct RefRow {
    missing_rate: Option<f64>,
    pattern: Option<String>,
    completion: String,
    acc2: f64,
    f1_weighted: f64,
    mae: f64,
    n: usize,
}

fn data() -> Recording {
    let shared = repo().join("../shared/data/cmu-mosi/val");
    let path = if shared.is_dir() {
        shared
    } else {
        repo().join("data/mosi-val.gsdrec")
    };
    dataset::load(&path).unwrap()
}

#[test]
fn eval_matches_the_python_reference_within_half_a_point() {
    let ref_path = std::env::var_os("GSDNET_EVAL_REFERENCE").map_or_else(
        || repo().join("tests/golden/eval_val_reference.json"),
        PathBuf::from,
    );
    check_parity(&repo().join("models/gsdnet-mosi"), &ref_path);
}

/// The tiny fixture model has W = 8, so every val conversation spans several windows: this
/// checks windowing and the per-window sampler streams against the Python evaluator
/// (reference made by `gsdnet_ref.evaluate.evaluate("tests/fixtures/tiny-model", val,
/// seeds=(0, 1))`).
#[test]
fn multi_window_eval_matches_the_python_reference() {
    let dir = repo().join("tests/fixtures/tiny-model");
    check_parity(&dir, &dir.join("eval_val_reference.json"));
}

fn check_parity(model_dir: &std::path::Path, ref_path: &std::path::Path) {
    let reference: Reference = serde_json::from_str(&std::fs::read_to_string(ref_path).unwrap()).unwrap();
    let mut scenarios = Vec::new();
    let mut completions = Vec::new();
    for r in &reference.results {
        let s = match (&r.missing_rate, &r.pattern) {
            (_, Some(p)) => Scenario::Pattern(p.parse::<Pattern>().unwrap()),
            (Some(rate), None) => Scenario::Rate(*rate),
            (None, None) => panic!("row without rate or pattern"),
        };
        if !scenarios.contains(&s) {
            scenarios.push(s);
        }
        let c: Completion = r.completion.parse().unwrap();
        if !completions.contains(&c) {
            completions.push(c);
        }
    }
    let manifest = Manifest::load(model_dir).unwrap();
    let cfg = EvalConfig {
        completions,
        seeds: reference.seeds.clone(),
        scenarios,
        threads: 0,
    };
    let make = || {
        let model = Model::from_manifest(manifest.clone(), BackendKind::Tract, &BackendOptions::default())?;
        Pipeline::new(model, Some(reference.steps))
    };
    let rows = eval::evaluate(&data(), &cfg, &make, &|_| {}).unwrap();
    assert_eq!(rows.len(), reference.results.len());
    let find = |r: &RefRow| -> &ResultRow {
        rows.iter()
            .find(|x| {
                x.completion == r.completion
                    && x.pattern == r.pattern
                    && (r.pattern.is_some() || x.missing_rate == r.missing_rate)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no Rust row for {:?} {:?} {}",
                    r.missing_rate, r.pattern, r.completion
                )
            })
    };
    let mut bad = Vec::new();
    let mut worst = 0.0f64;
    for r in &reference.results {
        let x = find(r);
        assert_eq!(x.n, r.n);
        let (da, df) = (
            100.0 * (x.acc2 - r.acc2).abs(),
            100.0 * (x.f1_weighted - r.f1_weighted).abs(),
        );
        let dm = (x.mae.unwrap() - r.mae).abs();
        worst = worst.max(da).max(df);
        if da > 0.5 || df > 0.5 || dm > 0.02 {
            bad.push(format!(
                "{:?} {:?} {}: acc2 {:.4} vs {:.4}, f1 {:.4} vs {:.4}, mae {:.4} vs {:.4}",
                r.missing_rate,
                r.pattern,
                r.completion,
                x.acc2,
                r.acc2,
                x.f1_weighted,
                r.f1_weighted,
                x.mae.unwrap(),
                r.mae
            ));
        }
    }
    eprintln!(
        "eval parity: {} rows, worst acc2/F1 difference {worst:.3} points",
        rows.len()
    );
    assert!(
        bad.is_empty(),
        "rows beyond 0.5 points (or MAE beyond 0.02):\n{}",
        bad.join("\n")
    );
}
