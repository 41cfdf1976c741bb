"""What a rerun, a second process or an interrupted one must never destroy: a finished run, a
foreign directory, the last good checkpoint, the data a run was trained on."""

from __future__ import annotations

import shutil

import pytest

from swat.data.prepare import prepare_data
from swat.data.shards import read_manifest, write_split
from swat.training import checkpoint as ckpt
from swat.training import load_config, train
from swat.training.metrics import read_metrics
from swat.training.run_dir import RunDir
from swat.training.trainer import Trainer
from tests.training.conftest import run_config


def _config(data_dir, **train_section):
    return load_config(run_config(data_dir, train={"steps": 2, **train_section}, eval={"every": 0},
                                  checkpoint={"every": 2}))


def _snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
            and p.name != ".lock"}


# ----------------------------------------------------------------------------- swat train --out
def test_a_finished_run_is_never_replaced_unless_told(data_dir, tmp_path):
    run = RunDir(tmp_path / "run")
    train(_config(data_dir), run.root)
    shutil.rmtree(run.checkpoints)  # the audit's case: only final/, config.yaml and metrics.jsonl left
    before = _snapshot(run.root)
    with pytest.raises(FileExistsError, match="holds a finished run: pass --resume to continue it, --overwrite"):
        train(_config(data_dir, seed=1), run.root)
    with pytest.raises(FileExistsError, match="no checkpoint to resume from: pass --overwrite"):
        train(_config(data_dir, seed=1), run.root, resume=True)
    assert _snapshot(run.root) == before
    train(_config(data_dir, seed=1), run.root, overwrite=True)
    assert _snapshot(run.root)["final/model.safetensors"] != before["final/model.safetensors"]
    assert [r["step"] for r in read_metrics(run.root) if "loss" in r] == [1, 2]  # replaced, not appended


