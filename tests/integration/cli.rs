//! The built `gsdnet` binary: import, eval on the bundled recording with the tiny test model,
//! and clear errors for missing models, corrupt and truncated recordings and bad arguments.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::{repo, tiny_model};

fn gsdnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run gsdnet")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn bundled_data() -> String {
    repo().join("data/mosi-val.gsdrec").display().to_string()
}

#[test]
fn eval_writes_the_json_shape_of_the_issue() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let model = tiny_model().display().to_string();
    let out = gsdnet(&[
        "eval",
        "--data",
        &bundled_data(),
        "--model",
        &model,
        "--seeds",
        "0,1",
        "--rates",
        "0.0,0.5",
        "--patterns",
        "TA",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rate 0.5") && stdout.contains("pattern TA") && stdout.contains("meanfill"),
        "{stdout}"
    );
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["model"], "tiny-test");
    assert_eq!(doc["temperature"], 1.0, "the tiny model has no [calibration]");
    assert!(stdout.contains("confidence") && stdout.contains("aurc"), "{stdout}");
    let rows = doc["results"].as_array().unwrap();
    assert_eq!(rows.len(), 3 * 4, "default, gsdnet, meanfill, zero per scenario");
    for r in rows {
        assert_eq!(r["n"], 191);
        let acc = r["acc2"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(r["f1_weighted"].as_f64().is_some() && r["mae"].as_f64().is_some());
        // Confidence metrics of the probabilities, next to the label metrics.
        for (key, hi) in [
            ("nll", 27.7),
            ("brier", 2.0),
            ("ece", 1.0),
            ("acc_cov50", 1.0),
            ("acc_cov80", 1.0),
            ("aurc", 1.0),
        ] {
            let v = r[key].as_f64().unwrap_or_else(|| panic!("row without {key}: {r}"));
            assert!((0.0..=hi).contains(&v), "{key} = {v}");
        }
        assert!(["default", "gsdnet", "meanfill", "zero"].contains(&r["completion"].as_str().unwrap()));
    }
    // The tiny model has no [completion]: its default is gsdnet everywhere.
    for d in rows.iter().filter(|r| r["completion"] == "default") {
        let g = rows
            .iter()
            .find(|r| {
                r["completion"] == "gsdnet" && r["missing_rate"] == d["missing_rate"] && r["pattern"] == d["pattern"]
            })
            .unwrap();
        assert_eq!(
            (d["acc2"].clone(), d["nll"].clone()),
            (g["acc2"].clone(), g["nll"].clone())
        );
    }
    let ta = rows.iter().find(|r| r["pattern"] == "TA").unwrap();
    assert!(ta["missing_rate"].is_null());
    let r0: Vec<_> = rows.iter().filter(|r| r["missing_rate"] == 0.0).collect();
    assert_eq!(r0.len(), 4);
    // Nothing is missing at rate 0: every completion gives the same numbers.
    assert!(r0
        .iter()
        .all(|r| r["acc2"] == r0[0]["acc2"] && r["mae"] == r0[0]["mae"]));
}

