//! Registering TensorRT and CUDA with the `onnxruntime-gpu` build on a machine without CUDA or
//! TensorRT libraries (or without a GPU): each must fail with ONNX Runtime's reason and fall
//! back to the CPU provider, or fail the load under require_accelerator.
//! The library comes from ORT_GPU_DYLIB_PATH (`scripts/fetch-onnxruntime.sh --gpu`). ONNX Runtime
//! is loaded once per process and the other ort tests load ORT_DYLIB_PATH's, so the check runs in
//! a child process of this test binary that runs this test alone.

use std::process::Command;

use crate::util::ort::*;
use gsdnet_edge::backend::ort::OrtBackend;
use gsdnet_edge::backend::Backend;
use gsdnet_edge::backend::ProviderKind;
use gsdnet_edge::tensor::Tensor;

/// Set in the child process that runs the check.
const CHILD: &str = "GSDNET_GPU_FALLBACK_CHILD";

#[test]
fn gpu_build_without_gpu_falls_back_or_refuses() {
    let Some(lib) = library("ORT_GPU_DYLIB_PATH") else {
        return;
    };
    if std::env::var_os(CHILD).is_some() {
        return check(&lib);
    }
    let module = module_path!().split_once("::").map_or(module_path!(), |(_, m)| m);
    let name = format!("{module}::gpu_build_without_gpu_falls_back_or_refuses");
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the test binary");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in a child process:\n{stdout}\n{stderr}"
    );
}

fn check(lib: &std::path::Path) {
    let b = OrtBackend::load(&tiny_spec(), &opts(lib, &["tensorrt", "cuda", "cpu"], false)).expect("load");
    if b.provider_kind() != ProviderKind::Cpu {
        eprintln!(
            "SKIPPED: {} runs here (a GPU is present); no fallback to test",
            b.provider()
        );
        return;
    }
    let tried: Vec<ProviderKind> = b.fallbacks().iter().map(|f| f.provider).collect();
    assert_eq!(tried, vec![ProviderKind::TensorRt, ProviderKind::Cuda]);
    for f in b.fallbacks() {
        eprintln!("{:?}: {}", f.provider, f.reason);
        // The GPU build has both providers compiled in, so the reason is a load or device
        // failure, not "not enabled in this build".
        assert!(
            !f.reason.contains("not enabled in this build"),
            "{:?}: {}",
            f.provider,
            f.reason
        );
        assert!(!f.reason.trim().is_empty());
    }
    // Falling back still computes the right thing.
    let mut b: Box<dyn Backend> = Box::new(b);
    let (x, t, y_ref, z_ref) = tiny_io();
    let mut outs = vec![Tensor::zeros(&[1, 3, 4, 6]), Tensor::zeros(&[1, 3, 4])];
    b.run(&[&x, &t], &mut outs).expect("run");
    assert_close("y", &outs[0], &y_ref, 1e-6, 1e-5);
    assert_close("z", &outs[1], &z_ref, 1e-6, 1e-5);

    let err = OrtBackend::load(&tiny_spec(), &opts(lib, &["tensorrt", "cuda"], true))
        .err()
        .expect("require_accelerator accepted a CPU fallback")
        .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("require_accelerator") && err.contains("tensorrt:") && err.contains("cuda:"),
        "{err}"
    );
}
