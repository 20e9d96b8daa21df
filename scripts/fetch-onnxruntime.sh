#!/usr/bin/env bash
# Fetches a prebuilt ONNX Runtime shared library from PyPI (the official `onnxruntime` wheel, or
# `onnxruntime-gpu` with --gpu) into a cache directory and prints the path of
# libonnxruntime.so.* on stdout (the only thing printed there), ready for ORT_DYLIB_PATH.
#
#   scripts/fetch-onnxruntime.sh [--gpu] [VERSION]
#   export ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
#
# The cache (ORT_CACHE_DIR, default ~/.cache/gsdnet-edge/onnxruntime) holds one directory per
# package and version; a second call reuses it and needs no network. Every shared object of
# onnxruntime/capi is extracted, since the CUDA/TensorRT provider libraries must sit next to
# libonnxruntime.so. The build never downloads anything; this script is the only fetch.
set -euo pipefail

# Pinned: the ONNX Runtime release the `ort` crate pin (2.0.0-rc.15) targets.
DEFAULT_VERSION=1.31.1
pkg=onnxruntime
if [[ "${1:-}" == "--gpu" ]]; then
  pkg=onnxruntime-gpu
  shift
fi
ver=${1:-$DEFAULT_VERSION}
cache=${ORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gsdnet-edge/onnxruntime}
dest="$cache/$pkg-$ver"

find_lib() {
  find "$dest/onnxruntime/capi" -maxdepth 1 -name 'libonnxruntime.so.*' -type f 2>/dev/null | sort | head -1 || true
}

lib=$(find_lib)
if [[ -z "$lib" ]]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/.fetch.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "fetch-onnxruntime: downloading $pkg==$ver from PyPI" >&2
  pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 -d "$work" "$pkg==$ver" >&2
  whl=$(ls "$work"/*.whl | head -1)
  python3 - "$whl" "$work/out" <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist()
             if n.startswith("onnxruntime/capi/") and n.rsplit("/", 1)[-1].startswith("lib")]
    if not names:
        sys.exit(f"fetch-onnxruntime: no shared objects under onnxruntime/capi in {whl}")
    for n in names:
        z.extract(n, out)
PY
  rm -rf "$dest"
  mv "$work/out" "$dest"
  lib=$(find_lib)
  [[ -n "$lib" ]] || { echo "fetch-onnxruntime: libonnxruntime.so.* missing from $pkg==$ver" >&2; exit 1; }
fi
echo "$lib"
