#!/usr/bin/env bash
# GPU check of the ONNX Runtime backend: the ort test suite (tiny fixture, golden parity against
# the Python reference and tract, `check` report with one window's latency) on the CUDA provider,
# with a CPU fallback forbidden. Runs prebuilt test executables, so the GPU machine needs no Rust.
#
# Here (x86-64, before carrying):   scripts/gpu-check.sh --build
#   builds `cargo test --release --features ort --no-run` and packs the ort_golden and ort_backend
#   test executables (stripped) into .gpucheck/tests.tar.gz (~15 MB, ignored by git; carry it).
# There (repo copy, CUDA ORT from /work/shared/tools/ort-gpu-carry.sh's unpack.sh):
#   . .devcarry/unpack.sh && scripts/gpu-check.sh [PROVIDERS]      (default: cuda)
#   PROVIDERS e.g. "tensorrt,cuda" where TensorRT is installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=.gpucheck

if [[ "${1:-}" == "--build" ]]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.gpucheck/' "$exclude" 2>/dev/null || echo '/.gpucheck/' >> "$exclude"
  rm -rf "$out" && mkdir -p "$out"
  cargo test --release --features ort --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    name = m.get("target", {}).get("name", "")
    if m.get("reason") == "compiler-artifact" and exe and name in ("ort_golden", "ort_backend"):
        shutil.copy2(exe, sys.argv[1] + "/" + name)
        print(sys.argv[1] + "/" + name)
' "$out"
  ls "$out"/ort_* >/dev/null || { echo "gpu-check: no ort_* test executables built" >&2; exit 1; }
  # Stripped and gzipped to stay far below a call's carry limit next to the ORT parts.
  strip "$out"/ort_*
  tar -C "$out" -czf "$out/tests.tar.gz" ort_golden ort_backend && rm "$out"/ort_golden "$out"/ort_backend
  du -sh "$out/tests.tar.gz"
  exit 0
fi

providers=${1:-cuda}
[[ -n "${ORT_DYLIB_PATH:-}" ]] || { echo "gpu-check: ORT_DYLIB_PATH is unset (source .devcarry/unpack.sh first)" >&2; exit 2; }
[[ -f "$out/tests.tar.gz" ]] || { echo "gpu-check: no prebuilt tests in $out/ (run --build here and carry $out)" >&2; exit 2; }
bin=$(mktemp -d)
tar -C "$bin" -xzf "$out/tests.tar.gz"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH providers=$providers"

export GSDNET_ORT_PROVIDERS=$providers GSDNET_ORT_REQUIRE_ACCELERATOR=1 GSDNET_REPO_ROOT=$root
status=0
for t in "$bin"/ort_golden "$bin"/ort_backend; do
  [[ -x "$t" ]] || continue
  echo "== $(basename "$t")"
  # --nocapture shows the provider, parity and latency lines; one thread keeps GPU timing clean.
  "$t" --nocapture --test-threads 1 2>&1 | grep -v '^$' || status=1
done
echo "gpu-check: $([[ $status == 0 ]] && echo PASSED || echo FAILED)"
exit $status
