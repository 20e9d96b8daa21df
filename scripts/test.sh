#!/usr/bin/env bash
# The project's test command (README.md "Tests"; .ci/run calls it): checks the systemd units
# (scripts/check-unit.sh: sandbox exposure <= 2.5, `systemd-analyze verify`; installs the Debian
# systemd package when systemd-analyze is missing), installs the Python test
# requirements, then runs the Rust suite on the default (tract) build, the Python reference
# suite, and the ONNX Runtime suite (`--features ort` against the real library from the PyPI
# wheel, plus the CUDA/TensorRT fallback check with the onnxruntime-gpu wheel's library).
# Set ORT_CI_SKIP=1 to leave out the ONNX Runtime suite, ORT_CI_SKIP_GPU=1 for its GPU-wheel part.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/check-unit.sh

python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-ci.txt

# Release profile: tract is ~50x slower unoptimised, and `cargo run --release` shares the build.
cargo test --release --locked

python3 -m pytest -q tests/python

if [[ "${ORT_CI_SKIP:-0}" != 1 ]]; then
    bash scripts/ci-ort.sh
fi
