#!/usr/bin/env bash
# The evidence behind SWATConfig's sigmoid_bias and alibi_retain_scale defaults (docs/results/defaults/README.md):
# `swat reproduce` runs of the sigmoid configs over seeds, with b = 0 and b = -log(w), at the tiny
# preset (4 heads: balanced slopes up to 1/16) and with 8 heads (slopes up to 1/4, the regime where a
# retaining slope times the window is large). Two queues run side by side, one thread each.
# Usage: bash scripts/ablate_defaults.sh [OUT]   (about 75 min on two cores), then
#        .venv/bin/python scripts/summarize_seeds.py OUT
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/defaults}
steps=${STEPS:-300}
log_w=$(.venv/bin/python -c "import math; print(-math.log(64))")
run() {  # run NAME HEADS SEED CONFIGS [--set ...]
  local name=$1 heads=$2 seed=$3 configs=$4; shift 4
  OMP_NUM_THREADS=1 .venv/bin/swat reproduce --steps "$steps" --threads 1 --passkey-trials 2 \
    --configs "$configs" --set train.seed="$seed" --set model.num_attention_heads="$heads" \
    --out "$out/h$heads-$name-seed$seed" "$@" > "$out/h$heads-$name-seed$seed.log" 2>&1
}
seeds() {  # seeds HEADS SEED [SEED ...]: b = 0 and b = -log(w), balanced and one-sided, retain 1, 0.5, 0.25
  local heads=$1; shift
  for seed in "$@"; do
    run b0 "$heads" "$seed" swat,sigmoid-swa-alibi --set model.sigmoid_bias=0
    run blogw "$heads" "$seed" swat,sigmoid-swa-alibi,swat-retain-0.5,swat-retain-0.25 --set model.sigmoid_bias="$log_w"
  done
}
mkdir -p "$out"
seeds 4 0 1 &
{ seeds 4 2; seeds 8 0; } &
{ for seed in 0 1 2; do run retain 4 "$seed" swat-retain-0.125,swat-retain-0 --set model.sigmoid_bias="$log_w"; done
  run retain 8 0 swat-retain-0.125,swat-retain-0.0625,swat-retain-0 --set model.sigmoid_bias="$log_w"; } &
wait
