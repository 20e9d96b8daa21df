#!/usr/bin/env bash
# CI step for the ROS 2 node (called from scripts/test.sh; ROS2_CI_SKIP=1 leaves it out): lints
# and tests the `ros2` feature (profile table, conversions, CDR bytes of every message against
# tests/data/ros2_cdr.json, start failures), then builds the daemon with it and runs the interop
# test against a foreign DDS, cyclonedds from the test venv, on loopback only
# (tests/python/test_ros2_interop.py; it skips where the cyclonedds wheel is missing, e.g.
# aarch64). Run it after scripts/test.sh has made the venv; the ros2 binary is kept apart in
# target/ros2/ so the default target/release/gsdnet stays the default build's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo clippy --release --locked --all-targets --features ros2 -- -D warnings
# Unit tests of daemon::ros2 and config::ros2, and tests/integration/ros2.rs (which builds the bin).
cargo test --release --locked --features ros2 --lib --test integration -- ros2
cargo build --release --locked --features ros2 --bin gsdnet
mkdir -p target/ros2
cp target/release/gsdnet target/ros2/gsdnet
GSDNET_ROS2_BIN="$root/target/ros2/gsdnet" python3 -m pytest -q tests/python/test_ros2_cdr.py tests/python/test_ros2_interop.py
