#!/usr/bin/env bash
# The IEMOCAP grid of docs/results/history.md on Session 4 (val), for one task (6way or 4way): GSDNet with
# training seeds 0-2 (exported, evaluated by the ONNX reference over mask seeds 0-2, every
# completion: gsdnet, meanfill, zero), the speaker-blind graph (window 8 whatever the speaker:
# no speaker edges) with seeds 0-2, and ablation (d) deterministic completion with seeds 0-2
# (torch evaluation). Two jobs at a time, one thread each. The baselines are
# research/baselines_iemocap.py. Training settings are the committed models' (their manifests'
# [training] command), seed and graph aside.
#   research/run_iemocap.sh OUT_DIR 6way|4way
set -uo pipefail
OUT=${1:?out dir}; TASK=${2:?6way or 4way}
DATA=../shared/data/iemocap/$TASK
case $TASK in
  6way) EP=30 ;;
  4way) EP=60 ;;
  *) echo "task must be 6way or 4way" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
TR="--data $DATA --threads 1 --epochs $EP --in-dropout 0.4 --pattern-prob 0.2"
jobs_list() {
  for s in 0 1 2; do
    echo "python3 -m gsdnet_torch.train $TR --window-same 8 --window-other 1 --seed $s --export $OUT/gsdnet-$s && python3 -m gsdnet_ref.evaluate $OUT/gsdnet-$s $DATA/val --out $OUT/eval-gsdnet-$s.json > $OUT/gsdnet-$s.log 2>&1"
    echo "python3 -m gsdnet_torch.train $TR --window-same 8 --window-other 8 --seed $s --export $OUT/nospk-$s && python3 -m gsdnet_ref.evaluate $OUT/nospk-$s $DATA/val --completions gsdnet --out $OUT/eval-nospk-$s.json > $OUT/nospk-$s.log 2>&1"
    echo "python3 -m gsdnet_torch.train $TR --window-same 8 --window-other 1 --seed $s --variant det --save $OUT/det-$s.pt && python3 research/eval_torch.py $OUT/det-$s.pt $OUT/eval-det-$s.json --completions gsdnet > $OUT/det-$s.log 2>&1"
  done
}
jobs_list | xargs -P 2 -I{} bash -c "{}"
ls "$OUT"