def test_a_foreign_directory_is_refused_and_overwrite_keeps_its_files(data_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match="not a run directory.*choose an empty or new --out, or pass --overwrite"):
        train(_config(data_dir), out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    train(_config(data_dir), out, overwrite=True)
    assert (out / "notes.txt").read_text() == "my notes" and RunDir(out).is_finished()


def test_two_runs_on_one_directory_the_second_is_refused(data_dir, tmp_path):
    first = Trainer(_config(data_dir), tmp_path / "run")  # holds the run's lock until it ends
    with pytest.raises(FileExistsError, match="in use by another training process .*choose another --out"):
        Trainer(_config(data_dir, seed=1), tmp_path / "run", overwrite=True)
    first.fit()
    assert RunDir(tmp_path / "run").is_finished()
    train(_config(data_dir), tmp_path / "run", resume=True)  # the lock is free again


def test_a_swap_cut_between_its_renames_is_repaired_at_start(data_dir, tmp_path):
    run = RunDir(tmp_path / "run")
    train(_config(data_dir), run.root)
    final_before = _snapshot(run.final)
    run.final.rename(run.root / ".final.old")  # killed after moving final/ aside, before the new one
    latest = ckpt.latest_checkpoint(run.checkpoints)
    latest.rename(run.checkpoints / f".{latest.name}.old")
    (run.checkpoints / ".step_00000004.x1y2.tmp").mkdir()  # a dead writer's half checkpoint
    (run.checkpoints / ".step_00000004.x1y2.tmp" / "model.safetensors").write_bytes(b"half")
    (run.root / ".metrics.jsonl.abc.tmp").write_text("{")
    train(_config(data_dir), run.root, resume=True)  # recovers, then: already at train.steps
    assert _snapshot(run.final) == final_before
    assert [p.name for p in run.root.rglob(".*") if p.name != ".lock"] == []
    assert ckpt.latest_checkpoint(run.checkpoints).name == "step_00000002"


def test_latest_may_only_name_a_checkpoint_of_the_run(data_dir, tmp_path):
    run = RunDir(tmp_path / "run")
    train(_config(data_dir), run.root)
    (run.checkpoints / ckpt.LATEST).write_text("../../elsewhere\n")
    with pytest.raises(ValueError, match=r"not a checkpoint of this run: write one of \['step_00000002'\]"):
        train(_config(data_dir, steps=4), run.root, resume=True)


def test_resume_refuses_data_prepared_again_unless_accepted(data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    run = tmp_path / "run"
    Trainer(_config(data, steps=4), run).fit(until=2)
    manifest = read_manifest(data)  # the training split prepared again, from other tokens
    write_split(data, "train", [list(range(5, 200))] * 30, vocab_size=manifest["vocab_size"],
                eos_token_id=manifest["eos_token_id"], tokenizer="tokenizer", shard_tokens=1000)
    with pytest.raises(ValueError, match="changed since step_00000002.*pass --accept-data-change"):
        Trainer(_config(data, steps=4), run, resume=True)
    train(_config(data, steps=4), run, resume=True, accept_data_change=True)
    assert RunDir(run).is_finished()


def test_resume_says_when_it_is_not_bit_exact_or_has_nothing_to_do(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(_config(data_dir, steps=4), run).fit(until=2)
    train(_config(data_dir, steps=4, micro_batch_size=4), run, resume=True)
    out = capsys.readouterr().out
    assert "train.micro_batch_size: 2 -> 4" in out and "not bit-identical" in out
    with pytest.raises(ValueError, match=r"at step 4, beyond train.steps=2: set train.steps above 4"):
        train(_config(data_dir, steps=2), run, resume=True)
    capsys.readouterr()
    train(_config(data_dir, steps=4, micro_batch_size=4), run, resume=True)
    assert "nothing to do (raise train.steps to train further)" in capsys.readouterr().out


def test_a_torn_last_metrics_line_does_not_block_resume(data_dir, tmp_path):
    run = RunDir(tmp_path / "run")
    Trainer(_config(data_dir, steps=4), run.root).fit(until=2)
    with run.metrics.open("a") as f:
        f.write('{"step": 3, "lo')  # killed while appending
    train(_config(data_dir, steps=4), run.root, resume=True)
    assert [r["step"] for r in read_metrics(run.root) if "loss" in r] == [1, 2, 3, 4]


def test_resuming_a_run_killed_before_its_first_checkpoint_starts_over_cleanly(data_dir, tmp_path):
    run = RunDir(tmp_path / "run")
    Trainer(_config(data_dir), run.root).fit(until=1)
    shutil.rmtree(run.checkpoints)  # as if killed before the first checkpoint: config and metrics only
    with pytest.raises(FileExistsError, match="holds a run's files: pass --resume"):
        train(_config(data_dir), run.root)
    train(_config(data_dir), run.root, resume=True)
    assert [r["step"] for r in read_metrics(run.root) if "loss" in r] == [1, 2]


# ----------------------------------------------------------------------------- swat data prepare --out
def _texts(directory):
    directory.mkdir()
    for i in range(6):
        (directory / f"doc{i}.txt").write_text(f"document {i}: the cat sat on the mat. " * 20)
    return directory


def _prepare(texts, out, **options):
    return prepare_data([texts], out, vocab_size=300, progress=False, num_proc=1, heldout_fraction=0.3, **options)


def test_prepare_refuses_a_foreign_directory_and_overwrite_keeps_other_files(tmp_path):
    texts, out = _texts(tmp_path / "texts"), tmp_path / "out"
    (out / "tokenizer").mkdir(parents=True)
    (out / "tokenizer" / "mine.json").write_text("{}")
    (out / "manifest.json").write_text('{"mine": true}')
    (out / "train-00003.bin").write_bytes(b"my shard")
    (out / ".editor.swp.tmp").write_text("hidden")
    (out / "notes.txt").write_text("notes")
    before = _snapshot(out)
    with pytest.raises(FileExistsError, match="holds no prepared data .*choose an empty or new --out, or pass "
                                              "--overwrite"):
        _prepare(texts, out)
    assert _snapshot(out) == before
    _prepare(texts, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "notes" and (out / ".editor.swp.tmp").read_text() == "hidden"
    assert not (out / "train-00003.bin").exists()  # a name a preparation writes: replaced


def test_prepare_reruns_and_resumes_its_own_output_deleting_only_its_files(tmp_path):
    texts, out = _texts(tmp_path / "texts"), tmp_path / "out"
    _prepare(texts, out, shard_tokens=64)
    (out / "notes.txt").write_text("notes")
    (out / ".train-00000.bin.k1.tmp").write_bytes(b"left by a killed preparation")
    (out / "manifest.json").unlink()
    (out / ".swat-preparing").write_text("1\n")  # an interrupted preparation is still ours
    _prepare(texts, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["heldout-00000.bin", "manifest.json", "notes.txt", "tokenizer", "train-00000.bin"]
