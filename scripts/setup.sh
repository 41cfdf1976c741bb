#!/usr/bin/env bash
# Create .venv (if missing) and install swat with its test, evaluation and serving extras, on
# torch 2.13.0 (the release this project is tested with). Re-running it is harmless.
#
# Which build of torch 2.13.0: whatever pip resolves `torch==2.13.0` to from the indexes it is
# configured with. From PyPI on Linux x86-64 that is the CUDA build (several GB of CUDA libraries:
# right for a machine with an NVIDIA GPU); a machine without a GPU wants the CPU-only build, from
# PyTorch's own CPU wheel index (the --index-url that pytorch.org's install selector gives for
# Linux, Pip, CPU):
#     SWAT_TORCH_INDEX_URL=<that index> bash scripts/setup.sh
# The script prints the build it installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "${SWAT_TORCH_INDEX_URL:-}" ]; then
  echo "torch $TORCH_VERSION from $SWAT_TORCH_INDEX_URL"
  .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION" --index-url "$SWAT_TORCH_INDEX_URL"
else
  .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION"
fi
.venv/bin/python -m pip install --quiet -e ".[dev,eval,serve]"
.venv/bin/python -c "
import torch
build = f'CUDA {torch.version.cuda}' if torch.version.cuda else 'ROCm ' + torch.version.hip if torch.version.hip else 'CPU-only'
print(f'torch {torch.__version__}: the {build} build')"
# the fused CPU attention kernel, compiled now rather than on first use (where no compiler is
# present swat says so in one line and runs its pure-PyTorch kernel instead)
.venv/bin/python -c "from swat.ops import cpu_fused; cpu_fused.available()"
echo "swat installed in $(pwd)/.venv (source .venv/bin/activate puts swat on your PATH)"
