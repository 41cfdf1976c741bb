"""What a rerun, a second process or an interrupted one must never destroy: a finished run, a
foreign directory, the last good checkpoint, the data a run was trained on."""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from safetensors import SafetensorError
from transformers import modeling_utils

from swat.cli import main
from swat.data.prepare import prepare_data
from swat.data.shards import TokenShards, read_manifest, write_split
from swat.training import checkpoint as ckpt
from swat.training import load_config, train
from swat.training.metrics import read_metrics
from swat.training.run_dir import RunDir
from swat.training.trainer import Trainer
from tests.conftest import make_text, make_tokenizer
from tests.evaluation.conftest import save_model
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
    assert [p.name for p in run.root.rglob(".*") if p.name not in (".lock", ".swat-run")] == []
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
    assert names == [".lock", ".swat-data", "heldout-00000.bin", "manifest.json", "notes.txt", "tokenizer",
                     "train-00000.bin"]


# ----------------------------------------------------------------------------- ownership (issue 25)
def _cli(argv, capsys):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


def test_resume_refuses_a_directory_swat_did_not_start(data_dir, tmp_path, capsys, monkeypatch):
    """The audit's case: a user's final/report.txt, config.yaml and metrics.jsonl are never a run."""
    monkeypatch.delenv("SWAT_DEBUG", raising=False)
    out = tmp_path / "p"
    (out / "final").mkdir(parents=True)
    (out / "final" / "report.txt").write_text("x")
    (out / "config.yaml").write_text("my: config\n")
    (out / "metrics.jsonl").write_text('{"step": 7, "mine": true}\n')
    before = _snapshot(out)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run_config(data_dir, train={"steps": 1})))
    code, err = _cli(["train", "--config", tmp_path / "run.yaml", "--out", out, "--resume"], capsys)
    assert code == 2 and re.search(r"is not a run swat started \(no \.swat-run marker; it holds \['config.yaml', "
                                   r"'final', 'metrics.jsonl'\]\).*choose another --out", err), err
    code, err = _cli(["train", "--config", tmp_path / "run.yaml", "--out", out], capsys)
    assert code == 2 and "is not empty and is not a run directory" in err  # not "pass --resume to continue it"
    assert _snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["config.yaml", "final",
                                                                                  "metrics.jsonl"]


@pytest.mark.parametrize("where", ["final", "checkpoint"])
def test_resume_never_replaces_files_swat_did_not_write_inside_a_run(data_dir, tmp_path, where):
    run = RunDir(tmp_path / "run")
    Trainer(_config(data_dir, steps=4), run.root).fit(until=2)
    train(_config(data_dir, steps=2), tmp_path / "other")  # a finished run, to borrow a final/ from
    if where == "final":
        shutil.copytree(tmp_path / "other" / "final", run.final)
    target = run.final if where == "final" else ckpt.latest_checkpoint(run.checkpoints)
    (target / "report.txt").write_text("mine")
    before = _snapshot(run.root)
    with pytest.raises(ValueError, match=rf"holds files swat did not write .*'{target.relative_to(run.root)}/"
                                         r"report.txt'.*move them out of the run directory, then resume"):
        train(_config(data_dir, steps=4), run.root, resume=True)
    assert _snapshot(run.root) == before
    (target / "report.txt").unlink()
    train(_config(data_dir, steps=4), run.root, resume=True)
    assert RunDir(run.root).is_finished()


def test_a_mixed_data_directory_is_refused_and_prepared_again(tmp_path, capsys):
    """The audit's race, replayed: A's manifest and shards beside B's tokenizer."""
    texts, others = _texts(tmp_path / "texts"), tmp_path / "others"
    others.mkdir()
    (others / "other.txt").write_text("a quite different text about dogs and logs. " * 40)
    _prepare(texts, tmp_path / "a")
    _prepare(others, tmp_path / "b")
    shutil.rmtree(tmp_path / "a" / "tokenizer")
    shutil.copytree(tmp_path / "b" / "tokenizer", tmp_path / "a" / "tokenizer")
    for use in (lambda: TokenShards(tmp_path / "a", "train"), lambda: train(_config(tmp_path / "a"), tmp_path / "r")):
        with pytest.raises(ValueError, match="does not match the tokenizer and shards beside it .*prepare the data"):
            use()
    capsys.readouterr()
    _prepare(texts, tmp_path / "a")  # the rerun sees the damage: not "up to date"
    assert "nothing to do" not in capsys.readouterr().out
    TokenShards(tmp_path / "a", "train")


def test_a_shard_replaced_after_the_manifest_is_refused(tmp_path):
    texts = _texts(tmp_path / "texts")
    _prepare(texts, tmp_path / "a", shard_tokens=64)
    shard = tmp_path / "a" / "train-00001.bin"
    shard.write_bytes(shard.read_bytes()[::-1])  # same size, other tokens
    with pytest.raises(ValueError, match="does not match the tokenizer and shards"):
        TokenShards(tmp_path / "a", "train")


