#!/usr/bin/env bash
# Small val sweep of GSDNet training settings (3 training seeds each, 1 thread per job),
# every run exported and evaluated by the ONNX reference. Selection is on val only.
#   research/sweep.sh OUT_DIR DATA_DIR
set -uo pipefail
OUT=${1:?out}; DATA=${2:?data}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
BASE="--data $DATA --threads 1 --d 16 --epochs 4 --score-epochs 15 --ft-epochs 8 --reps 2"
S="--sel-rates 8 --sel-seeds 2"
declare -A CFG=(
  [w0]="$S --cmp-init random" [w1]="$S" [w2]="$S --ft-epochs 16 --reps 4"
  [w3]="$S --ft-epochs 16"
)
jobs_list() {
  for c in "${!CFG[@]}"; do for s in 0 1 2; do echo "$c $s"; done; done
}
run_one() {
  c=$1; s=$2; extra=${CFG[$c]}
  python3 -m gsdnet_torch.train $BASE $extra --seed "$s" --export "$OUT/$c-$s" > "$OUT/$c-$s.log" 2>&1 \
    && python3 -m gsdnet_ref.evaluate "$OUT/$c-$s" "$DATA/val" \
       --out "$OUT/eval-$c-$s.json" >> "$OUT/$c-$s.log" 2>&1
}
for c in "${!CFG[@]}"; do echo "$c=${CFG[$c]}"; done > "$OUT/configs.txt"
jobs_list | {
  while read -r c s; do
    while [ "$(jobs -rp | wc -l)" -ge 16 ]; do sleep 1; done
    run_one "$c" "$s" &
  done
  wait
}
