#!/usr/bin/env bash
# GPU check of the ONNX Runtime backend: the ort test suite (tiny fixture, golden parity against
# the Python reference and tract, `check` report with one window's latency) on the CUDA provider,
# with a CPU fallback forbidden. Runs prebuilt test executables, so the GPU machine needs no Rust.
#
# Here (x86-64, before carrying):   scripts/gpu-check.sh --build
#   builds `cargo test --release --features ort --no-run` and packs the `integration` test
#   executable (stripped; its ort::golden and ort::backend tests run there) into
#   .gpucheck/tests.tar.gz (ignored by git; carry it).
# There (a copy of the repository with .gpucheck/ on the GPU machine; ORT_DYLIB_PATH names a
# CUDA-enabled libonnxruntime.so, e.g. the onnxruntime-gpu wheel's, fetched beforehand with
# `scripts/fetch-onnxruntime.sh --gpu` and carried along with the CUDA/cuDNN libraries it loads):
#   ORT_DYLIB_PATH=PATH/libonnxruntime.so scripts/gpu-check.sh [PROVIDERS]     (default: cuda)
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
  cargo build --release --features ort --bin gsdnet-bench
  cp target/release/gsdnet-bench "$out/gsdnet-bench"
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
    if m.get("reason") == "compiler-artifact" and exe and name == "integration":
        shutil.copy2(exe, sys.argv[1] + "/" + name)
        print(sys.argv[1] + "/" + name)
' "$out"
  ls "$out"/integration >/dev/null || { echo "gpu-check: no integration test executable built" >&2; exit 1; }
  # Stripped and gzipped to stay far below a call's carry limit next to the ORT parts.
  strip "$out"/integration
  strip "$out/gsdnet-bench"
  tar -C "$out" -czf "$out/tests.tar.gz" integration gsdnet-bench \
    && rm "$out"/integration "$out/gsdnet-bench"
  du -sh "$out/tests.tar.gz"
  exit 0
fi

providers=${1:-cuda}
[[ -n "${ORT_DYLIB_PATH:-}" ]] || { echo "gpu-check: ORT_DYLIB_PATH is unset (a CUDA-enabled libonnxruntime.so)" >&2; exit 2; }
[[ -f "$out/tests.tar.gz" ]] || { echo "gpu-check: no prebuilt tests in $out/ (run --build here and carry $out)" >&2; exit 2; }
bin=$(mktemp -d)
tar -C "$bin" -xzf "$out/tests.tar.gz"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH providers=$providers"

export GSDNET_ORT_PROVIDERS=$providers GSDNET_ORT_REQUIRE_ACCELERATOR=1 GSDNET_REPO_ROOT=$root
status=0
for t in ort::golden:: ort::backend::; do
  echo "== $t"
  # --nocapture shows the provider, parity and latency lines; one thread keeps GPU timing clean.
  "$bin"/integration "$t" --nocapture --test-threads 1 2>&1 | grep -v '^$' || status=1
done

# ---- CUDA graph capture: reachable through ort (ep::CUDA::with_cuda_graph, ORT's
# enable_cuda_graph), but only used if our provider config turns it on.
if grep -q 'with_cuda_graph(true)' src/backend/ort/providers.rs 2>/dev/null; then
  echo "cuda graph capture: ENABLED in src/backend/ort/providers.rs"
else
  echo "cuda graph capture: not used (not implemented: src/backend/ort/providers.rs builds ep::CUDA" \
       "without with_cuda_graph; ORT would also need device-resident bound I/O at fixed shapes," \
       "and our IoBinding binds host staging tensors per shape)"
fi

# ---- latency: one window CPU vs CUDA at N = 16/32/64, and batches of 1/8/32 windows.
bench=$bin/gsdnet-bench
if [[ -x "$bench" ]]; then
  res=${OUT:-$root/$out}
  mkdir -p "$res"
  common=(--backend ort --data data/mosi-val.gsdrec --sizes "16,32,64" --steps 3
          --warmup 5 --budget-ms 300 --batch "1,8,32")
  for prov in cpu cuda; do
    echo "== gsdnet-bench providers=$prov (threads: cpu 1, cuda engine default)"
    extra=()
    if [[ $prov == cpu ]]; then extra=(--threads 1); else extra=(--require-accelerator); fi
    # Unset the test-suite variables so only --providers decides.
    env -u GSDNET_ORT_REQUIRE_ACCELERATOR -u GSDNET_ORT_PROVIDERS \
      "$bench" "${common[@]}" "${extra[@]}" --providers "$prov" --json "$res/bench-$prov.json" \
      || { echo "gsdnet-bench providers=$prov FAILED"; status=1; }
  done
  if [[ -f "$res/bench-cpu.json" && -f "$res/bench-cuda.json" ]]; then
    python3 - "$res/bench-cpu.json" "$res/bench-cuda.json" <<'PY'
import json, sys
cpu, cuda = (json.load(open(p)) for p in sys.argv[1:3])
print("providers per part (cuda run):", sorted({r["provider"] for r in cuda["rows"]}))
key = lambda r: (r["window"], r["steps"])
c = {key(r): r for r in cpu["rows"]}
print("window latency p50 ms (ort, IoBinding per shape): N  cpu  cuda  cpu/cuda")
for r in cuda["rows"]:
    a = c.get(key(r))
    if a:
        x, y = a["total"]["p50_ms"], r["total"]["p50_ms"]
        print(f"  {r['window']:>3} {x:8.3f} {y:8.3f} {x / y:6.2f}x")
cb = {(r["steps"], r["batch"]): r for r in cpu.get("batch_rows", [])}
print("batch: B  cpu ms/window  cuda ms/window  cuda windows/s  cuda vs B=1")
for r in cuda.get("batch_rows", []):
    a = cb.get((r["steps"], r["batch"]))
    print(f"  {r['batch']:>3} {a['per_window_p50_ms'] if a else float('nan'):10.3f} "
          f"{r['per_window_p50_ms']:10.3f} {r['windows_per_s']:10.1f} {r['speedup_vs_1'] or 0:6.2f}x")
PY
  fi
else
  echo "gpu-check: no gsdnet-bench in the pack (rebuild with --build); latency skipped"
fi
echo "gpu-check: $([[ $status == 0 ]] && echo PASSED || echo FAILED)"
exit $status
