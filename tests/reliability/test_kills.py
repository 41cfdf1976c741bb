"""kill -9 a training process at every step of the checkpoint protocol (docs in
``swat.training.checkpoint``): resuming must work, end bit-identical to an uninterrupted run,
and leave no temporary file or directory behind.

The process kills itself at a named step (``SWAT_CRASH_AT=POINT@NAME``, ``crash_point``); it is
a fork of the test process, so each kill costs a few training steps, not an interpreter start.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from swat.data import prepare
from swat.data.prepare import prepare_data
from swat.data.shards import TokenShards, read_manifest
from swat.data.tokenizer import load_tokenizer
from swat.training import checkpoint as ckpt
from swat.training import load_config, train
from swat.training.metrics import read_metrics
from swat.training.run_dir import RunDir
from tests.training.conftest import run_config

# steps 6, a checkpoint every 2 keeping the last 2: checkpoints 2, 4, 6 (dropping 2), then final/
SINGLE_KILLS = [
    *(f"{point}@step_00000004" for point in ("model-written", "tokenizer-written", "config-written",
                                             "card-written", "state-written", "new-in-place", "latest-written")),
    "old-checkpoint-trashed@step_00000002",
    *(f"{point}@final" for point in ("model-written", "tokenizer-written", "card-written", "new-in-place")),
]
# A kill after step_4 is in place but before ``latest`` names it: the resumed run starts again at
# step 2 and rewrites step_4 over the existing one, through the swap's rename steps.
SWAP_KILLS = [("new-in-place@step_00000004", "old-moved-aside@step_00000004"),
              ("new-in-place@step_00000004", "new-in-place@step_00000004")]


@pytest.fixture(scope="module")
def config(data_dir):
    return load_config(run_config(data_dir, train={"steps": 6}, eval={"every": 3},
                                  checkpoint={"every": 2, "keep_last": 2}))


@pytest.fixture(scope="module")
def uninterrupted(config, tmp_path_factory):
    return train(config, tmp_path_factory.mktemp("whole") / "run")


def _crash_in_child(crash_at, function, *args):
    """Run ``function(*args)`` in a forked child with ``SWAT_CRASH_AT=crash_at``; it must be killed."""
    def child_main():
        os.environ[ckpt.CRASH_ENV] = crash_at
        function(*args)
        os._exit(0)

    child = multiprocessing.get_context("fork").Process(target=child_main)
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL, f"the child was not killed at {crash_at} (exit {child.exitcode})"


def _killed_run(config, out_dir, crash_at, resume=False):
    _crash_in_child(crash_at, train, config, out_dir, resume)


def _assert_same_run(run_dir, reference):
    ours, theirs = load_file(RunDir(run_dir).final / "model.safetensors"), load_file(
        RunDir(reference).final / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    def history(path):
        return [(r["step"], r.get("loss"), r.get("eval_loss")) for r in read_metrics(path)]

    assert history(run_dir) == history(reference)
    leftovers = [str(p.relative_to(run_dir)) for p in run_dir.rglob(".*") if p.name not in (".lock", ".swat-run")]
    assert leftovers == []
    assert [p.name for p in ckpt.list_checkpoints(RunDir(run_dir).checkpoints)] == ["step_00000004",
                                                                                   "step_00000006"]


@pytest.mark.parametrize("crash_at", SINGLE_KILLS)
def test_a_kill_at_any_step_of_a_checkpoint_write_resumes_exactly(config, uninterrupted, tmp_path, crash_at):
    _killed_run(config, tmp_path / "run", crash_at)
    train(config, tmp_path / "run", resume=True)
    _assert_same_run(tmp_path / "run", uninterrupted)


@pytest.mark.parametrize("first, second", SWAP_KILLS)
def test_a_kill_while_swapping_an_existing_checkpoint_resumes_exactly(config, uninterrupted, tmp_path, first,
                                                                      second):
    _killed_run(config, tmp_path / "run", first)
    _killed_run(config, tmp_path / "run", second, resume=True)
    train(config, tmp_path / "run", resume=True)
    _assert_same_run(tmp_path / "run", uninterrupted)


def test_every_crash_point_is_exercised():
    used = {spec.split("@")[0] for spec in SINGLE_KILLS} | {spec.split("@")[0] for pair in SWAP_KILLS for spec in pair}
    assert used == set(ckpt.CRASH_POINTS)


@pytest.mark.parametrize("crash_at", ["old-moved-aside@final", "new-in-place@final", "during-fill"])
def test_a_killed_directory_swap_never_loses_the_last_good_state(tmp_path, crash_at):
    target = tmp_path / "final"
    ckpt.write_dir_atomically(target, lambda d: (d / "version").write_text("old"))

    def fill(directory):
        (directory / "version").write_text("new")
        if crash_at == "during-fill":
            os.kill(os.getpid(), signal.SIGKILL)

    _crash_in_child(crash_at, ckpt.write_dir_atomically, target, fill)
    assert sorted(p.name for p in tmp_path.iterdir()) != ["final"]  # the kill left something to repair
    ckpt.recover_interrupted_writes(tmp_path, ["final"])
    assert (target / "version").read_text() == ("new" if crash_at.startswith("new-in-place") else "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_a_second_preparation_is_refused_and_a_killed_one_frees_the_directory(tmp_path):
    """Two ``swat data prepare`` into one --out: the second is refused while the first runs (it
    would mix their files); the first killed (-9) mid-way leaves a directory the next run prepares."""
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(4):
        (texts / f"doc{i}.txt").write_text(f"document {i}: the cat sat on the mat. " * 20)
    out = tmp_path / "out"

    def run(**options):
        return prepare_data([texts], out, progress=False, num_proc=1, heldout_fraction=0.3, **options)

    context = multiprocessing.get_context("fork")
    shards_written = context.Event()

    def stalled_preparation():
        write_splits = prepare._write_splits

        def stall(*args, **kwargs):  # the shards are written, the manifest not yet
            splits = write_splits(*args, **kwargs)
            shards_written.set()
            time.sleep(600)
            return splits

        prepare._write_splits = stall
        run(vocab_size=300)

    child = context.Process(target=stalled_preparation)
    child.start()
    try:
        assert shards_written.wait(60)
        with pytest.raises(FileExistsError, match=rf"being prepared by another process \(pid {child.pid}\): wait"):
            run(vocab_size=280)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(60)
    run(vocab_size=280)
    assert TokenShards(out, "train").vocab_size == read_manifest(out)["vocab_size"] == len(load_tokenizer(out / "tokenizer"))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock", ".swat-data"]
