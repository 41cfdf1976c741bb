"""What a directory or a config a user passes must never do: run its code (even when standard
input says yes), copy a secret into a model, make swat read files outside it, or give silently
wrong results (integer weights, a tokenizer of another vocabulary, shards of another dtype).
Each row is an input, the exit code and the message that says what to change."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from swat import SWATForCausalLM
from swat.cli import main
from swat.data.shards import read_manifest, write_manifest, write_split
from swat.training import checkpoint as ckpt
from swat.training import load_config
from swat.training.trainer import Trainer
from tests.conftest import make_data_dir
from tests.evaluation.conftest import make_text, make_tokenizer, tiny_config
from tests.training.conftest import run_config

RAN = "custom-code-ran"  # the file a directory's module writes into its directory if it is ever imported
EVIL_MODULE = """open({sentinel!r}, "w").write("imported")
from transformers import PreTrainedTokenizerFast


class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


def _with_custom_code(directory: Path) -> Path:
    """Make the tokenizer saved in ``directory`` ask for its own module (``auto_map``), which
    writes ``directory/RAN`` when imported."""
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
                  tokenizer_class="EvilTokenizer")
    config_path.write_text(json.dumps(config))
    (directory / "tokenization_evil.py").write_text(EVIL_MODULE.format(sentinel=str(directory / RAN)))
    return directory


def _data_dir(path: Path, tokenizer, evil: bool = False) -> Path:
    """Train and held-out splits of text tokenized by ``tokenizer``, saved beside them."""
    tokenizer.save_pretrained(path / "tokenizer")
    if evil:
        _with_custom_code(path / "tokenizer")
    ids = tokenizer(make_text(1500), add_special_tokens=False)["input_ids"]
    for split in ("train", "heldout"):
        write_split(path, split, [ids[i:i + 200] for i in range(0, len(ids), 200)], vocab_size=len(tokenizer),
                    eos_token_id=tokenizer.eos_token_id, tokenizer="tokenizer")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("untrusted")
    tokenizer = make_tokenizer(make_text(3000))
    paths = {"root": root}
    paths["model"] = root / "model"
    SWATForCausalLM(tiny_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id)).save_pretrained(paths["model"])
    tokenizer.save_pretrained(paths["model"])
    paths["text"] = root / "text.txt"
    paths["text"].write_text(make_text(600))
    paths["evil_tokenizer"] = root / "evil_tokenizer"
    tokenizer.save_pretrained(paths["evil_tokenizer"])
    _with_custom_code(paths["evil_tokenizer"])
    paths["evil_model"] = root / "evil_model"
    shutil.copytree(paths["model"], paths["evil_model"])
    _with_custom_code(paths["evil_model"])
    paths["data"] = _data_dir(root / "data", tokenizer)
    paths["evil_data"] = _data_dir(root / "evil_data", tokenizer, evil=True)
    paths["training_data"] = make_data_dir(root / "training_data")
    return paths


@dataclass
class Row:
    id: str
    argv: list[str]
    message: str  # a regular expression the one-line error must match
    setup: Callable[[dict[str, Path], Path], None] | None = None


def _yaml(file: str, **sections) -> Callable[[dict[str, Path], Path], None]:
    def setup(files: dict[str, Path], tmp: Path) -> None:
        config = run_config(files["training_data"], train={"steps": 2}, eval={"every": 0}, checkpoint={"every": 0})
        for key, value in sections.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) else value
        (tmp / file).write_text(yaml.safe_dump(config))
    return setup


def _copy_data(edit: Callable[[Path], None], source: str = "data") -> Callable[[dict[str, Path], Path], None]:
    """``tmp/d``: a copy of a data directory, then ``edit``-ed."""
    def setup(files: dict[str, Path], tmp: Path) -> None:
        shutil.copytree(files[source], tmp / "d")
        edit(tmp / "d")
    return setup


def _manifest(change: Callable[[dict], None], fingerprint: bool = False) -> Callable[[Path], None]:
    """Change the manifest (``fingerprint``: as a program that writes it with ``write_manifest``)."""
    def edit(directory: Path) -> None:
        manifest = read_manifest(directory) if fingerprint else json.loads((directory / "manifest.json").read_text())
        change(manifest)
        if fingerprint:
            write_manifest(directory, manifest)
        else:
            (directory / "manifest.json").write_text(json.dumps(manifest))
    return edit


def _shard_outside(directory: Path) -> None:
    (directory.parent / "outside.bin").write_bytes((directory / "train-00000.bin").read_bytes())
    (directory / "train-00000.bin").unlink()
    (directory / "train-00000.bin").symlink_to(directory.parent / "outside.bin")


def _as_uint32(directory: Path) -> None:
    """A program that wrote its ids as uint32 and counted the tokens a uint16 reader would see."""
    manifest = read_manifest(directory)
    for split, info in manifest["splits"].items():
        ids = np.concatenate([np.fromfile(directory / name, dtype="<u2") for name in info["shards"]])
        ids.astype("<u4").tofile(directory / info["shards"][0])
        for name in info["shards"][1:]:
            (directory / name).unlink()
        manifest["splits"][split] = {**info, "shards": info["shards"][:1], "tokens": 2 * len(ids)}
    write_manifest(directory, manifest)


