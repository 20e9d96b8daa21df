//! Shared helpers of the ort integration tests: library discovery (skip only when the variable
//! is unset), fixture loading and tolerance checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gsdnet_edge::backend::{BackendOptions, PartSpec, TensorSpec};
use gsdnet_edge::tensor::Tensor;

/// The library from `var`, or None after printing why the test is skipped. A set but broken
/// path is not a skip: loading will fail loudly.
pub fn library(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => {
            eprintln!("SKIPPED: {var} is unset (scripts/fetch-onnxruntime.sh prints a library path)");
            None
        }
    }
}

/// The repository root: GSDNET_REPO_ROOT, else the build-time manifest dir when it exists, else
/// the working directory (a prebuilt test executable carried to another machine, run from there).
pub fn repo_root() -> PathBuf {
    if let Some(v) = std::env::var_os("GSDNET_REPO_ROOT") {
        return PathBuf::from(v);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    if built.join("Cargo.toml").is_file() {
        return built.to_path_buf();
    }
    std::env::current_dir().expect("working directory")
}

pub fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/ort")
}

/// Providers for the configured-provider tests: GSDNET_ORT_PROVIDERS (comma list, default cpu).
pub fn env_providers() -> Vec<gsdnet_edge::backend::ProviderKind> {
    std::env::var("GSDNET_ORT_PROVIDERS")
        .unwrap_or_else(|_| "cpu".into())
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("GSDNET_ORT_PROVIDERS names known providers"))
        .collect()
}

/// GSDNET_ORT_REQUIRE_ACCELERATOR=1 makes a CPU fallback a load error.
pub fn env_require_accelerator() -> bool {
    std::env::var("GSDNET_ORT_REQUIRE_ACCELERATOR").is_ok_and(|v| v == "1" || v == "true")
}

/// Part specs (manifest order) and SDE steps of the model in `dir`, through the runtime's own
/// manifest reader (names, shapes and sha256 checked); None when the folder has no manifest.
pub fn manifest_parts(dir: &Path) -> Option<(Vec<PartSpec>, usize)> {
    if !dir.join("manifest.toml").is_file() {
        return None;
    }
    let m = gsdnet_edge::manifest::Manifest::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Some((m.parts.clone(), m.sde.steps))
}

pub fn read_f32(path: &Path, shape: &[usize]) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let data: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_vec(shape, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn spec(name: &str, shape: &[usize]) -> TensorSpec {
    TensorSpec::fixed(name, shape)
}

/// The tiny fixture part: x [1,3,4,5], t [1] -> y [1,3,4,6], z [1,3,4].
pub fn tiny_spec() -> PartSpec {
    PartSpec {
        name: "tiny".into(),
        path: fixture_dir().join("tiny.onnx"),
        inputs: vec![spec("x", &[1, 3, 4, 5]), spec("t", &[1])],
        outputs: vec![spec("y", &[1, 3, 4, 6]), spec("z", &[1, 3, 4])],
    }
}

pub fn tiny_io() -> (Tensor, Tensor, Tensor, Tensor) {
    let d = fixture_dir();
    (
        read_f32(&d.join("tiny_x.f32"), &[1, 3, 4, 5]),
        read_f32(&d.join("tiny_t.f32"), &[1]),
        read_f32(&d.join("tiny_y.f32"), &[1, 3, 4, 6]),
        read_f32(&d.join("tiny_z.f32"), &[1, 3, 4]),
    )
}

pub fn opts(lib: &Path, providers: &[&str], require_accelerator: bool) -> BackendOptions {
    BackendOptions {
        threads: 1,
        providers: providers.iter().map(|s| s.parse().expect("known provider")).collect(),
        ort_library: Some(lib.to_path_buf()),
        require_accelerator,
        cache_dir: None,
        ..BackendOptions::default()
    }
}

/// Largest violation of |a - b| <= atol + rtol |b|, as (index, |a - b|, allowed); None when within.
pub fn worst(a: &Tensor, b: &Tensor, atol: f32, rtol: f32) -> Option<(usize, f32, f32)> {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let mut out: Option<(usize, f32, f32)> = None;
    for (i, (x, y)) in a.data().iter().zip(b.data()).enumerate() {
        let diff = (x - y).abs();
        let allowed = atol + rtol * y.abs();
        // NaN-aware: a NaN difference is never within.
        let within = diff <= allowed;
        if !within && out.is_none_or(|(_, d, _)| diff > d || d.is_nan()) {
            out = Some((i, diff, allowed));
        }
    }
    out
}

pub fn assert_close(what: &str, a: &Tensor, b: &Tensor, atol: f32, rtol: f32) {
    if let Some((i, diff, allowed)) = worst(a, b, atol, rtol) {
        panic!(
            "{what}: element {i}: |{} - {}| = {diff} > {allowed}",
            a.data()[i],
            b.data()[i]
        );
    }
}
