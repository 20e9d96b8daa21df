//! The text frontend (tokenizer.json + encoder.onnx on tract, mean pooling, L2 norm) against
//! the Python reference: the crafted golden cases (tests/golden/text_frontend/cases.json, from
//! `python -m gsdnet_text.golden`) and every IEMOCAP transcript in ../shared against the
//! split's text_minilm.f32 (sentence-transformers). Both skip cleanly when the set-up
//! (`bash scripts/setup-frontends.sh`) has not written encoder.onnx / tokenizer.json; the
//! IEMOCAP check also skips without ../shared. `check_crafted_cases` is shared with the ONNX
//! Runtime test (ort::frontend).

use std::path::PathBuf;

use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::dataset::read_transcripts;
use gsdnet_edge::frontend::{FrontendError, TextFrontend};
use serde_json::Value;

use crate::util::{read_f32, repo};

/// The parity target of issue 20 on every IEMOCAP transcript.
const MIN_COSINE: f64 = 0.9999;

fn frontend_dir() -> PathBuf {
    repo().join("models/frontends/all-minilm-l6-v2")
}

/// The frontend on `kind`, or None (with a note) before the set-up.
pub(crate) fn frontend(kind: BackendKind, opts: &BackendOptions) -> Option<TextFrontend> {
    match TextFrontend::load(&frontend_dir(), kind, opts) {
        Ok(f) => Some(f),
        Err(e @ FrontendError::Missing { .. }) => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("text frontend: {e}"),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max)
}

struct Case {
    name: String,
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn golden() -> (Vec<Case>, f64, f64, Value) {
    let path = repo().join("tests/golden/text_frontend/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("cases.json");
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    };
    let cases = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().expect("name").to_string(),
            text: c["text"].as_str().expect("text").to_string(),
            ids: nums(&c["ids"]).iter().map(|&x| x as u32).collect(),
            embedding: nums(&c["embedding"]).iter().map(|&x| x as f32).collect(),
        })
        .collect();
    let tol = &doc["tolerance"];
    let (min_cos, max_diff) = (
        tol["min_cosine"].as_f64().expect("min_cosine"),
        tol["max_abs_diff"].as_f64().expect("max_abs_diff"),
    );
    (cases, min_cos, max_diff, doc["quickstart_similarity"].clone())
}

#[test]
fn crafted_cases_match_the_python_reference() {
    let Some(mut front) = frontend(BackendKind::Tract, &BackendOptions::default()) else {
        return;
    };
    check_crafted_cases(&mut front);
}

/// Every crafted golden case through `front` (whatever its engine): token ids equal, embedding
/// alone and batched within the file's tolerance, and the sentence-transformers quickstart
/// similarities.
pub(crate) fn check_crafted_cases(front: &mut TextFrontend) {
    let (cases, min_cos, max_diff, quick) = golden();
    assert!(cases.len() >= 10, "golden file holds {} cases", cases.len());
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let batched = front.embed(&texts).expect("batched embedding");
    for (c, together) in cases.iter().zip(&batched) {
        assert_eq!(
            front.token_ids(&c.text).expect("tokenises"),
            c.ids,
            "{}: token ids",
            c.name
        );
        assert!(c.ids.len() <= 128, "{}: truncated to 128 tokens", c.name);
        let alone = front.embed(&[c.text.as_str()]).expect("embedding").remove(0);
        for (how, got) in [("alone", &alone), ("batched", together)] {
            let (cos, diff) = (cosine(got, &c.embedding), max_abs(got, &c.embedding));
            eprintln!(
                "{:<26} {how:<8} {:>3} tokens  cosine {cos:.8}  max abs diff {diff:.2e}",
                c.name,
                c.ids.len()
            );
            assert!(
                cos >= min_cos && diff <= max_diff,
                "{} ({how}): cosine {cos}, max abs diff {diff}",
                c.name
            );
        }
    }
    let pairs = quick["pairs"].as_array().expect("pairs");
    let values = quick["values"].as_array().expect("values");
    let q = |i: u64| {
        batched[cases
            .iter()
            .position(|c| c.name == format!("quickstart_{i}"))
            .expect("quickstart case")]
        .clone()
    };
    for (p, v) in pairs.iter().zip(values) {
        let (i, j) = (p[0].as_u64().expect("index"), p[1].as_u64().expect("index"));
        let sim = cosine(&q(i), &q(j));
        assert!(
            (sim - v.as_f64().expect("value")).abs() < 5e-4,
            "quickstart {i}-{j}: {sim:.4}, sentence-transformers {v}"
        );
    }
}

#[test]
fn every_iemocap_transcript_matches_text_minilm() {
    let root = repo().join("../shared/data/iemocap");
    if !root.is_dir() {
        eprintln!("skipped: no {}", root.display());
        return;
    }
    let Some(mut front) = frontend(BackendKind::Tract, &BackendOptions::default()) else {
        return;
    };
    let (mut n, mut worst, mut worst_at, mut diff) = (0usize, f64::INFINITY, String::new(), 0f64);
    for task in ["6way", "4way"] {
        for part in ["train", "val"] {
            let split = root.join(task).join(part);
            if !split.join("transcripts.csv").is_file() {
                continue;
            }
            let rows = read_transcripts(&split).expect("transcripts.csv");
            let want = read_f32(&split.join("text_minilm.f32"));
            assert_eq!(
                want.len(),
                rows.len() * front.hidden(),
                "{}: one vector per transcript",
                split.display()
            );
            let texts: Vec<&str> = rows.iter().map(|(_, t)| t.as_str()).collect();
            let got = front.embed(&texts).expect("embedding");
            for (i, (g, w)) in got.iter().zip(want.chunks_exact(front.hidden())).enumerate() {
                let c = cosine(g, w);
                if c < worst {
                    (worst, worst_at) = (c, format!("{task}/{part} row {i}"));
                }
                diff = diff.max(max_abs(g, w));
            }
            n += rows.len();
        }
    }
    assert!(n > 0, "{}: no split with transcripts.csv", root.display());
    eprintln!(
        "text frontend (tract) vs text_minilm.f32: n = {n}, worst cosine {worst:.10} (1 - cos = {:.2e}, {worst_at}), max abs diff {diff:.2e}",
        1.0 - worst
    );
    assert!(
        worst >= MIN_COSINE,
        "worst cosine {worst} at {worst_at} is below {MIN_COSINE}"
    );
}
