#!/usr/bin/env bash
# Window latency of this checkout against an earlier revision, measured back to back on the same
# inputs (tract, one thread): builds REV's gsdnet-bench in a temporary worktree (sharing this
# target directory, so only the crate recompiles), then alternates the two binaries for ROUNDS
# rounds at each window size and prints every size's best p50 (interference only adds time) and
# the ratio. REV runs its own models/, this checkout its own.
#   bash scripts/bench_vs_rev.sh [REV=855380f] [SIZES=16,32,64] [ROUNDS=3] [STEPS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-855380f}; sizes=${2:-16,32,64}; rounds=${3:-3}; steps=${4:-3}
data=../shared/data/cmu-mosi/val
[ -d "$data" ] || { echo "bench_vs_rev: $data is missing: nothing measured" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/wt" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add -f --detach "$tmp/wt" "$rev" >/dev/null
(cd "$tmp/wt" && CARGO_TARGET_DIR="$OLDPWD/target" cargo build --release --bin gsdnet-bench 2>&1 | tail -1)
cp target/release/gsdnet-bench "$tmp/old-bench"
cargo build --release --bin gsdnet-bench 2>&1 | tail -1
args=(--backend tract --data "$data" --sizes "$sizes" --steps "$steps" --threads 1 --budget-ms 1500)
for r in $(seq "$rounds"); do
  "$tmp/old-bench" --model "$tmp/wt/models/gsdnet-mosi" "${args[@]}" --json "$tmp/old-$r.json" >/dev/null 2>&1
  ./target/release/gsdnet-bench "${args[@]}" --json "$tmp/new-$r.json" >/dev/null 2>&1
done
python3 - "$tmp" "$rounds" "$rev" <<'PY'
import json, sys
tmp, rounds, rev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def best(kind):
    out = {}
    for r in range(1, rounds + 1):
        for row in json.load(open(f"{tmp}/{kind}-{r}.json"))["rows"]:
            if row.get("layout", "bucketed") != "bucketed":
                continue
            n = row["window"]
            p50 = row["total"]["p50_ms"]
            out[n] = min(out.get(n, p50), p50)
    return out
old, new = best("old"), best("new")
print(f"tract, 1 thread, best p50 of {rounds} alternating rounds; {rev} = before, HEAD checkout = after")
print("| N | before (ms) | after (ms) | speedup |")
print("|---|---|---|---|")
for n in sorted(old):
    if n in new:
        print(f"| {n} | {old[n]:.3f} | {new[n]:.3f} | {old[n] / new[n]:.2f}x |")
PY