def _other_tokenizer(directory: Path) -> None:
    shutil.rmtree(directory / "tokenizer")
    make_tokenizer(make_text(3000), vocab_size=300).save_pretrained(directory / "tokenizer")
    write_manifest(directory, read_manifest(directory))  # fingerprinted: only the sizes disagree


def _integer_weights(files: dict[str, Path], tmp: Path) -> None:
    shutil.copytree(files["model"], tmp / "m")
    weights = load_file(tmp / "m" / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name].to(torch.int32)
    save_file(weights, tmp / "m" / "model.safetensors", metadata={"format": "pt"})


def _index_outside(files: dict[str, Path], tmp: Path) -> None:
    shutil.copytree(files["model"], tmp / "m")
    (tmp / "m" / "model.safetensors").rename(tmp / "elsewhere.safetensors")
    weights = load_file(tmp / "elsewhere.safetensors")
    index = {"metadata": {}, "weight_map": {name: "../elsewhere.safetensors" for name in weights}}
    (tmp / "m" / "model.safetensors.index.json").write_text(json.dumps(index))


def _small_model(files: dict[str, Path], tmp: Path) -> None:
    """A model of a smaller vocabulary than the tokenizer saved beside it."""
    tokenizer_files = [p for p in files["model"].iterdir() if p.name.startswith(("tokenizer", "special"))]
    SWATForCausalLM(tiny_config(100, eos_token_id=0)).save_pretrained(tmp / "m")
    for path in tokenizer_files:
        shutil.copy(path, tmp / "m" / path.name)


TRAIN = ["train", "--config", "{tmp}/run.yaml", "--out", "{tmp}/out"]
PPL = ["eval", "ppl", "--model", "{model}", "--text"]
CLI_ROWS = [
    # 4. no code from a directory, whatever standard input says
    Row("tokenizer-with-custom-code", ["data", "prepare", "--no-progress", "{text}", "--tokenizer", "{evil_tokenizer}",
                                       "--out", "{tmp}/d"], r"asks to run code from .*swat never runs code"),
    Row("model-tokenizer-with-custom-code", [*PPL[:3], "{evil_model}", "--text", "{text}"],
        r"asks to run code from .*swat never runs code"),
    Row("data-tokenizer-with-custom-code", [*PPL, "{evil_data}"], r"asks to run code from .*swat never runs code"),
    Row("training-data-with-custom-code", TRAIN, r"asks to run code from .*swat never runs code",
        lambda files, tmp: _yaml("run.yaml", data={"dir": str(files["evil_data"]), "seq_len": 32})(files, tmp)),
    # 5. no secret into a saved config, no run name out of runs/
    Row("env-resolver-in-yaml", TRAIN, r"'data.dir' is '\$\{oc.env:SECRET_DIR\}': interpolations and resolvers",
        _yaml("run.yaml", data={"dir": "${oc.env:SECRET_DIR}"})),
    Row("env-resolver-as-name", ["train", "--config", "{tmp}/run.yaml"], r"'name' is '\$\{oc.env:HOME\}'",
        _yaml("run.yaml", name="${oc.env:HOME}")),
    Row("env-resolver-in-set", [*TRAIN, "--set", "optim.lr=${oc.env:LR}"], r"'optim.lr' is .*write the value itself",
        _yaml("run.yaml")),
    Row("name-climbs-out", ["train", "--config", "{tmp}/run.yaml"], r"name '../../elsewhere' must be one plain",
        _yaml("run.yaml", name="../../elsewhere")),
    Row("name-absolute", ["train", "--config", "{tmp}/run.yaml", "--set", "name=/tmp/elsewhere"],
        r"name '/tmp/elsewhere' must be one plain", _yaml("run.yaml")),
    # 6. a manifest names files inside its directory only
    Row("absolute-shard", ["data", "info", "{tmp}/d"], r"names '/etc/passwd', which is not a file inside",
        _copy_data(_manifest(lambda m: m["splits"]["train"].update(shards=["/etc/passwd"])))),
    Row("shard-above", [*PPL, "{tmp}/d"], r"names '../outside.bin', which is not a file inside",
        _copy_data(_manifest(lambda m: m["splits"]["heldout"].update(shards=["../outside.bin"])))),
    Row("tokenizer-above", [*PPL, "{tmp}/d"], r"names '../../etc', which is not a file inside",
        _copy_data(_manifest(lambda m: m.update(tokenizer="../../etc")))),
    Row("weights-index-points-out", [*PPL[:3], "{tmp}/m", "--text", "{text}"],
        r"points outside the model directory: ../elsewhere.safetensors", _index_outside),
    Row("shard-symlinked-out", ["data", "info", "{tmp}/d"], r"names 'train-00000.bin', which is not a file inside",
        _copy_data(_shard_outside)),
    # 8. silent wrong results
    Row("integer-weights", [*PPL[:3], "{tmp}/m", "--text", "{text}"], r"stores 1 weight tensors as integers",
        _integer_weights),
    Row("tokenizer-beyond-the-model", [*PPL[:3], "{tmp}/m", "--text", "{text}"],
        r"tokens, more than the model's vocabulary of 100", _small_model),
    Row("data-tokenizer-of-another-size", TRAIN, r"the manifest of .* says the data's vocabulary is",
        lambda files, tmp: (_copy_data(_other_tokenizer, "training_data")(files, tmp),
                            _yaml("run.yaml", data={"dir": str(tmp / "d"), "seq_len": 32})(files, tmp))),
    Row("uint32-shards-under-uint16", ["data", "info", "{tmp}/d"], r"are not uint16 token ids: every second id",
        _copy_data(_as_uint32, "training_data")),
    Row("dtype-of-another-vocabulary", ["data", "info", "{tmp}/d"], r"says dtype uint32 for a vocabulary of",
        _copy_data(_manifest(lambda m: m.update(dtype="uint32"), fingerprint=True))),
]


