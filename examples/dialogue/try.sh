#!/usr/bin/env bash
# Try the sensor side end to end, in one command: `bash examples/dialogue/try.sh`.
# Serves models/gsdnet-iemocap6 (the x86 profile on a temporary Unix socket), runs the sensor
# program on the synthetic dialogue of this folder (audio features by openSMILE, transcripts to the
# daemon's text frontend), with the microphone dead for the third line (7.7-11.1 s, so the daemon
# completes that utterance's audio), and prints every scored result as it arrives, then the
# sensor's report. Sets up what it needs first: the release binary, the project's venv with the
# `sensor` extra (openSMILE: audEERING's research licence, non-commercial use only), the text
# frontend (scripts/setup-frontends.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=examples/dialogue

cargo build --release --locked --bin gsdnet
venv=${GSDNET_VENV:-.venv}
[[ -x "$venv/bin/python3" ]] || python3 -m venv "$venv"
"$venv/bin/python3" -c 'import gsdnet_sensor, opensmile' 2>/dev/null ||
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -e 'python[sensor]'
PYTHON="$venv/bin/python3" bash scripts/setup-frontends.sh

tmp=$(mktemp -d)
sock=$tmp/gsdnet.sock
sed -e "s#^tcp = .*#tcp = []#" -e "s#^unix = .*#unix = [\"$sock\"]#" boards/x86-dev.toml > "$tmp/board.toml"
RUST_LOG=warn target/release/gsdnet serve --board "$tmp/board.toml" --models models/gsdnet-iemocap6 &
daemon=$!
subscriber=
cleanup() {
    [[ -n "$subscriber" ]] && kill "$subscriber" 2>/dev/null
    kill "$daemon" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 600); do [[ -S "$sock" ]] && break; sleep 0.1; done
[[ -S "$sock" ]] || { echo "try: gsdnet serve did not start" >&2; exit 1; }

"$venv/bin/python3" -m gsdnet_client scored --unix "$sock" &
subscriber=$!
sleep 0.5
rc=0
"$venv/bin/python3" -m gsdnet_sensor wav "$here/dialogue.wav" --segments "$here/segments.csv" \
    --unix "$sock" --conversation try-dialogue --drop-audio 7.7-11.1 --wait 20 || rc=$?
sleep 0.5
exit "$rc"
