#!/usr/bin/env bash
# Runs the docs/results/history.md grid in parallel (one thread per job): GSDNet with training seeds 0-2
# (exported, evaluated by the ONNX reference), ablations (d) det and (b) adj with seeds 0-2
# (torch evaluation), and the baselines (floor + BiLSTM peer, seeds 0-2).
#   research/run_all.sh OUT_DIR [DATA_DIR] [extra train.py args...]
set -uo pipefail
OUT=${1:?out dir}; DATA=${2:-../shared/data/cmu-mosi}; shift; shift || true
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
TR="--data $DATA --threads 1 $*"
for s in 0 1 2; do
  ( python3 -m gsdnet_torch.train $TR --seed "$s" --save "$OUT/gsdnet-$s.pt" --export "$OUT/gsdnet-$s" \
      && python3 -m gsdnet_ref.evaluate "$OUT/gsdnet-$s" "$DATA/val" \
          --out "$OUT/eval-gsdnet-$s.json" ) > "$OUT/gsdnet-$s.log" 2>&1 &
  for v in det adj; do
    extra=""; [ "$v" = adj ] && extra="--threads 2 --score-epochs 8 --ft-epochs 4"
    ( python3 -m gsdnet_torch.train $TR $extra --seed "$s" --variant "$v" --save "$OUT/$v-$s.pt" \
        && python3 research/eval_torch.py "$OUT/$v-$s.pt" "$OUT/eval-$v-$s.json" ) \
        > "$OUT/$v-$s.log" 2>&1 &
  done
  python3 research/baselines.py "$OUT/eval-baselines-$s.json" --seed "$s" --data "$DATA" > "$OUT/baselines-$s.log" 2>&1 &
done
wait
ls "$OUT"
