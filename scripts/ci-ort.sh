#!/usr/bin/env bash
# CI step for the ONNX Runtime backend (called from .ci/run): fetches the pinned `onnxruntime`
# wheel's library from PyPI and runs the whole test suite with `--features ort` against it (tiny
# fixture, golden parity ort vs tract vs the Python reference, check report); then, unless
# ORT_CI_SKIP_GPU=1, fetches the `onnxruntime-gpu` library (~300 MB, cached) and checks that
# TensorRT and CUDA fail with a clear reason and fall back (or refuse, with require_accelerator)
# on this GPU-less machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
export ORT_DYLIB_PATH
echo "ci-ort: ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
cargo test --release --locked --features ort
if [[ "${ORT_CI_SKIP_GPU:-0}" != 1 ]]; then
  ORT_GPU_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh --gpu)
  export ORT_GPU_DYLIB_PATH
  echo "ci-ort: ORT_GPU_DYLIB_PATH=$ORT_GPU_DYLIB_PATH"
  cargo test --release --locked --features ort --test integration ort::gpu_fallback -- --nocapture
fi
