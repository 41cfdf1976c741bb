"""The benchmark scripts run end to end and print their tables (at sizes that take seconds; the
numbers themselves are not checked: speed is measured by the scripts, not asserted in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_script(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=600, check=False, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("dtypes", ["fp32", "fp32,bf16"])
def test_bench_model_prints_tokens_per_second_and_ratios(dtypes):
    out = run_script("bench_model.py", "--lengths", "64", "--steps", "1", "--threads", "1", "--dtypes", dtypes)
    assert "model training benchmark on" in out and "| length | dtype | swat tokens/s |" in out
    assert all(f"| 64 | {dtype} |" in out for dtype in dtypes.split(",")) and "SWAT / llama" in out


def test_bench_model_skips_what_would_not_fit():
    out = run_script("bench_model.py", "--lengths", "64", "--steps", "1", "--dtypes", "fp32", "--models", "swat,llama",
                     "--max-gib", "0.5")
    assert out.count("skipped, estimated") == 2


def test_bench_decode_compares_dtypes_and_batches():
    out = run_script("bench_decode.py", "--positions", "64", "--steps", "1", "--warmup", "0", "--threads", "1",
                     "--models", "swat,llama", "--dtypes", "fp32,bf16", "--batches", "1,2")
    assert "| swat | bf16 | 2 | 64 |" in out and "bf16 / fp32 latency" in out
    assert "swat fp32 at 64, tokens/s by batch: batch 1:" in out


def test_bench_attention_reports_the_fused_kernel_and_the_roofs():
    out = run_script("bench_attention.py", "--lengths", "256", "--dtypes", "fp32", "--repeats", "1",
                     "--peers", "swat,fused,sdpa_causal", "--no-quiet", "--window", "64")
    assert "fused" in out and "roof" in out
