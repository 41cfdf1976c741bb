#!/usr/bin/env bash
# The GPU check of the triton backend: its tests on the GPU (compiled kernels, no interpreter), then
# benchmarks/bench_attention_gpu.py. Everything lands under OUT_DIR:
#   environment.txt   GPU, driver, Python package versions
#   tests.log         pytest output of tests/ops/test_triton.py (the same tests the CPU runs
#                     under Triton's interpreter; here on CUDA tensors)
#   bench.md          the benchmark table(s); bench.log its stderr
#   summary.txt       one line per step with its exit status
# It installs nothing: the sources run from src/ (PYTHONPATH), on the machine's torch, triton,
# transformers and pytest. Knobs (environment):
#   PYTHON=python3            the interpreter
#   BENCH_ARGS="..."          arguments of the benchmark (default: the full table plus the model step)
#   QUICK=1                   a short benchmark (8k and 32k, 3 repeats, no model step)
#   TEST_TIMEOUT, BENCH_TIMEOUT   seconds per step (default 600 and 1200)
# Usage: scripts/gpu_check.sh OUT_DIR
set -u
out_dir=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # the point is the compiled kernels
summary="$out_dir/summary.txt"
: > "$summary"

step() {  # step NAME COMMAND...: run, record the exit status
    local name=$1
    shift
    "$@"
    local status=$?
    echo "$name: exit $status" | tee -a "$summary"
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

step environment environment > "$out_dir/environment.txt" 2>&1
cat "$out_dir/environment.txt"

step tests timeout "${TEST_TIMEOUT:-600}" "$python" -m pytest -q -p no:cacheprovider -o addopts="" \
    tests/ops/test_triton.py -rfE > "$out_dir/tests.log" 2>&1
tail -n 25 "$out_dir/tests.log"

if [ "${QUICK:-0}" = 1 ]; then
    default_args="--lengths 8192,32768 --repeats 3 --warmup 1"
else
    default_args="--lengths 8192,32768,131072 --model"
fi
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
step benchmark timeout "${BENCH_TIMEOUT:-1200}" "$python" benchmarks/bench_attention_gpu.py ${BENCH_ARGS:-$default_args} \
    > "$out_dir/bench.md" 2> "$out_dir/bench.log"
cat "$out_dir/bench.md"
tail -n 20 "$out_dir/bench.log"
cat "$summary"
! grep -qv ": exit 0$" "$summary"
