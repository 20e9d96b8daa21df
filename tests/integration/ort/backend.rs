//! ONNX Runtime backend on the CPU provider with the library from ORT_DYLIB_PATH: numerics
//! against numpy and tract, buffer reuse across runs, provider fallback and typed errors.

use crate::util::ort::*;
use gsdnet_edge::backend::ort::{runtime, OrtBackend};
use gsdnet_edge::backend::ProviderKind;
use gsdnet_edge::backend::{self, Backend, BackendError, BackendKind, BackendOptions, TensorSpec};
use gsdnet_edge::tensor::Tensor;

fn run_tiny(b: &mut dyn Backend, x: &Tensor, t: &Tensor) -> (Tensor, Tensor) {
    let mut outs = vec![Tensor::zeros(&[1, 3, 4, 6]), Tensor::zeros(&[1, 3, 4])];
    b.run(&[x, t], &mut outs).expect("run");
    let z = outs.pop().unwrap();
    (outs.pop().unwrap(), z)
}

#[test]
fn cpu_matches_numpy_and_tract() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let (x, t, y_ref, z_ref) = tiny_io();
    let o = opts(&lib, &["cpu"], false);
    let mut ort_b = backend::load(BackendKind::Ort, &tiny_spec(), &o).expect("ort load");
    assert_eq!(ort_b.provider(), "onnxruntime CPUExecutionProvider");
    let mut tract_b = backend::load(BackendKind::Tract, &tiny_spec(), &o).expect("tract load");
    let (y, z) = run_tiny(ort_b.as_mut(), &x, &t);
    let (ty, tz) = run_tiny(tract_b.as_mut(), &x, &t);
    assert_close("y vs numpy", &y, &y_ref, 1e-6, 1e-5);
    assert_close("z vs numpy", &z, &z_ref, 1e-6, 1e-5);
    assert_close("y vs tract", &y, &ty, 1e-6, 1e-5);
    assert_close("z vs tract", &z, &tz, 1e-6, 1e-5);
}

/// Inputs are re-bound only when they change: every mix of changed and unchanged inputs must
/// still give the result tract computes from scratch.
#[test]
fn rebinding_tracks_changed_inputs() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let (x1, t1, _, _) = tiny_io();
    let x2 = Tensor::from_vec(x1.shape(), x1.data().iter().map(|v| v * -0.5 + 0.25).collect()).unwrap();
    let t2 = Tensor::from_vec(&[1], vec![-1.5]).unwrap();
    let o = opts(&lib, &["cpu"], false);
    let mut ort_b = backend::load(BackendKind::Ort, &tiny_spec(), &o).unwrap();
    let mut tract_b = backend::load(BackendKind::Tract, &tiny_spec(), &o).unwrap();
    for (step, (x, t)) in [(&x1, &t1), (&x1, &t2), (&x2, &t2), (&x2, &t2), (&x1, &t1), (&x2, &t1)]
        .iter()
        .enumerate()
    {
        let (y, z) = run_tiny(ort_b.as_mut(), x, t);
        let (ty, tz) = run_tiny(tract_b.as_mut(), x, t);
        assert_close(&format!("step {step} y"), &y, &ty, 1e-6, 1e-5);
        assert_close(&format!("step {step} z"), &z, &tz, 1e-6, 1e-5);
    }
}

#[test]
fn unavailable_accelerators_fall_back_with_reasons() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let b = OrtBackend::load(&tiny_spec(), &opts(&lib, &["tensorrt", "cuda", "cpu"], false)).expect("load");
    if b.provider_kind() != ProviderKind::Cpu {
        eprintln!(
            "SKIPPED: this ONNX Runtime runs {:?} here; the fallback path is not exercised",
            b.provider_kind()
        );
        return;
    }
    let tried: Vec<ProviderKind> = b.fallbacks().iter().map(|f| f.provider).collect();
    assert_eq!(tried, vec![ProviderKind::TensorRt, ProviderKind::Cuda]);
    for f in b.fallbacks() {
        assert!(
            !f.reason.trim().is_empty(),
            "{:?} fell back without a reason",
            f.provider
        );
        eprintln!("{:?}: {}", f.provider, f.reason);
    }
}

