//! Registering TensorRT and CUDA with the `onnxruntime-gpu` build on a machine without CUDA or
//! TensorRT libraries (or without a GPU): each must fail with ONNX Runtime's reason and fall
//! back to the CPU provider, or fail the load under require_accelerator.
//! The library comes from ORT_GPU_DYLIB_PATH (`scripts/fetch-onnxruntime.sh --gpu`); this file is
//! its own test process, so it can load a different ONNX Runtime than the other ort tests.
#![cfg(feature = "ort")]

mod ort_common;

use gsdnet_edge::backend::ort::providers::ProviderKind;
use gsdnet_edge::backend::ort::OrtBackend;
use gsdnet_edge::backend::Backend;
use gsdnet_edge::tensor::Tensor;
use ort_common::*;

#[test]
fn gpu_build_without_gpu_falls_back_or_refuses() {
    let Some(lib) = library("ORT_GPU_DYLIB_PATH") else { return };
    let b = OrtBackend::load(&tiny_spec(), &opts(&lib, &["tensorrt", "cuda", "cpu"], false)).expect("load");
    if b.provider_kind() != ProviderKind::Cpu {
        eprintln!("SKIPPED: {} runs here (a GPU is present); no fallback to test", b.provider());
        return;
    }
    let tried: Vec<ProviderKind> = b.fallbacks().iter().map(|f| f.provider).collect();
    assert_eq!(tried, vec![ProviderKind::TensorRt, ProviderKind::Cuda]);
    for f in b.fallbacks() {
        eprintln!("{:?}: {}", f.provider, f.reason);
        // The GPU build has both providers compiled in, so the reason is a load or device
        // failure, not "not enabled in this build".
        assert!(!f.reason.contains("not enabled in this build"), "{:?}: {}", f.provider, f.reason);
        assert!(!f.reason.trim().is_empty());
    }
    // Falling back still computes the right thing.
    let mut b: Box<dyn Backend> = Box::new(b);
    let (x, t, y_ref, z_ref) = tiny_io();
    let mut outs = vec![Tensor::zeros(&[1, 3, 4, 6]), Tensor::zeros(&[1, 3, 4])];
    b.run(&[&x, &t], &mut outs).expect("run");
    assert_close("y", &outs[0], &y_ref, 1e-6, 1e-5);
    assert_close("z", &outs[1], &z_ref, 1e-6, 1e-5);

    let err = OrtBackend::load(&tiny_spec(), &opts(&lib, &["tensorrt", "cuda"], true))
        .err()
        .expect("require_accelerator accepted a CPU fallback")
        .to_string();
    eprintln!("{err}");
    assert!(err.contains("require_accelerator") && err.contains("tensorrt:") && err.contains("cuda:"), "{err}");
}
