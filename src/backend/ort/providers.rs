//! Execution providers in ONNX Runtime: building each provider's options
//! (TensorRT with fixed shapes and a versioned engine cache), and the cache key.
//!
//! Invariant: a TensorRT engine cache directory is keyed by the model's sha256, the ONNX Runtime
//! version and the TensorRT version, so an engine built for another model or library is never
//! found, let alone reused.

use std::path::{Path, PathBuf};

use ort::ep::{self, ExecutionProviderDispatch};
use sha2::{Digest, Sha256};

use crate::backend::{BackendOptions, PartSpec, ProviderKind, Shape, TensorSpec};
use crate::capacity::MAX_CALL_ROWS;

/// `name:1x3x64x32,...`: TensorRT optimisation-profile syntax for the inputs at `at`.
pub fn trt_shapes(inputs: &[TensorSpec], at: Shape) -> String {
    inputs
        .iter()
        .map(|s| {
            let dims: Vec<String> = s.shape_at(at).iter().map(|d| d.to_string()).collect();
            format!("{}:{}", s.name, dims.join("x"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// TensorRT's optimisation profile of a part: (min, opt, max) input shapes. Fixed-shape parts:
/// the one shape three times; symbolic ones: batch 1 and window `min_window` up to the largest
/// call (`rows::MAX_CALL_ROWS` rows, since windows x completion samples may exceed `max_batch`)
/// x W, optimised at `max_batch` x W (the daemon's full batch of windows).
pub struct TrtProfile {
    pub min: String,
    pub opt: String,
    pub max: String,
}

pub fn trt_profile(spec: &PartSpec, opts: &BackendOptions) -> TrtProfile {
    let full = spec.reference_shape();
    if !spec.is_symbolic() {
        let one = trt_shapes(&spec.inputs, full);
        return TrtProfile {
            min: one.clone(),
            opt: one.clone(),
            max: one,
        };
    }
    let low = Shape {
        batch: 1,
        window: opts.min_window.clamp(1, full.window.max(1)),
        seq: full.seq.min(1),
    };
    let opt = Shape {
        batch: opts.max_batch.clamp(1, MAX_CALL_ROWS),
        ..full
    };
    let high = Shape {
        batch: MAX_CALL_ROWS,
        ..full
    };
    TrtProfile {
        min: trt_shapes(&spec.inputs, low),
        opt: trt_shapes(&spec.inputs, opt),
        max: trt_shapes(&spec.inputs, high),
    }
}

/// Hex sha256 of the model file.
pub fn model_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cache directory for one part's TensorRT engines: `cache_dir/<part>-<sha256[..16]>-ort<ver>-trt<ver>`.
pub fn trt_cache_dir(cache_dir: &Path, part: &str, sha256: &str, ort_version: &str, trt_version: &str) -> PathBuf {
    let short = &sha256[..sha256.len().min(16)];
    let clean = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
            .collect::<String>()
    };
    cache_dir.join(format!(
        "{}-{short}-ort{}-trt{}",
        clean(part),
        clean(ort_version),
        clean(trt_version)
    ))
}

/// Builds the dispatch for one provider; registration errors are returned, not swallowed.
pub fn dispatch(kind: ProviderKind, profile: &TrtProfile, trt_cache: Option<&Path>) -> ExecutionProviderDispatch {
    match kind {
        ProviderKind::TensorRt => {
            let mut trt = ep::TensorRT::default()
                .with_profile_min_shapes(&profile.min)
                .with_profile_opt_shapes(&profile.opt)
                .with_profile_max_shapes(&profile.max);
            if let Some(dir) = trt_cache {
                let dir = dir.display().to_string();
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(&dir)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&dir);
            }
            trt.build().error_on_failure()
        }
        // TF32 off: golden parity tolerances (1e-4) assume float32 matmuls; TF32 is ~1e-3.
        ProviderKind::Cuda => ep::CUDA::default().with_tf32(false).build().error_on_failure(),
        ProviderKind::Cpu => ep::CPU::default().build().error_on_failure(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_changes_with_every_component() {
        let base = Path::new("/c");
        let a = trt_cache_dir(base, "s_theta", "abcdef0123456789ff", "1.19.2", "10.3.0");
        assert_eq!(a, Path::new("/c/s_theta-abcdef0123456789-ort1.19.2-trt10.3.0"));
        assert_ne!(
            a,
            trt_cache_dir(base, "s_theta", "bbcdef0123456789ff", "1.19.2", "10.3.0")
        );
        assert_ne!(
            a,
            trt_cache_dir(base, "s_theta", "abcdef0123456789ff", "1.20.0", "10.3.0")
        );
        assert_ne!(
            a,
            trt_cache_dir(base, "s_theta", "abcdef0123456789ff", "1.19.2", "10.4.0")
        );
    }

    #[test]
    fn trt_shapes_syntax() {
        let s = vec![TensorSpec::fixed("x", &[1, 3, 64, 32]), TensorSpec::fixed("t", &[1])];
        assert_eq!(trt_shapes(&s, Shape::windows(1, 64)), "x:1x3x64x32,t:1");
    }

    #[test]
    fn trt_profile_spans_batch_and_window_of_symbolic_parts() {
        use crate::backend::Axis::{Batch, Fixed, Window};
        let x = TensorSpec::new("x", &[1, 3, 64, 32], &[Batch, Fixed, Window, Fixed]);
        let t = TensorSpec::new("t", &[1], &[Batch]);
        let spec = PartSpec {
            name: "s_theta".into(),
            path: "s.onnx".into(),
            inputs: vec![x, t.clone()],
            outputs: vec![],
        };
        let opts = BackendOptions {
            max_batch: 8,
            min_window: 8,
            ..Default::default()
        };
        let p = trt_profile(&spec, &opts);
        assert_eq!((p.min.as_str(), p.opt.as_str()), ("x:1x3x8x32,t:1", "x:8x3x64x32,t:8"));
        assert_eq!(p.max, "x:64x3x64x32,t:64", "any call the row caller makes fits");
        let fixed = PartSpec {
            inputs: vec![TensorSpec::fixed("t", &[1])],
            ..spec
        };
        let p = trt_profile(&fixed, &opts);
        assert_eq!((p.min.as_str(), p.opt.as_str(), p.max.as_str()), ("t:1", "t:1", "t:1"));
    }
}