@pytest.mark.parametrize("row", CLI_ROWS, ids=[row.id for row in CLI_ROWS])
def test_cli_rows(row, files, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SWAT_DEBUG", raising=False)
    monkeypatch.setenv("SECRET_DIR", "/the/secret")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n" * 10))  # a user who would answer yes to every prompt
    if row.setup is not None:
        row.setup(files, tmp_path)
    names = {key: str(value) for key, value in files.items()}
    argv = [re.sub(r"\{(\w+)\}", lambda m: str(tmp_path) if m[1] == "tmp" else names[m[1]], arg) for arg in row.argv]
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("swat ")]
    assert len(lines) == 1 and re.search(row.message, lines[0]), err
    assert not list(files["root"].rglob(RAN)) and not list(tmp_path.rglob(RAN))  # no module was ever imported
    assert not (tmp_path / "out").exists() and "/the/secret" not in out + err


def test_no_module_but_swats_own_lands_in_a_checkpoint(tmp_path):
    """Whatever a model's or a tokenizer's save_pretrained copies along, only swat's modules stay."""
    tokenizer = make_tokenizer(make_text(500))

    class CopyingTokenizer:
        def save_pretrained(self, directory):
            tokenizer.save_pretrained(directory)
            (Path(directory) / "tokenization_evil.py").write_text(EVIL_MODULE.format(sentinel="/dev/null"))

    model = SWATForCausalLM(tiny_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id))
    ckpt.write_model_dir(tmp_path, model, model.state_dict(), CopyingTokenizer(), "name: x\n", "card")
    assert sorted(p.name for p in tmp_path.glob("*.py")) == ["configuration_swat.py", "modeling_swat.py"]


def test_a_secret_is_never_resolved_into_a_saved_config(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "hunter2")
    for source, overrides in [({"log": {"wandb_project": "${oc.env:API_TOKEN}"}}, []),
                              ({}, ["log.wandb_project=${oc.env:API_TOKEN}"]),
                              ({"log": {"wandb_project": "${log.every}"}}, [])]:
        with pytest.raises(ValueError, match="interpolations and resolvers"):
            load_config(source, overrides)


def test_warmup_beyond_the_steps_is_warned(files, tmp_path, capsys):
    config = load_config(run_config(files["training_data"], optim={"warmup_steps": 5}, train={"steps": 2},
                                    eval={"every": 0}, checkpoint={"every": 0}))
    Trainer(config, tmp_path / "run").fit()
    assert re.search(r"warning: optim.warmup_steps=5 >= train.steps=2: the learning rate never reaches optim.lr",
                     capsys.readouterr().out)
    config = load_config(run_config(files["training_data"], optim={"warmup_steps": 1}, train={"steps": 2},
                                    eval={"every": 0}, checkpoint={"every": 0}))
    Trainer(config, tmp_path / "run2").fit()
    assert "warmup_steps" not in capsys.readouterr().out


def test_a_run_of_more_than_a_day_says_so_after_its_first_step(files, tmp_path, capsys):
    """An absurd step count (a digit too many) is accepted, but the time it implies is printed."""
    config = load_config(run_config(files["training_data"], train={"steps": 10**9},
                                    eval={"every": 0}, checkpoint={"every": 0}))
    Trainer(config, tmp_path / "run").fit(until=1)
    assert re.search(r"note: a step takes [\d.]+ s here, so the remaining 999,999,999 steps take about [\d,.]+ days",
                     capsys.readouterr().out)
    config = load_config(run_config(files["training_data"], train={"steps": 2}, eval={"every": 0},
                                    checkpoint={"every": 0}))
    Trainer(config, tmp_path / "run2").fit()
    assert "days" not in capsys.readouterr().out
