//! `gsdnet bench` end to end on the bundled model and recording: JSON shape, stages that
//! partition the window time, allocation counting in `gsdnet-bench` (and none in the
//! production `gsdnet` binary), and clear errors.

use std::process::{Command, Output};

use crate::util::repo;

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run {binary}: {e}"))
}

/// The production binary (system allocator).
fn gsdnet(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_gsdnet"), args)
}

/// The bench binary (counting allocator); takes `bench`'s options, with or without `bench`.
fn gsdnet_bench(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_gsdnet-bench"), args)
}

/// A small run: two windows at one step, single thread.
const SMALL: [&str; 12] = [
    "--backend",
    "tract",
    "--sizes",
    "8",
    "--steps",
    "1",
    "--iters",
    "2",
    "--warmup",
    "1",
    "--threads",
    "1",
];

fn json_of(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn bench_reports_every_configuration_with_stages_allocs_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let out = gsdnet_bench(&[
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
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("window p50/p99") && stdout.contains("VmHWM"),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not counted"));
    let doc = json_of(&json);
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
        assert!(r["missing_entries"].as_u64().unwrap() > 0, "the sampler must run: {r}");
        let stages = r["stages"].as_array().unwrap();
        let names: Vec<&str> = stages.iter().map(|s| s[0].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["prepare", "encoders", "graph+eigen", "sampler", "recon", "fusion"]
        );
        // Stages partition the window: their mean times add up to the window's.
        let sum: f64 = stages.iter().map(|s| s[1]["mean_ms"].as_f64().unwrap()).sum();
        let total = r["total"]["mean_ms"].as_f64().unwrap();
        assert!((sum - total).abs() < 1e-6 * total.max(1.0), "{sum} vs {total}");
        assert!(r["total"]["p50_ms"].as_f64().unwrap() <= r["total"]["p99_ms"].as_f64().unwrap());
        let sampler_mean = stages[3][1]["mean_ms"].as_f64().unwrap();
        let step_mean = r["sampler_step"]["mean_ms"].as_f64().unwrap();
        let steps = r["steps"].as_f64().unwrap();
        assert!((step_mean * steps - sampler_mean).abs() < 1e-6 * sampler_mean.max(1.0));
        let allocs = r["allocs_per_window"].as_f64().unwrap();
        assert!(allocs > 0.0);
        let per_stage: f64 = r["allocs_per_stage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[1].as_f64().unwrap())
            .sum();
        assert!((per_stage - allocs).abs() < 1e-9 * allocs, "{per_stage} vs {allocs}");
    }
}

#[test]
fn production_binary_does_not_count_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let mut args = vec!["bench", "--json", json.to_str().unwrap()];
    args.extend(SMALL);
    let out = gsdnet(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // One hint line naming the binary that counts.
    let hints: Vec<&str> = err.lines().filter(|l| l.contains("not counted")).collect();
    assert_eq!(hints.len(), 1, "{err}");
    assert!(hints[0].contains("gsdnet-bench"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("n/a"));
    let doc = json_of(&json);
    assert_eq!(doc["allocations_counted"], false);
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["allocs_per_window"].is_null(), "{}", rows[0]);
    assert!(rows[0]["allocs_per_stage"].is_null(), "{}", rows[0]);
}

#[test]
fn bench_binary_takes_the_options_without_the_subcommand_word() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let mut args = vec!["--json", json.to_str().unwrap()];
    args.extend(SMALL);
    let out = gsdnet_bench(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json_of(&json);
    assert_eq!(doc["allocations_counted"], true);
    assert!(doc["rows"][0]["allocs_per_window"].as_f64().is_some_and(|a| a > 0.0));
}

#[test]
fn bench_rejects_a_window_wider_than_the_model() {
    let out = gsdnet(&["bench", "--sizes", "65", "--steps", "1", "--iters", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("window size 65") && !err.contains("panicked"), "{err}");
}

#[test]
fn bench_rejects_zero_steps() {
    let out = gsdnet_bench(&["bench", "--sizes", "8", "--steps", "0", "--iters", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("steps must be at least 1") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn bench_binary_measures_padded_rows_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let mut args = vec!["--json", json.to_str().unwrap(), "--padded", "--batch", "1,2"];
    args.extend(SMALL);
    let out = gsdnet_bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("bucketed vs padded") && stdout.contains("batch mode"),
        "{stdout}"
    );
    let doc = json_of(&json);
    let rows = doc["rows"].as_array().unwrap();
    let layouts: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r["layout"].as_str().unwrap(), r["bucket"].as_u64().unwrap()))
        .collect();
    assert_eq!(layouts, [("bucketed", 8), ("padded", 64)]);
    let sp = &doc["speedups"][0];
    let ratio = sp["padded_p50_ms"].as_f64().unwrap() / sp["bucketed_p50_ms"].as_f64().unwrap();
    assert!((sp["speedup"].as_f64().unwrap() - ratio).abs() < 1e-9, "{sp}");
    let batches = doc["batch_rows"].as_array().unwrap();
    assert_eq!(batches.len(), 2);
    for (r, b) in batches.iter().zip([1u64, 2]) {
        assert_eq!(r["batch"], b);
        assert_eq!(r["windows"], 2);
        assert_eq!(r["sizes"].as_array().unwrap().len(), 2);
        assert!(r["allocs_per_window"].as_f64().is_some_and(|a| a > 0.0), "{r}");
        assert!(r["windows_per_s"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(batches[0]["speedup_vs_1"].as_f64(), Some(1.0));
}
