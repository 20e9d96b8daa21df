#!/usr/bin/env bash
# Cross-builds the gsdnet binary for Jetson (JetPack 6 = Ubuntu 22.04, glibc 2.35, aarch64) with
# cargo-zigbuild, linking against glibc 2.35 symbols so the binary runs on the board.
#
#   deploy/cross-build-jetson.sh [extra cargo args]     (default features: ort)
#
# Needs: rustup (adds the aarch64 std), and zig + cargo-zigbuild, taken from PyPI
# (`pip install ziglang cargo-zigbuild`) when not on PATH. ONNX Runtime is loaded at run time
# (feature `load-dynamic`), so nothing of it is needed to build. Output:
#   target/aarch64-unknown-linux-gnu/release/gsdnet
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
triple=aarch64-unknown-linux-gnu
glibc=2.35

rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"

have_zig() { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }
if ! command -v cargo-zigbuild >/dev/null || ! have_zig; then
  echo "cross-build-jetson: installing ziglang and cargo-zigbuild from PyPI" >&2
  python3 -m pip install --quiet ziglang cargo-zigbuild
fi
# cargo-zigbuild finds zig on PATH or through `python3 -m ziglang`.
command -v cargo-zigbuild >/dev/null || { echo "cross-build-jetson: cargo-zigbuild not on PATH" >&2; exit 1; }

features=${GSDNET_FEATURES:-ort}
cargo zigbuild --release --target "$triple.$glibc" --features "$features" --bin gsdnet "$@"
bin="target/$triple/release/gsdnet"
file "$bin" 2>/dev/null || ls -l "$bin"
echo "$bin"
