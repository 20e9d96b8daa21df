#!/usr/bin/env bash
# Packages a cross-built Jetson binary with the models, board profiles and systemd unit into
# dist/gsdnet-edge-<version>-aarch64.tar.gz. Run deploy/cross-build-jetson.sh first.
#
#   deploy/package-jetson.sh [BINARY]
#
# ONNX Runtime is not bundled: on the board it comes from JetPack's own build (see
# docs/JETSON.md) and is named by the board profile or ORT_DYLIB_PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${1:-target/aarch64-unknown-linux-gnu/release/gsdnet}
[[ -f "$bin" ]] || { echo "package-jetson: $bin missing (run deploy/cross-build-jetson.sh)" >&2; exit 1; }
if command -v file >/dev/null && ! file "$bin" | grep -q 'aarch64'; then
  echo "package-jetson: $bin is not an aarch64 binary: $(file -b "$bin")" >&2
  exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
name="gsdnet-edge-$version-aarch64"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/bin"
install -m 0755 "$bin" "$stage/$name/bin/gsdnet"
for d in models boards; do
  [[ -d "$d" ]] && cp -a "$d" "$stage/$name/" || echo "package-jetson: warning: no $d/ folder" >&2
done
# The hardened unit and its optional socket (docs/SERVICE.md "Sandboxing").
for unit in deploy/gsdnet.service deploy/gsdnet.socket; do
  [[ -f "$unit" ]] && cp "$unit" "$stage/$name/" || echo "package-jetson: warning: no $unit" >&2
done
[[ -f docs/JETSON.md ]] && cp docs/JETSON.md "$stage/$name/"
mkdir -p dist
tar -C "$stage" -czf "dist/$name.tar.gz" "$name"
echo "dist/$name.tar.gz"
