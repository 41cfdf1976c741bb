#!/usr/bin/env bash
# The GPU check of the triton backend, made to fit one 10-minute device call (about 8 minutes by
# the estimate in docs/gpu-kernels.md): its tests on the GPU (compiled kernels, no interpreter),
# then benchmarks/bench_attention_gpu.py. Five files land in OUT_DIR (no folders):
#   environment.txt   GPU, driver, clocks (nvidia-smi -q -d CLOCK), Python package versions
#   tests.log         pytest output of tests/ops/test_triton.py (the tests the CPU runs under
#                     Triton's interpreter, here on CUDA tensors), run in TEST_SHARDS processes so
#                     the kernels compile in parallel (the shards' logs, one after another)
#   bench.md          the benchmark's rows, each written as it is measured: forward and
#                     forward+backward against SDPA causal and compiled FlexAttention (softmax
#                     sliding window, sigmoid), a decoding step, the per-kernel tile sweep
#   bench.log         the benchmark's stderr
#   summary.txt       one line per step with its exit status and seconds
# It installs nothing: the sources run from src/ (PYTHONPATH) on the machine's torch, triton,
# transformers, pytest and hypothesis.
# Usage: scripts/gpu_check.sh OUT_DIR [all|tests|bench]     (default all)
# Knobs (environment):
#   PYTHON=python3            the interpreter
#   TEST_SHARDS=16            pytest processes (one per core)
#   SWAT_RANDOM_EXAMPLES=6    examples of the random-shape test (each may compile new variants)
#   TOTAL_SECONDS=470         the whole run's budget: the tests get TEST_TIMEOUT (200) of it, the
#                             benchmark what is left (its rows so far are kept when it runs out)
#   BENCH_ARGS="..."          the benchmark's arguments (default: 8k and 32k, head_dim 64 and 128,
#                             G = 1 and 4, 16 heads, window 512, 5 repeats, errors on 8k, --decode --sweep)
set -u
start=$SECONDS
out_dir=${1:?usage: scripts/gpu_check.sh OUT_DIR [all|tests|bench]}
what=${2:-all}
case "$what" in all|tests|bench) ;; *) echo "unknown step '$what': use all, tests or bench" >&2; exit 2 ;; esac
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SWAT_RANDOM_EXAMPLES=${SWAT_RANDOM_EXAMPLES:-6}
export TRITON_DEFAULT_FP_FUSION=${TRITON_DEFAULT_FP_FUSION:-1}  # Triton >= 3.9 warns without it
unset TRITON_INTERPRET  # the point is the compiled kernels
summary="$out_dir/summary.txt"
: > "$summary"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

record() {  # record NAME STATUS STEP_START
    echo "$1: exit $2, $((SECONDS - $3)) s" | tee -a "$summary"
}

environment() {
    nvidia-smi || true
    nvidia-smi -q -d CLOCK || true
    "$python" - <<'PY'
import importlib
import os
import sys

print("python", sys.version.split()[0], "cpus", os.cpu_count())
for name in ("torch", "triton", "transformers", "pytest", "hypothesis", "flash_attn"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as error:  # report and go on: flash_attn is optional
        print(name, "not importable:", type(error).__name__, error)
import torch

print("cuda available:", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
}

run_tests() {
    local shards=${TEST_SHARDS:-16} ids="$scratch/tests.ids" status=0 pids=() i
    "$python" -m pytest -o addopts="" -q -p no:cacheprovider --collect-only tests/ops/test_triton.py 2>&1 \
        | grep "::" > "$ids"
    echo "$(wc -l < "$ids") tests in $shards processes, $SWAT_RANDOM_EXAMPLES random-shape examples"
    if [ ! -s "$ids" ]; then
        "$python" -m pytest -o addopts="" -q -p no:cacheprovider --collect-only tests/ops/test_triton.py
        return 1
    fi
    for ((i = 0; i < shards; i++)); do
        mapfile -t selected < <(awk -v n="$shards" -v i="$i" 'NR % n == i' "$ids")
        [ ${#selected[@]} -eq 0 ] && continue
        timeout "${TEST_TIMEOUT:-200}" "$python" -m pytest -o addopts="" -q -p no:cacheprovider -rfE "${selected[@]}" \
            > "$scratch/shard$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || status=1
    done
    for ((i = 0; i < shards; i++)); do
        [ -f "$scratch/shard$i.log" ] && { echo "== shard $i"; cat "$scratch/shard$i.log"; }
    done
    return $status
}

step_start=$SECONDS
environment > "$out_dir/environment.txt" 2>&1
record environment $? "$step_start"
head -n 30 "$out_dir/environment.txt"

if [ "$what" != bench ]; then
    step_start=$SECONDS
    run_tests > "$out_dir/tests.log" 2>&1
    record tests $? "$step_start"
    grep -E "passed|failed|error" "$out_dir/tests.log" | tail -n 20
fi

if [ "$what" != tests ]; then
    step_start=$SECONDS
    left=$(( ${TOTAL_SECONDS:-470} - (SECONDS - start) ))
    [ "$left" -lt 60 ] && left=60
    # --error-len 8192: the error check runs on the timed 8k shape, so FlexAttention compiles no extra shape
    default_args="--lengths 8192,32768 --head-dims 64,128 --groups 1,4 --repeats 5 --warmup 1 --error-len 8192 --decode --sweep"
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
    timeout "$left" "$python" -u benchmarks/bench_attention_gpu.py ${BENCH_ARGS:-$default_args} \
        > "$out_dir/bench.md" 2> "$out_dir/bench.log"
    record "benchmark (limit ${left} s)" $? "$step_start"
    cat "$out_dir/bench.md"
    tail -n 20 "$out_dir/bench.log"
fi
echo "total: $((SECONDS - start)) s" | tee -a "$summary"
! grep -v "^total" "$summary" | grep -qv ": exit 0,"
