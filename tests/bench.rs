//! `gsdnet bench` end to end on the bundled model and recording: JSON shape, stages that
//! partition the window time, allocation counting in the binary, and clear errors.

mod common;

use std::process::{Command, Output};

use common::repo;

fn gsdnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run gsdnet")
}

#[test]
fn bench_reports_every_configuration_with_stages_allocs_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let out = gsdnet(&[
        "bench",
        "--backend",
        "tract",
        "--sizes",
        "8,16",
        "--steps",
        "2,5",
        "--iters",
        "4",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("window p50/p99") && stdout.contains("VmHWM"),
        "{stdout}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["allocations_counted"], true);
    assert!(doc["peak_rss_kib"].as_u64().unwrap() > 1024);
    let rows = doc["rows"].as_array().unwrap();
    let configs: Vec<(u64, u64)> = rows
        .iter()
        .map(|r| (r["window"].as_u64().unwrap(), r["steps"].as_u64().unwrap()))
        .collect();
    assert_eq!(configs, [(8, 2), (8, 5), (16, 2), (16, 5)]);
    for r in rows {
        assert_eq!(r["iters"], 4);
        assert!(
            r["missing_entries"].as_u64().unwrap() > 0,
            "the sampler must run: {r}"
        );
        let stages = r["stages"].as_array().unwrap();
        let names: Vec<&str> = stages.iter().map(|s| s[0].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "prepare",
                "encoders",
                "graph+eigen",
                "sampler",
                "recon",
                "fusion"
            ]
        );
        // Stages partition the window: their mean times add up to the window's.
        let sum: f64 = stages
            .iter()
            .map(|s| s[1]["mean_ms"].as_f64().unwrap())
            .sum();
        let total = r["total"]["mean_ms"].as_f64().unwrap();
        assert!(
            (sum - total).abs() < 1e-6 * total.max(1.0),
            "{sum} vs {total}"
        );
        assert!(r["total"]["p50_ms"].as_f64().unwrap() <= r["total"]["p99_ms"].as_f64().unwrap());
        let sampler_mean = stages[3][1]["mean_ms"].as_f64().unwrap();
        let step_mean = r["sampler_step"]["mean_ms"].as_f64().unwrap();
        let steps = r["steps"].as_f64().unwrap();
        assert!((step_mean * steps - sampler_mean).abs() < 1e-6 * sampler_mean.max(1.0));
        let allocs = r["allocs_per_window"].as_f64().unwrap();
        assert!(allocs > 0.0);
        let per_stage: f64 =
            r["allocs_per_stage"].as_array().unwrap().iter().map(|s| s[1].as_f64().unwrap()).sum();
        assert!((per_stage - allocs).abs() < 1e-9 * allocs, "{per_stage} vs {allocs}");
    }
}

#[test]
fn bench_rejects_a_window_wider_than_the_model() {
    let out = gsdnet(&["bench", "--sizes", "65", "--steps", "1", "--iters", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("window size 65") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn bench_rejects_zero_steps() {
    let out = gsdnet(&["bench", "--sizes", "8", "--steps", "0", "--iters", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("steps must be at least 1") && !err.contains("panicked"),
        "{err}"
    );
}
