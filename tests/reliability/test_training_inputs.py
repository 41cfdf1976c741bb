"""Bad input to ``swat train`` (its YAML config, ``--set``, its run directory) and ``swat data``:
each row is an input, the exit code (CLI) or exception (Python API), and a message that says
what to change, never a traceback."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from swat.cli import main
from swat.data.prepare import prepare_data
from swat.training import checkpoint as ckpt
from swat.training import load_config
from swat.training.metrics import read_metrics
from swat.training.run_dir import RunDir
from swat.training.trainer import Trainer
from tests.training.conftest import run_config

TRAIN = ["train", "--config", "{tmp}/run.yaml", "--out", "{tmp}/out"]
RESUME = ["train", "--config", "{tmp}/run.yaml", "--out", "{tmp}/run", "--resume"]
PREPARE = ["data", "prepare", "--no-progress", "--vocab-size", "300", "--num-proc", "1"]


@dataclass
class Row:
    id: str
    argv: list[str]
    exit: int | tuple[int, ...]
    message: str  # a regular expression the one-line error must match
    setup: Callable[[Path], None] | None = None


def _write(name: str, content: bytes | str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def _damage(name: str, content: bytes) -> Callable[[Path], None]:
    """Overwrite a file of the last checkpoint of the prepared run in ``tmp/run``."""
    def setup(tmp: Path) -> None:
        (ckpt.latest_checkpoint(RunDir(tmp / "run").checkpoints) / name).write_bytes(content)
    return setup


def _truncate(name: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = ckpt.latest_checkpoint(RunDir(tmp / "run").checkpoints) / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return setup


def _texts(*contents: bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / "texts").mkdir()
        for i, content in enumerate(contents):
            (tmp / "texts" / f"doc{i}.txt").write_bytes(content)
    return setup


GOOD_TEXT = b"the cat sat on the mat. " * 40

CLI_ROWS = [
    # swat train: the config file and --set
    Row("malformed-yaml", ["train", "--config", "{tmp}/bad.yaml"], 2, r"not valid YAML .*line 2\): fix the file",
        _write("bad.yaml", "train: {steps: 3\n")),
    Row("yaml-list", ["train", "--config", "{tmp}/list.yaml"], 2, r"holds a list: a training config is a YAML "
        r"mapping of sections", _write("list.yaml", "- 1\n- 2\n")),
    Row("missing-config", ["train", "--config", "{tmp}/nope.yaml"], 2, r"pass a YAML file or one of the presets"),
    Row("unknown-device", [*TRAIN, "--set", "train.device=gpu"], 2, r"train.device must be auto, cpu, cuda or cuda:N"),
    Row("absent-device", [*TRAIN, "--set", "train.device=cuda:99"], 2, r"use train.device=cpu or auto"),
    Row("device-type-without-backend", [*TRAIN, "--set", "train.device=meta"], 2, r"use train.device=cpu or auto"),
    Row("negative-seed", [*TRAIN, "--set", "train.seed=-1"], 2, r"train.seed must be >= 0"),
    Row("zero-batch", [*TRAIN, "--set", "train.batch_size=0"], 2, r"train.batch_size must be >= 1"),
    Row("batch-not-divisible", [*TRAIN, "--set", "train.batch_size=6", "train.micro_batch_size=4"], 2,
        r"must be a multiple of .*change one of them"),
    Row("infinite-lr", [*TRAIN, "--set", "optim.lr=inf"], 2, r"optim.lr must be a finite number"),
    Row("nan-lr", [*TRAIN, "--set", "optim.lr=nan"], 2, r"optim.lr must be a finite number"),
    Row("negative-grad-clip", [*TRAIN, "--set", "optim.grad_clip=-1"], 2, r"optim.grad_clip > 0 or null"),
    Row("misspelt-key", [*TRAIN, "--set", "train.stpes=3"], 2, r"did you mean 'steps'"),
    Row("wrong-type", [*TRAIN, "--set", "train.steps=abc"], 2, r"'train.steps' must be int"),
    Row("override-without-value", [*TRAIN, "--set", "optim.lr"], 2, r"must look like section.key=value"),
    Row("unknown-preset", [*TRAIN, "--set", "model.preset=huge"], 2, r"model.preset must be one of"),
    Row("missing-data", [*TRAIN, "--set", "data.dir={tmp}/nowhere"], 2, r"Create one with `swat data prepare"),
    Row("seq-len-beyond-data", [*TRAIN, "--set", "data.seq_len=100000"], 2, r"or a shorter data.seq_len"),
    Row("model-value-of-wrong-type", [*TRAIN, "--set", "model.sigmoid_bias=nan"], 2,
        r"'model.sigmoid_bias' must be float or null, got 'nan' \(YAML spells them .nan"),
    # swat train: model values SWATConfig refuses, named as the config file's keys
    Row("nan-sigmoid-bias", [*TRAIN, "--set", "model.sigmoid_bias=.nan"], 2,
        r"invalid model section: model.sigmoid_bias must be a finite number"),
    Row("negative-rope-theta", [*TRAIN, "--set", "model.rope_theta=-1.0"], 2,
        r"invalid model section: model.rope_theta must be a finite number > 0, got -1.0"),
    Row("negative-rms-norm-eps", [*TRAIN, "--set", "model.rms_norm_eps=-1.0"], 2,
        r"invalid model section: model.rms_norm_eps must be a finite number > 0"),
    Row("rope-not-a-bool", [*TRAIN, "--set", "model.use_rope=3"], 2, r"'model.use_rope' must be bool, got 3"),
    # swat train: the run directory
    Row("resume-and-overwrite", [*RESUME, "--overwrite"], 2, r"pass only one"),
    Row("out-is-a-file", [*TRAIN[:-1], "{tmp}/run.yaml"], 2, r"is a file, not a run directory: choose another --out"),
    Row("run-exists", RESUME[:-1], 2, r"already holds a run .*pass --resume to continue it, --overwrite"),
    Row("foreign-out", TRAIN, 2, r"not a run directory .*pass --overwrite", _write("out/notes.txt", "mine")),
    Row("truncated-trainer-state", RESUME, 2, r"trainer_state.pt is damaged .*writing its name into .*latest",
        _truncate(ckpt.STATE_FILE)),
    Row("garbage-trainer-state", RESUME, 2, r"trainer_state.pt is damaged .*writing its name into .*latest",
        _damage(ckpt.STATE_FILE, b"\x00garbage" * 10)),
    Row("truncated-weights", RESUME, 2, r"cannot load the model .*writing its name into .*latest",
        _truncate("model.safetensors")),
    Row("latest-outside-the-run", RESUME, 2, r"not a checkpoint of this run: write one of",
        _write("run/checkpoints/latest", "../../elsewhere\n")),
    Row("damaged-metrics-line", RESUME, 2, r"metrics.jsonl line 1 is not a JSON record .*delete or fix that line",
        _write("run/metrics.jsonl", '{"step": 1, "lo\n{"step": 2}\n')),
    Row("steps-below-checkpoint", [*RESUME, "--set", "train.steps=1"], 2, r"set train.steps above 2"),
    # swat data
    Row("binary-text-file", [*PREPARE, "{tmp}/texts", "--out", "{tmp}/d"], 2,
        r"binary, not text .*remove it from the inputs", _texts(GOOD_TEXT, b"\x89PNG\r\n\x1a\n\x00\x00")),
    Row("latin1-text-file", [*PREPARE, "{tmp}/texts", "--out", "{tmp}/d"], 2, r"not UTF-8 text .*convert it",
        _texts(GOOD_TEXT, "caf\xe9".encode("latin-1"))),
    Row("empty-inputs", [*PREPARE, "{tmp}/texts", "--out", "{tmp}/d"], 2, r"hold no text .*give non-empty text",
        _texts(b"", b"", b"")),
    Row("missing-input", [*PREPARE, "{tmp}/nope.txt", "--out", "{tmp}/d"], 2, r"does not exist; give text files"),
    Row("foreign-data-out", [*PREPARE, "{tmp}/texts", "--out", "{tmp}/d"], 2,
        r"holds no prepared data .*pass --overwrite", lambda tmp: (_texts(GOOD_TEXT)(tmp),
                                                                   _write("d/notes.txt", "mine")(tmp))),
    Row("files-and-dataset", [*PREPARE, "{tmp}/texts", "--dataset", "x", "--out", "{tmp}/d"], 2,
        r"give either text files/directories or --dataset"),
    Row("bad-heldout-fraction", [*PREPARE, "{tmp}/texts", "--heldout-fraction", "1.5", "--out", "{tmp}/d"], 2,
        r"pass e.g. --heldout-fraction 0.05", _texts(GOOD_TEXT)),
    Row("tiny-vocab", ["data", "prepare", "--no-progress", "--vocab-size", "0", "{tmp}/texts", "--out", "{tmp}/d"],
        2, r"use e.g. 4096", _texts(GOOD_TEXT)),
    Row("info-of-nothing", ["data", "info", "{tmp}/nowhere"], 2, r"Create one with `swat data prepare"),
]


@pytest.fixture(scope="module")
def stopped_run(data_dir, tmp_path_factory):
    """A run of 4 steps stopped at step 2 (a checkpoint), and its config file."""
    root = tmp_path_factory.mktemp("stopped")
    config = run_config(data_dir, train={"steps": 4}, eval={"every": 0}, checkpoint={"every": 2})
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    Trainer(load_config(config), root / "run").fit(until=2)
    return root


@pytest.mark.parametrize("row", CLI_ROWS, ids=[row.id for row in CLI_ROWS])
def test_cli_rows(row, stopped_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SWAT_DEBUG", raising=False)
    shutil.copytree(stopped_run, tmp_path, dirs_exist_ok=True)
    if row.setup is not None:
        row.setup(tmp_path)
    code = main([arg.replace("{tmp}", str(tmp_path)) for arg in row.argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code in (row.exit if isinstance(row.exit, tuple) else (row.exit,)), err
    lines = [line for line in err.splitlines() if line.startswith("swat ")]
    assert len(lines) == 1 and re.search(row.message, lines[0]), err


class _OutOfVocabularyEOS:
    eos_token_id, eos_token = 10_000, "<eos>"

    def get_vocab(self):
        return {"a": 0, "b": 1, "<eos>": 10_000}

    def __len__(self):
        return 2


def _torn_metrics(tmp: Path) -> None:
    (tmp / "metrics.jsonl").write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    read_metrics(tmp / "metrics.jsonl")


def _prepare_with_bad_eos(tmp: Path) -> None:
    (tmp / "a.txt").write_text("some text\n" * 10)
    prepare_data([tmp / "a.txt"], tmp / "d", tokenizer=_OutOfVocabularyEOS(), heldout_fraction=0, progress=False)


API_ROWS = [
    ("eos-outside-vocabulary", _prepare_with_bad_eos, ValueError, r"give a tokenizer whose eos_token is one of"),
    ("section-not-a-mapping", lambda tmp: load_config({"train": 5}), ValueError, r"must be a mapping of its keys"),
    ("damaged-metrics-middle-line", _torn_metrics, ValueError, r"line 2 is not a JSON record .*delete or fix"),
    ("garbage-trainer-state", lambda tmp: (_write("c/trainer_state.pt", b"junk")(tmp), ckpt.load_state(tmp / "c")),
     ValueError, r"is damaged .*resume from an earlier checkpoint"),
]


@pytest.mark.parametrize("name, call, error, message", API_ROWS, ids=[row[0] for row in API_ROWS])
def test_api_rows(name, call, error, message, tmp_path):
    with pytest.raises(error, match=message):
        call(tmp_path)
