"""``torchrun --nproc_per_node=2`` (gloo on CPU) sees the same global batch as one process, so it
gives the same losses. They agree to rounding: the all-reduce sums the two halves of the gradient
in another order than one process's gradient accumulation (float32, ~1e-7 relative per step)."""

import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from swat.training import Trainer, load_config
from swat.training.metrics import read_metrics
from tests.training.conftest import run_config


def _records(run_dir):
    """(step, "train" | "held-out", loss) of every metrics record."""
    return [(r["step"], "train", r["loss"]) if "loss" in r else (r["step"], "held-out", r["eval_loss"])
            for r in read_metrics(run_dir)]


def _torchrun(config_path, out, *overrides, succeeds=True):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "swat.cli.train", "--config", str(config_path), "--out", str(out)]
    if overrides:
        command += ["--set", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert (result.returncode == 0) == succeeds, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def single_process(data_dir, tmp_path_factory):
    """One process, 2 micro-batches of 2 per step (the same global batch of 4 as 2 x 1 x 2)."""
    root = tmp_path_factory.mktemp("dist")
    config = run_config(data_dir, train={"steps": 4}, eval={"every": 2}, checkpoint={"every": 0})
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    torch.set_num_threads(1)
    run_dir = Trainer(load_config(config), root / "one").fit()
    return root, run_dir


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_equal_one(single_process, mode):
    root, one = single_process
    two = root / mode
    _torchrun(root / "config.yaml", two, f"train.fsdp={mode == 'fsdp'}")
    expected, got = _records(one), _records(two)
    print(f"\n{'step':>4} {'':8} {'1 process':>18} {'2 processes ' + mode:>20}")
    for (step, kind, loss), (_, _, loss2) in zip(expected, got, strict=True):
        print(f"{step:>4} {kind:8} {loss:>18.15f} {loss2:>20.15f}")
    assert [r[:2] for r in got] == [r[:2] for r in expected]
    assert [s for s, _, _ in got] == [1, 2, 2, 3, 4, 4]
    assert [loss for _, _, loss in got] == pytest.approx([loss for _, _, loss in expected], rel=1e-5)
    weights, weights2 = load_file(one / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    assert weights.keys() == weights2.keys()
    for name in weights:
        torch.testing.assert_close(weights2[name], weights[name], rtol=1e-5, atol=1e-6)
    assert (two / "checkpoints" / "latest").read_text().strip() == "step_00000004"


def test_a_refused_launch_leaves_nothing_and_the_corrected_one_runs_there(single_process):
    """A 2-process launch refused once the processes have taken ``--out`` (here: no such held-out
    split) leaves nothing there, so the corrected launch needs no --overwrite; it has a
    micro-batch larger than each process's share (the ``tiny`` recipe's 8 and 8 on 2 processes),
    which then is the share: the same run as one process."""
    root, one = single_process
    out = root / "retry"
    refused = _torchrun(root / "config.yaml", out, "data.eval_split=nope", succeeds=False)
    assert "has no split 'nope' for evaluation" in refused.stderr
    assert not out.exists()
    _torchrun(root / "config.yaml", out, "train.micro_batch_size=4")
    assert [loss for *_, loss in _records(out)] == pytest.approx([loss for *_, loss in _records(one)], rel=1e-5)
