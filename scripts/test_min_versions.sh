#!/usr/bin/env bash
# The declared lower ends of pyproject.toml's ranges, tested: a second environment (.venv-min) gets
# every direct dependency at the lowest version its range allows (uv's lowest-direct resolution:
# torch 2.11, transformers 5.17, ...), then a smoke subset of the tests runs there.
# Run after scripts/setup.sh, which provides uv's installer. Takes 3-5 minutes (torch 2.11 is the
# CUDA build, about 4.5 GB once installed: the package index has no CPU build of it).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet "uv>=0.5"
UV=.venv/bin/uv
"$UV" venv --quiet --clear --python "${PYTHON:-python3}" .venv-min
"$UV" pip install --quiet --python .venv-min/bin/python --resolution lowest-direct -e ".[dev,eval]"
"$UV" pip list --python .venv-min/bin/python 2>/dev/null \
  | grep -iE '^(torch|transformers|safetensors|tokenizers|datasets|numpy|tqdm|matplotlib|omegaconf|lm-eval|triton) '
SMOKE=(
  tests/ops
  tests/layers
  tests/models
  tests/inference/test_generate.py
  tests/training/test_trainer.py
  tests/data/test_prepare.py
  tests/evaluation/test_harness.py
  tests/utils
)
.venv-min/bin/python -m pytest -p no:cacheprovider "${SMOKE[@]}"