#[test]
fn require_accelerator_refuses_cpu() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    for providers in [&["cuda"][..], &["cpu"][..], &[][..]] {
        match OrtBackend::load(&tiny_spec(), &opts(&lib, providers, true)) {
            Ok(b) => assert!(
                b.provider_kind().is_accelerator(),
                "{providers:?} ran on CPU despite require_accelerator"
            ),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("require_accelerator"), "{msg}");
                if providers.contains(&"cuda") {
                    assert!(msg.contains("cuda:"), "reason for cuda missing: {msg}");
                }
            }
        }
    }
}

#[test]
fn bad_libraries_are_errors_not_panics() {
    let Some(_) = library("ORT_DYLIB_PATH") else { return };
    let dir = tempfile::tempdir().unwrap();
    let not_a_lib = dir.path().join("libonnxruntime.so.1.99.0");
    std::fs::write(&not_a_lib, b"not an ELF file").unwrap();
    for p in [dir.path().join("missing.so"), not_a_lib, dir.path().to_path_buf()] {
        let err = runtime::load(Some(&p)).expect_err("bad library accepted");
        eprintln!("{}: {err}", p.display());
        let o = BackendOptions {
            ort_library: Some(p.clone()),
            ..Default::default()
        };
        assert!(matches!(
            OrtBackend::load(&tiny_spec(), &o),
            Err(BackendError::Engine { .. })
        ));
    }
}

#[test]
fn manifest_mismatches_are_rejected_at_load() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let o = opts(&lib, &["cpu"], false);
    let mut wrong_name = tiny_spec();
    wrong_name.inputs[0].name = "x_t".into();
    let mut wrong_shape = tiny_spec();
    wrong_shape.inputs[0].shape = vec![1, 3, 4, 7];
    let mut wrong_out = tiny_spec();
    wrong_out.outputs[1] = TensorSpec::fixed("score", &[1, 3, 4]);
    for (what, s) in [("name", wrong_name), ("shape", wrong_shape), ("output", wrong_out)] {
        match OrtBackend::load(&s, &o) {
            Err(BackendError::Mismatch { detail, .. }) => eprintln!("{what}: {detail}"),
            Err(e) => panic!("{what}: wrong error kind: {e}"),
            Ok(_) => panic!("{what}: mismatching manifest accepted"),
        }
    }
}

#[test]
fn wrong_call_shapes_are_errors() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let mut b = OrtBackend::load(&tiny_spec(), &opts(&lib, &["cpu"], false)).unwrap();
    let (x, _, _, _) = tiny_io();
    let bad_t = Tensor::zeros(&[2]);
    let mut outs = vec![Tensor::zeros(&[1, 3, 4, 6]), Tensor::zeros(&[1, 3, 4])];
    let err = b.run(&[&x, &bad_t], &mut outs);
    assert!(
        matches!(&err, Err(BackendError::Binding { detail, .. }) if detail.starts_with("input 1 ")),
        "{err:?}"
    );
    assert!(matches!(b.run(&[&x], &mut outs), Err(BackendError::Arity { .. })));
}

#[test]
fn reports_the_loaded_library() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let b = OrtBackend::load(&tiny_spec(), &opts(&lib, &["cpu"], false)).unwrap();
    let rt = b.runtime();
    assert_eq!(rt.path, std::fs::canonicalize(&lib).unwrap());
    let (major, minor) = runtime::parse_minor(&rt.version).expect("version");
    assert!(major == 1 && minor >= 17, "{}", rt.version);
}

/// Listing TensorRT with a cache directory creates the part's versioned engine folder, named by
/// model checksum, ONNX Runtime version and TensorRT version ("none" when libnvinfer is absent).
#[test]
fn tensorrt_cache_folder_is_versioned() {
    let Some(lib) = library("ORT_DYLIB_PATH") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&lib, &["tensorrt", "cpu"], false);
    o.cache_dir = Some(dir.path().to_path_buf());
    let b = OrtBackend::load(&tiny_spec(), &o).expect("load");
    let sha = gsdnet_edge::backend::ort::providers::model_sha256(&std::fs::read(tiny_spec().path).unwrap());
    let trt = runtime::tensorrt_version().unwrap_or_else(|| "none".into());
    let want = format!("tiny-{}-ort{}-trt{}", &sha[..16], b.runtime().version, trt);
    let got: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(got, vec![want]);
}
