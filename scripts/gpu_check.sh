#!/usr/bin/env bash
# The GPU check of the triton backend: its tests on the GPU (compiled kernels, no interpreter), then
# benchmarks/bench_attention_gpu.py. Everything lands under OUT_DIR:
#   environment.txt   GPU, driver, Python package versions
#   tests.log         pytest output of tests/ops/test_triton.py (the tests the CPU runs under
#                     Triton's interpreter, here on CUDA tensors), run in TEST_SHARDS processes
#                     so the kernels compile in parallel; tests.shard*.log per process
#   bench.md          the benchmark's rows as they are measured, then its table(s); bench.log stderr
#   summary.txt       one line per step with its exit status
# It installs nothing: the sources run from src/ (PYTHONPATH) on the machine's torch, triton,
# transformers, pytest and hypothesis.
# Usage: scripts/gpu_check.sh OUT_DIR [all|tests|bench]     (default all)
# Knobs (environment):
#   PYTHON=python             the interpreter
#   TEST_SHARDS=8             pytest processes
#   BENCH_ARGS="..."          the benchmark's arguments (default: 8k, 32k, 128k; head_dim 64, 128;
#                             5 repeats; the model step); QUICK=1: 8k and 32k, 3 repeats, no model
#   TEST_TIMEOUT=420, BENCH_TIMEOUT=540   seconds per step (each fits one 10-minute device call)
set -u
out_dir=${1:?usage: scripts/gpu_check.sh OUT_DIR [all|tests|bench]}
what=${2:-all}
case "$what" in all|tests|bench) ;; *) echo "unknown step '$what': use all, tests or bench" >&2; exit 2 ;; esac
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # the point is the compiled kernels
summary="$out_dir/summary.txt"
touch "$summary"

record() {  # record NAME STATUS
    echo "$1: exit $2" | tee -a "$summary"
}

environment() {
    nvidia-smi || true
    "$python" - <<'PY'
import importlib
import sys

print("python", sys.version.split()[0])
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
    local shards=${TEST_SHARDS:-8} ids="$out_dir/tests.ids" status=0 pids=() i
    "$python" -m pytest -o addopts="" -q -p no:cacheprovider --collect-only tests/ops/test_triton.py 2>&1 \
        | grep "::" > "$ids"
    echo "$(wc -l < "$ids") tests in $shards processes"
    if [ ! -s "$ids" ]; then
        "$python" -m pytest -o addopts="" -q -p no:cacheprovider --collect-only tests/ops/test_triton.py
        return 1
    fi
    for ((i = 0; i < shards; i++)); do
        mapfile -t selected < <(awk -v n="$shards" -v i="$i" 'NR % n == i' "$ids")
        [ ${#selected[@]} -eq 0 ] && continue
        timeout "${TEST_TIMEOUT:-420}" "$python" -m pytest -o addopts="" -q -p no:cacheprovider -rfE "${selected[@]}" \
            > "$out_dir/tests.shard$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || status=1
    done
    cat "$out_dir"/tests.shard*.log
    return $status
}

environment > "$out_dir/environment.txt" 2>&1
record environment $?
cat "$out_dir/environment.txt"

if [ "$what" != bench ]; then
    run_tests > "$out_dir/tests.log" 2>&1
    record tests $?
    grep -E "passed|failed|error" "$out_dir/tests.log" | tail -n 20
fi

if [ "$what" != tests ]; then
    if [ "${QUICK:-0}" = 1 ]; then
        default_args="--lengths 8192,32768 --repeats 3 --warmup 1"
    else
        default_args="--lengths 8192,32768,131072 --repeats 5 --warmup 1 --model"
    fi
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
    timeout "${BENCH_TIMEOUT:-540}" "$python" benchmarks/bench_attention_gpu.py ${BENCH_ARGS:-$default_args} \
        > "$out_dir/bench.md" 2> "$out_dir/bench.log"
    record benchmark $?
    cat "$out_dir/bench.md"
    tail -n 20 "$out_dir/bench.log"
fi
cat "$summary"
! grep -qv ": exit 0$" "$summary"
