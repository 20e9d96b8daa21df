//! Golden parity through ONNX Runtime: every golden case's component I/O (tests/golden/*/case.toml)
//! through ort on the configured providers and through tract, each against the Python
//! reference within the case's named tolerances, and ort against tract. Also the tiny fixture on
//! the configured providers, and `check::run` printing what runs where and one window's latency.
//!
//! Providers: GSDNET_ORT_PROVIDERS (default "cpu"); GSDNET_ORT_REQUIRE_ACCELERATOR=1 forbids a
//! CPU fallback (scripts/gpu-check.sh sets both for the CUDA run).

use crate::util::ort::*;
use gsdnet_edge::backend::{self, BackendKind, BackendOptions};
use gsdnet_edge::check::golden::{self, GoldenCase};
use gsdnet_edge::check::{self, CheckOptions};
use gsdnet_edge::tensor::Tensor;

fn configured(lib: &std::path::Path) -> BackendOptions {
    BackendOptions {
        threads: 0,
        providers: env_providers(),
        ort_library: Some(lib.to_path_buf()),
        require_accelerator: env_require_accelerator(),
        cache_dir: Some(std::env::temp_dir().join("gsdnet-trt-cache")),
        ..BackendOptions::default()
    }
}

fn model_dir() -> std::path::PathBuf {
    repo_root().join(std::env::var("GSDNET_MODEL_DIR").unwrap_or_else(|_| "models/gsdnet-mosi".into()))
}

#[test]
fn tiny_fixture_on_configured_providers() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let o = configured(&lib);
    let mut b = backend::load(BackendKind::Ort, &tiny_spec(), &o).expect("load on configured providers");
    eprintln!("tiny runs on {} (providers {:?})", b.provider(), o.providers);
    let (x, t, y_ref, z_ref) = tiny_io();
    let mut outs = vec![Tensor::zeros(&[1, 3, 4, 6]), Tensor::zeros(&[1, 3, 4])];
    for _ in 0..3 {
        b.run(&[&x, &t], &mut outs).expect("run");
        assert_close("y", &outs[0], &y_ref, 1e-5, 1e-4);
        assert_close("z", &outs[1], &z_ref, 1e-5, 1e-4);
    }
}

#[test]
fn golden_parity_ort_tract_reference() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let Some((parts, _)) = manifest_parts(&model_dir()) else {
        eprintln!("SKIPPED: no {}/manifest.toml on this branch yet", model_dir().display());
        return;
    };
    let compared = parity_of(&lib, &parts, &model_name(&model_dir()));
    assert!(compared > 0, "no golden output compared for {}", model_dir().display());
}

/// The IEMOCAP 6-way model (text + audio, six classes, no regression head) on its own golden
/// case through ONNX Runtime, against the reference and tract.
#[test]
fn golden_parity_of_the_iemocap_model_on_ort() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let dir = repo_root().join("models/gsdnet-iemocap6");
    let (parts, _) = manifest_parts(&dir).expect("the IEMOCAP model is committed");
    assert!(
        parity_of(&lib, &parts, &model_name(&dir)) > 0,
        "no golden output compared for {}",
        dir.display()
    );
}

fn model_name(dir: &std::path::Path) -> String {
    gsdnet_edge::manifest::Manifest::load(dir).expect("manifest").model.name
}

/// Compares every part on every golden case recorded with `model` (ort and tract against the
/// reference); returns the number of outputs compared.
fn parity_of(lib: &std::path::Path, parts: &[gsdnet_edge::backend::PartSpec], model: &str) -> usize {
    let cases: Vec<GoldenCase> = GoldenCase::discover(&repo_root().join("tests/golden"))
        .expect("golden cases")
        .into_iter()
        .filter(|c| c.model.as_deref().is_none_or(|m| m == model))
        .collect();
    let o = configured(lib);
    let mut compared = 0;
    for spec in parts {
        let mut ort_b = backend::load(BackendKind::Ort, spec, &o).unwrap_or_else(|e| panic!("{e}"));
        let mut tract_b = backend::load(BackendKind::Tract, spec, &o).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}: ort on {}", spec.name, ort_b.provider());
        for case in &cases {
            let ort_rows = match golden::part_parity(case, ort_b.as_mut()).expect("ort parity") {
                Ok(rows) => rows,
                Err(reason) => {
                    eprintln!("not compared: {reason}");
                    continue;
                }
            };
            let tract_rows = golden::part_parity(case, tract_b.as_mut())
                .expect("tract parity")
                .expect("same case");
            for (r, t) in ort_rows.iter().zip(&tract_rows) {
                eprintln!(
                    "{} {} {}: ort {:.2e}, tract {:.2e} (atol {:.0e} rtol {:.0e})",
                    r.case, r.part, r.tensor, r.max_abs_diff, t.max_abs_diff, r.tolerance.atol, r.tolerance.rtol
                );
                assert!(
                    r.named_tolerance,
                    "{} {}: case names no tolerance for {}",
                    r.case, r.part, r.tensor
                );
                assert!(r.within, "ort vs reference out of tolerance: {r:?}");
                assert!(t.within, "tract vs reference out of tolerance: {t:?}");
                compared += 1;
            }
        }
    }
    compared
}

#[test]
fn check_reports_providers_parity_and_latency() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    if manifest_parts(&model_dir()).is_none() {
        eprintln!("SKIPPED: no {}/manifest.toml on this branch yet", model_dir().display());
        return;
    }
    let golden = Some(repo_root().join("tests/golden"));
    let opts = CheckOptions::for_model(&model_dir(), BackendKind::Ort, configured(&lib), golden).expect("manifest");
    let report = check::run(&opts);
    eprintln!("{report}");
    assert!(report.ok(), "check failed:\n{report}");
    assert!(report.latency.is_some(), "no window latency measured:\n{report}");
}
