#!/usr/bin/env bash
# Encoder and fusion variants on the MiniLM IEMOCAP recipe, stage 1 only, 3 training seeds each (issue 20:
# can the GSDNet fusion reach the BiLSTM peer + 2 points?). research/results/fusion_sweep_minilm.json
# holds the numbers. Each run prints "stage 1 best epoch E val S": S is the mean val wF1 of the
# mean-fill completion over rates 0.0-0.5 x mask seeds 0-1 at the selected epoch.
#   research/fusion_sweep.sh OUT_DIR [TASK ...]        (default tasks: 4way 6way; ~35 s a run)
# The fusion-seq / fusion-rnn rows need `git apply research/patches/fusion_seq_rnn.diff` first
# (variants that were measured and not kept, so they are not in the product code).
set -euo pipefail
out=${1:?usage: fusion_sweep.sh OUT_DIR [TASK ...]}
shift
tasks=${*:-4way 6way}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
configs=(
  "base|"
  "d32|--d 32"
  "h128|--hid 128"
  "d32h128|--d 32 --hid 128"
  "d32h256|--d 32 --hid 256"
  "d64h128|--d 64 --hid 128"
  "attn|--fusion-ctx attn"
  "attnh128|--fusion-ctx attn --hid 128"
  "d32h128attn|--d 32 --hid 128 --fusion-ctx attn"
  "l3|--fusion-layers 3"
  "d32h128l3|--d 32 --hid 128 --fusion-layers 3"
  "ws16|--window-same 16"
  "ws32|--window-same 32"
  "ws16l3|--window-same 16 --fusion-layers 3"
  "d32h128ema|--d 32 --hid 128 --ema 0.99"
  "d32h128lr5|--d 32 --hid 128 --lr 5e-4 --epochs 90"
  "ind03|--in-dropout 0.3"
  "ind05|--in-dropout 0.5"
  "pp03|--pattern-prob 0.3"
  "dr03|--dropout 0.3"
  "mlp64|--enc-hidden 64"
  "mlp128|--enc-hidden 128"
  "mlp256|--enc-hidden 256"
  "mlp128d32h128|--enc-hidden 128 --d 32 --hid 128"
)
# 6-way only in the recorded sweep
[[ " $tasks " == *" 6way "* ]] && configs6=("pp01|--pattern-prob 0.1" "ls01|--label-smoothing 0.1"
  "mlp128ind5|--enc-hidden 128 --in-dropout 0.5") || configs6=()
if git -C "$root" apply --check -R research/patches/fusion_seq_rnn.diff 2>/dev/null; then
  configs+=("seq1|--fusion-seq 1" "seq2|--fusion-seq 2" "rnn|--fusion-rnn")
fi
jobs=()
for task in $tasks; do
  epochs=60
  [ "$task" = 6way ] && epochs=30
  for seed in 0 1 2; do
    extra=()
    [ "$task" = 6way ] && extra=("${configs6[@]}")
    for c in "${configs[@]}" "${extra[@]}"; do
      jobs+=("$task|$seed|$epochs|$c")
    done
  done
done
run() {
  IFS='|' read -r task seed epochs name extra <<<"$1"
  log="$2/$task.$name.s$seed.log"
  grep -q "stage 1 best" "$log" 2>/dev/null && return 0
  # shellcheck disable=SC2086  # $extra is a list of options
  (cd "$3/python" && python3 -m gsdnet_torch.train --data "$3/../shared/data/iemocap/$task" \
    --text-view minilm --seed "$seed" --epochs "$epochs" --window-same 8 --window-other 1 \
    --in-dropout 0.4 --pattern-prob 0.2 --threads 1 --score-epochs 0 --ft-epochs 0 --no-prior \
    $extra) >"$log" 2>&1
}
export -f run
printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} bash -c 'run "$@"' _ {} "$out" "$root"
for task in $tasks; do
  echo "== $task (mean selection score over seeds)"
  for f in "$out/$task".*.s0.log; do
    name=$(basename "$f" .s0.log)
    name=${name#"$task".}
    grep -ho "stage 1 best epoch [0-9]* val [0-9.]*" "$out/$task.$name".s*.log |
      awk -v n="$name" '{s += $NF; k++} END {if (k) printf "  %-14s %.4f (%d seeds)\n", n, s / k, k}'
  done | sort -k2 -r
done