#[test]
fn import_reproduces_the_bundled_recording() {
    let val = repo().join("../shared/data/cmu-mosi/val");
    if !val.is_dir() {
        eprintln!("skipping: {} is not on this machine", val.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("v.gsdrec");
    let out = gsdnet(&["import", val.to_str().unwrap(), "-o", out_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&out_path).unwrap(),
        std::fs::read(bundled_data()).unwrap()
    );
}

/// `gsdnet import --model M` of an IEMOCAP split: M's text is a frontend, so the recording
/// carries the frontend's embeddings of the transcripts (what `gsdnet replay` then sends a
/// daemon serving M), equal to what `gsdnet eval` computes; without `--model` it carries the
/// split's own text.f32, which M refuses (WrongLength).
#[test]
fn import_for_a_frontend_model_carries_its_text_view() {
    let Some(expected) = crate::util::iemocap::for_model("6way", "val", "gsdnet-iemocap6") else {
        return;
    };
    let split = crate::util::iemocap::split_dir("6way", "val");
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("v.gsdrec");
    let model = repo().join("models/gsdnet-iemocap6");
    let out = gsdnet(&[
        "import",
        split.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = gsdnet_edge::recording::Recording::read(&out_path).unwrap();
    assert_eq!(got.n_utterances(), expected.n_utterances());
    let text = gsdnet_edge::modality::Modality::Text.index();
    let pairs = got
        .conversations
        .iter()
        .flat_map(|c| &c.utterances)
        .zip(expected.conversations.iter().flat_map(|c| &c.utterances));
    for (g, e) in pairs {
        assert_eq!(g.id, e.id);
        let (gv, ev) = (g.features[text].as_ref().unwrap(), e.features[text].as_ref().unwrap());
        assert_eq!(gv.len(), 384, "{}", g.id);
        let diff = gv.iter().zip(ev).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(
            diff <= 1e-6,
            "{}: text vector differs from the eval path by {diff}",
            g.id
        );
    }
}

fn eval_err(data: &Path, model: &Path) -> String {
    let out = gsdnet(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--seeds",
        "0",
        "--rates",
        "0.3",
    ]);
    assert!(!out.status.success());
    stderr(&out)
}

#[test]
fn corrupt_and_truncated_recordings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(bundled_data()).unwrap();
    let cut = dir.path().join("cut.gsdrec");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = eval_err(&cut, &tiny_model());
    assert!(err.contains("truncated") && err.contains("cut.gsdrec"), "{err}");
    let mut flipped = bytes.clone();
    let at = bytes.len() / 3;
    flipped[at] ^= 0x40;
    let bad = dir.path().join("bad.gsdrec");
    std::fs::write(&bad, &flipped).unwrap();
    let err = eval_err(&bad, &tiny_model());
    assert!(err.contains("corrupt"), "{err}");
    let junk = dir.path().join("junk.gsdrec");
    std::fs::write(&junk, b"not a recording at all").unwrap();
    let err = eval_err(&junk, &tiny_model());
    assert!(err.contains("not a gsdnet recording"), "{err}");
}

#[test]
fn missing_model_and_bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = eval_err(Path::new(&bundled_data()), &dir.path().join("nowhere"));
    assert!(err.contains("nowhere") && err.contains("manifest.toml"), "{err}");
    let out = gsdnet(&["eval", "--patterns", "AT"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("pattern `AT`"), "{}", stderr(&out));
    let out = gsdnet(&["eval", "--completion", "magic"]);
    assert!(
        !out.status.success() && stderr(&out).contains("unknown completion"),
        "{}",
        stderr(&out)
    );
    let out = gsdnet(&["eval", "--model", tiny_model().to_str().unwrap(), "--rates", "1.5"]);
    assert!(
        !out.status.success() && stderr(&out).contains("1.5"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_reports_parts_parity_and_fails_on_a_broken_golden_case() {
    let out = gsdnet(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "check failed: {text}\n{}", stderr(&out));
    assert!(text.contains("tract (cpu)"), "{text}");
    assert!(text.contains("parity rate05_s5 s_theta"), "{text}");
    assert!(text.contains("check: OK"), "{text}");

    // A golden case whose expected logits were tampered with must turn the check red.
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("tests/golden/pattern_t");
    let dst = dir.path().join("pattern_t");
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let logits = dst.join("logits.f32");
    let mut bytes = std::fs::read(&logits).unwrap();
    bytes[0..4].copy_from_slice(&123.0f32.to_le_bytes());
    std::fs::write(&logits, bytes).unwrap();
    let golden = dir.path().display().to_string();
    let out = gsdnet(&["check", "--golden", &golden]);
    assert!(!out.status.success(), "tampered golden case passed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL") || stderr(&out).contains("check failed"));
}

#[test]
fn check_with_an_engine_not_compiled_in_says_so() {
    if gsdnet_edge::backend::compiled().contains(&gsdnet_edge::backend::BackendKind::Ort) {
        return; // built with --features ort: the ort suite covers this engine
    }
    let out = gsdnet(&["check", "--backend", "ort", "--golden", "none"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!out.status.success());
    assert!(text.contains("not compiled"), "{text}");
}
