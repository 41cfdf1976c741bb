#!/usr/bin/env bash
# Create .venv (if missing) and install swat with its test and evaluation extras.
# torch is pinned to the CPU build that this project is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[dev,eval]"
# the fused CPU attention kernel, compiled now rather than on first use (where no compiler is
# present swat says so in one line and runs its pure-PyTorch kernel instead)
.venv/bin/python -c "from swat.ops import cpu_fused; cpu_fused.available()"
echo "swat installed in $(pwd)/.venv"