def test_prepare_keeps_a_users_hidden_files(tmp_path):
    texts, out = _texts(tmp_path / "texts"), tmp_path / "out"
    _prepare(texts, out)
    (out / ".tokenizer.bak").mkdir()
    (out / ".tokenizer.bak" / "tokenizer.json").write_text("my backup")
    (out / ".manifest.json.orig").write_text("mine")
    _prepare(texts, out, shard_tokens=64)  # prepared again, other settings
    assert (out / ".tokenizer.bak" / "tokenizer.json").read_text() == "my backup"
    assert (out / ".manifest.json.orig").read_text() == "mine"


def test_evaluation_out_replaces_only_swats_own_results(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SWAT_DEBUG", raising=False)
    text = make_text(400)
    model = save_model(tmp_path / "model", make_tokenizer(text))
    (tmp_path / "text.txt").write_text(text)
    out = tmp_path / "results"
    argv = ["eval", "length", "--models", model, "--text", tmp_path / "text.txt", "--lengths", "16,32",
            "--max-tokens", "64", "--out", out]
    assert _cli(argv, capsys)[0] == 0
    first = (out / "length.json").read_bytes()
    assert _cli([*argv[:-4], "--max-tokens", "96", "--out", out], capsys)[0] == 0  # its own results: replaced
    assert (out / "length.json").read_bytes() != first
    (out / "length.md").write_text("my notes on the last run\n")  # edited by the user: theirs now
    code, err = _cli(argv, capsys)
    assert code == 2 and re.search(r"holds length.md, which swat did not write .*pass --overwrite", err), err
    assert (out / "length.md").read_text() == "my notes on the last run\n"
    assert _cli([*argv, "--overwrite"], capsys)[0] == 0
    assert (out / "length.md").read_text().startswith("## Perplexity against context length")
    (out / "summary.md").write_text("my summary\n")
    code, err = _cli(["reproduce", "--out", out, "--steps", "1", "--configs", "swat"], capsys)  # refused up front
    assert code == 2 and "holds summary.md, which swat did not write" in err and not (out / "runs").exists()
    assert (out / "summary.md").read_text() == "my summary\n"


# ----------------------------------------------------------------------------- a full disk, permissions
class _FullDisk(io.FileIO):  # a device with no space left
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full_disk_at_trainer_state(monkeypatch):
    def full_disk_open(path, mode="r", *args, **kwargs):
        return _FullDisk(path, mode) if Path(path).name == ckpt.STATE_FILE else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(ckpt, "open", full_disk_open, raising=False)


def _full_disk_at_weights(monkeypatch):
    def save_file(*args, **kwargs):  # what safetensors raises on ENOSPC
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(modeling_utils, "safe_save_file", save_file)


@pytest.mark.parametrize("fill_the_disk", [_full_disk_at_trainer_state, _full_disk_at_weights])
def test_a_full_disk_is_named_and_the_last_checkpoint_survives(data_dir, tmp_path, monkeypatch, fill_the_disk):
    run = RunDir(tmp_path / "run")
    Trainer(_config(data_dir, steps=4), run.root).fit(until=2)
    fill_the_disk(monkeypatch)
    with pytest.raises(ValueError, match=r"^the disk is full: free space and run again with --resume$"):
        train(_config(data_dir, steps=4), run.root, resume=True)
    assert ckpt.latest_checkpoint(run.checkpoints).name == "step_00000002"
    assert [p.name for p in run.checkpoints.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    train(_config(data_dir, steps=4), run.root, resume=True)
    assert RunDir(run.root).is_finished()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_are_written_with_the_users_umask(data_dir, tmp_path, umask, capsys):
    previous = os.umask(umask)
    try:
        train(_config(data_dir), tmp_path / "run")
        _prepare(_texts(tmp_path / "texts"), tmp_path / "data")
        text = make_text(300)
        (tmp_path / "text.txt").write_text(text)
        assert main(["eval", "length", "--models", str(save_model(tmp_path / "model", make_tokenizer(text))),
                     "--text", str(tmp_path / "text.txt"), "--lengths", "16", "--max-tokens", "32",
                     "--out", str(tmp_path / "results")]) == 0
    finally:
        os.umask(previous)
    written = [p for root in ("run", "data", "results") for p in [tmp_path / root, *(tmp_path / root).rglob("*")]]
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in written if not p.is_symlink()}
    expected = {name: (0o777 if (tmp_path / name).is_dir() else 0o666) & ~umask for name in modes}
    assert modes == expected
    assert {"run/final/model.safetensors", "run/checkpoints/latest", "run/config.yaml", "data/manifest.json",
            "data/train-00000.bin", "data/tokenizer", "results/length.md"} <= set(modes)
