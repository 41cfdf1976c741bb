"""The benchmark scripts run end to end at tiny sizes (one repeat, seconds in all) and print tables
whose every number is finite and positive, one row per case and one column per peer. Speed itself
is measured by the scripts, never asserted here.

The scripts run in this process (their ``main(argv)``), except what they run in fresh processes
themselves (peak memory, decode workers), which get this checkout's ``src`` first on the path."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def script(monkeypatch, capsys):
    """``script(name, *argv)``: runs ``benchmarks/name``'s ``main(argv)`` on one thread and returns
    what it printed."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("SWAT_BENCH_SIZE", "tiny")
    monkeypatch.delitem(sys.modules, "peers", raising=False)
    threads = torch.get_num_threads()

    def run(name: str, *argv: str) -> str:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            assert module.main(list(argv)) in (None, 0)
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    return run


def rows(out: str, first: str) -> list[list[str]]:
    """The cells of the table rows of ``out`` whose first cell is ``first``."""
    lines = [line.strip() for line in out.splitlines() if line.startswith(f"| {first} |")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def number(cell: str) -> float:
    """The leading number of a cell such as ``1,234``, ``0.42 (1.30x)`` or ``512 (2.05)``."""
    match = re.match(r"[0-9][0-9,]*(\.[0-9]+)?(e[-+]?[0-9]+)?", cell)
    assert match, f"no number in cell {cell!r}"
    return float(match.group(0).replace(",", ""))


def assert_positive(cells: list[str]) -> None:
    values = [number(cell) for cell in cells]
    assert all(math.isfinite(v) and v > 0 for v in values), cells


def test_bench_model_prints_tokens_per_second_memory_and_ratios(script):
    out = script("bench_model.py", "--lengths", "64", "--steps", "1", "--threads", "1", "--dtypes", "fp32,bf16",
                 "--models", "swat,llama", "--no-memory")
    assert "model training benchmark on" in out and "1 threads" in out
    table = rows(out, "64")
    assert [row[1] for row in table] == ["fp32", "bf16"]  # one row per dtype
    for row in table:
        assert len(row) == 2 + 2 + 1  # length, dtype, a tokens/s per model, SWAT / llama
        assert_positive(row[2:])


def test_bench_model_measures_peak_memory_in_a_fresh_process(script):
    out = script("bench_model.py", "--lengths", "32", "--steps", "1", "--threads", "1", "--dtypes", "fp32",
                 "--models", "swat")
    (row,) = rows(out, "32")
    tokens, memory = re.fullmatch(r"([0-9,.]+) \(([0-9.]+)\)", row[2]).groups()
    assert_positive([tokens, memory])
    assert 0.1 < float(memory) < 8, "peak RSS of a tiny model's step (torch included), in GiB"


def test_bench_model_skips_what_would_not_fit(script):
    out = script("bench_model.py", "--lengths", "64", "--steps", "1", "--dtypes", "fp32", "--models", "swat,llama",
                 "--max-gib", "0.5")
    assert out.count("skipped, estimated") == 2 and rows(out, "64")[0][2:4] == ["skipped", "skipped"]


def test_bench_decode_prints_latency_per_model_and_dtype(script):
    out = script("bench_decode.py", "--positions", "64", "--steps", "1", "--warmup", "0", "--threads", "1",
                 "--models", "swat,llama", "--dtypes", "fp32,bf16", "--batches", "1", "--no-memory")
    table = rows(out, "swat") + rows(out, "llama")
    assert [row[:4] for row in table] == [[model, dtype, "1", "64"] for model in ("swat", "llama")
                                          for dtype in ("fp32", "bf16")]
    for row in table:
        assert_positive(row[4:7])  # ms/step, tokens/s, x SWAT
        assert row[7:] == ["-", "-"]  # no memory columns without worker processes
    assert "bf16 / fp32 latency" in out and "llama / SWAT latency" in out


def test_bench_attention_prints_a_table_per_thread_count(script):
    out = script("bench_attention.py", "--lengths", "128", "--dtypes", "fp32", "--repeats", "1", "--threads", "2,1",
                 "--peers", "swat,fused,sdpa_causal", "--no-quiet", "--window", "32", "--roof-size", "128")
    assert "## 2 threads" in out and "## 1 threads" in out
    table = rows(out, "128")
    assert [(row[1], row[2]) for row in table] == [("fp32", "fwd"), ("fp32", "fwd+bwd")] * 2  # per thread count
    for row in table:
        assert len(row) == 3 + 3  # one column per peer
        assert_positive(row[3:])
    assert out.count("of the fp32 roof") == 2 * 2 * 2  # kernels x passes x thread counts
    assert len(re.findall(r"auto at [12] threads, fp32 128 fwd(\+bwd)?: fastest", out)) == 4
