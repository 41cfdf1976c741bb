"""Inputs a user gets from elsewhere (a model directory downloaded or copied, a data directory
prepared by another version, a size with a digit too many), one table per class: hostile config
fields, hostile tensors, hostile manifests, impossible sizes. Each row is an input and the pattern
of the message that says what to change; each is refused by the CLI (``swat COMMAND: message``,
exit 2, no traceback) and by the Python loader (``UserError``, the same message), within seconds
and without allocating the size it asks for (a child process reruns the tables under an
address-space limit far below those sizes)."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from swat import SWATForCausalLM
from swat.cli import main
from swat.cli.generate import FiniteLogits
from swat.data.shards import TokenShards, read_manifest
from swat.errors import UserError
from swat.models import memory
from swat.models.loading import load_model
from swat.training import load_config
from tests.conftest import make_data_dir, make_text, make_tokenizer, tiny_config

MACHINE_MEMORY = 16 * 2**30  # the memory the tables assume, whatever the machine running them has
MAX_SECONDS = 5.0  # the longest a row may take (they take well under a second)
CHILD_ADDRESS_SPACE = 6 * 2**30  # the child rerunning the tables (torch alone maps about 2.5 GiB)


@dataclass
class Row:
    id: str
    edit: Callable[[Path], object]  # makes the hostile input inside a copy of the directory
    message: str  # a regular expression the one-line error must match


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    tokenizer = make_tokenizer(make_text(3000))
    model = root / "model"
    SWATForCausalLM(tiny_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id)).save_pretrained(model)
    tokenizer.save_pretrained(model)
    return {"model": model, "data": make_data_dir(root / "data")}


@pytest.fixture(autouse=True)
def _machine(monkeypatch):
    monkeypatch.setattr(memory, "machine_memory", lambda: MACHINE_MEMORY)
    monkeypatch.delenv("SWAT_DEBUG", raising=False)


def _refused(argv: list[str], load: Callable[[], object], pattern: str, capsys) -> None:
    """The CLI exits 2 with one ``swat ...`` line matching ``pattern``, the loader raises a
    ``UserError`` with the same message, each within MAX_SECONDS."""
    start = time.perf_counter()
    code = main(argv)
    cli_seconds = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.startswith("swat ")]
    assert code == 2 and len(lines) == 1 and re.search(pattern, lines[0]), err
    start = time.perf_counter()
    with pytest.raises(UserError, match=pattern) as error:
        load()
    assert cli_seconds < MAX_SECONDS and time.perf_counter() - start < MAX_SECONDS
    assert str(error.value) in lines[0]


# hostile config fields: config.json of a model directory

def _config(text: str | None = None, **changes) -> Callable[[Path], None]:
    """config.json replaced by ``text``, or with ``changes`` to its fields."""
    def edit(directory: Path) -> None:
        fields = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(text if text is not None else json.dumps({**fields, **changes}))
    return edit


def _nested(depth: int) -> str:
    return '{"model_type": "swat", "x": ' + "[" * depth + "]" * depth + "}"


CONFIG_ROWS = [
    Row("vocab-size-huge", _config(vocab_size=10**400), r"vocab_size must be at most 2,147,483,647 .*got an int of"),
    Row("sigmoid-bias-huge", _config(sigmoid_bias=10**400), r"sigmoid_bias must be a finite number .*got an int of"),
    Row("rope-theta-huge", _config(rope_theta=10**400), r"rope_theta must be a finite number > 0"),
    Row("layers-huge", _config(num_hidden_layers=10**9),
        r"describes 9.\d+e\+12 parameters .*num_hidden_layers=1000000000.*digit too many"),
    Row("hidden-size-huge", _config(hidden_size=10**12, head_dim=8), r"hidden_size must be at most 2,147,483,647"),
    Row("head-dim-huge", _config(head_dim=2**40), r"head_dim must be at most 2,147,483,647"),
    Row("window-2-to-70", _config(sliding_window=2**70), r"sliding_window must be at most .*set it to None"),
    Row("heads-2-to-30", _config(num_attention_heads=2**30, head_dim=8), r"num_attention_heads must be at most 65,536"),
    Row("alibi-slopes-huge", _config(alibi=[10**400] * 4), r"alibi slopes must be finite numbers"),
    Row("alibi-slopes-inf", _config(alibi=[1e400] * 4), r"alibi slopes must be finite numbers, got \['inf'"),
    Row("eos-id-huge", _config(eos_token_id=10**30), r"eos_token_id must be None or token ids .*got an int of"),
    Row("nested-past-recursion", _config(_nested(100_000)), r"config\.json is not valid JSON \(nests too deep\)"),
    Row("nested-deep", _config(_nested(100)), r"nests objects or lists more than 32 levels deep"),
    Row("int-of-5000-digits", _config('{"model_type": "swat", "vocab_size": ' + "9" * 5000 + "}"),
        r"config\.json is not valid JSON \(Exceeds the limit"),
    Row("too-large", _config('{"model_type": "swat", "x": "' + "a" * 2**24 + '"}'),
        r"config\.json is 16,777,\d+ bytes, more than the 16,777,216"),
    Row("torch-dtype-bogus", _config(torch_dtype="bogus"), r"has torch_dtype 'bogus', not one of float32, .*remove the key"),
    Row("dtype-int8", _config(dtype="int8"), r"has dtype 'int8', not one of float32"),
    Row("quantization-config", _config(quantization_config={"quant_method": "bitsandbytes", "load_in_8bit": True}),
        r"has a quantization_config: swat loads full-precision weights only"),
    Row("model-type-list", _config(model_type=["swat"]), r"names the model type \['swat'\], which transformers"),
    Row("config-a-list", _config("[1, 2]"), r"names the model type None"),
]


# hostile tensors: model.safetensors

def _weights(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        weights = load_file(directory / "model.safetensors")
        change(weights)
        save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    return edit


def _set(name: str, value: float, index: tuple = (0, 0)) -> Callable[[dict[str, torch.Tensor]], None]:
    return lambda weights: weights[name].__setitem__(index, value)


def _truncate(directory: Path) -> None:
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[: len(data) // 2])


TENSOR_ROWS = [
    Row("nan-weight", _weights(_set("model.layers.0.mlp.up_proj.weight", float("nan"))),
        r"hold 1 non-finite values \(NaN or inf\) in model\.layers\.0\.mlp\.up_proj\.weight: .*earlier checkpoint"),
    Row("inf-embedding", _weights(_set("model.embed_tokens.weight", float("inf"), (3, 1))),
        r"hold 1 non-finite values .* in model\.embed_tokens\.weight"),
    Row("minus-inf-norm", _weights(_set("model.norm.weight", float("-inf"), (0,))),
        r"non-finite values .* in model\.norm\.weight"),
    Row("all-nan-head", _weights(lambda w: w["lm_head.weight"].fill_(float("nan"))),
        r"hold \d+ non-finite values .* in lm_head\.weight"),
    Row("integer-weights", _weights(lambda w: w.update({"lm_head.weight": w["lm_head.weight"].to(torch.int32)})),
        r"stores 1 weight tensors as integers"),
    Row("wrong-shape", _weights(lambda w: w.update({"model.norm.weight": torch.ones(7)})),
        r"do not fit its config\.json \(model\.safetensors holds 39,047 parameters, config\.json describes 39,072"),
    Row("layers-added-to-the-config", _config(num_hidden_layers=100_000),
        r"holds 39,072 parameters, config\.json describes 928,020,512: .*num_hidden_layers=100000"),
    Row("truncated", _truncate, r"cannot read the weights .* damaged or incomplete"),
    Row("garbage", lambda d: (d / "model.safetensors").write_bytes(os.urandom(4096)), r"cannot read the weights"),
]


@pytest.mark.parametrize("row", CONFIG_ROWS + TENSOR_ROWS, ids=[row.id for row in CONFIG_ROWS + TENSOR_ROWS])
def test_hostile_model_directories(row, files, tmp_path, capsys):
    directory = tmp_path / "m"
    shutil.copytree(files["model"], directory)
    row.edit(directory)
    _refused(["generate", "--model", str(directory), "--prompt", "the", "--max-new-tokens", "2"],
             lambda: load_model(directory), row.message, capsys)


# hostile manifests: manifest.json of a data directory

def _manifest(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """The manifest changed in place by ``change``, or replaced by what it returns."""
    def edit(directory: Path) -> None:
        manifest = json.loads((directory / "manifest.json").read_text())
        replaced = change(manifest)
        (directory / "manifest.json").write_text(replaced if isinstance(replaced, str) else json.dumps(manifest))
    return edit


def _train(**fields) -> Callable[[dict], None]:
    return lambda manifest: manifest["splits"]["train"].update(fields)


MANIFEST_ROWS = [
    Row("splits-a-list", _manifest(lambda m: m.update(splits=["train"])),
        r"splits must be an object of split names .* got a list; prepare the data again"),
    Row("split-a-list", _manifest(lambda m: m["splits"].update(train=[1])), r"splits\.train must be an object"),
    Row("split-lacks-shards", _manifest(lambda m: m["splits"]["train"].pop("shards")), r"splits\.train lacks shards"),
    Row("shards-a-string", _manifest(_train(shards="train-00000.bin")), r"splits\.train\.shards must be a list"),
    Row("shard-name-a-number", _manifest(_train(shards=[0])), r"splits\.train\.shards must be a list of file names"),
    Row("tokens-a-string", _manifest(_train(tokens="2209")), r"splits\.train\.tokens must be an int >= 0, got '2209'"),
    Row("documents-negative", _manifest(_train(documents=-3)), r"splits\.train\.documents must be an int >= 0"),
    Row("names-not-one-per-document", _manifest(_train(names=["a"])), r"splits\.train\.names must be a list of one"),
    Row("vocab-size-a-string", _manifest(lambda m: m.update(vocab_size="286")),
        r"vocab_size must be an int in 1 \.\. 4294967296, got '286'"),
    Row("eos-outside-vocabulary", _manifest(lambda m: m.update(eos_token_id=10**30)),
        r"eos_token_id must be an int in 0 \.\. 285, got a huge int"),
    Row("tokenizer-a-number", _manifest(lambda m: m.update(tokenizer=5)), r"tokenizer must be the name of its directory"),
    Row("two-problems", _manifest(lambda m: (m.update(vocab_size=-1), m["splits"]["heldout"].update(documents=-3))),
        r"vocab_size must be .* got -1; splits\.heldout\.documents must be an int >= 0, got -3; prepare"),
    Row("a-list", _manifest(lambda m: "[]"), r"holds a JSON list, not the object of a manifest"),
    Row("nested-past-recursion", _manifest(lambda m: "[" * 100_000), r"is not valid JSON \(it nests too deep\)"),
    Row("int-of-5000-digits", _manifest(lambda m: '{"format": ' + "1" * 5000 + "}"),
        r"is not valid JSON \(Exceeds the limit"),
    Row("tokens-disagree-with-the-shards", _manifest(_train(tokens=10**6)),
        r"the shards hold 2209 tokens, the manifest says 1000000"),
]


@pytest.mark.parametrize("row", MANIFEST_ROWS, ids=[row.id for row in MANIFEST_ROWS])
def test_hostile_manifests(row, files, tmp_path, capsys):
    directory = tmp_path / "d"
    shutil.copytree(files["data"], directory)
    row.edit(directory)
    _refused(["data", "info", str(directory)], lambda: (read_manifest(directory), TokenShards(directory, "train")),
             row.message, capsys)


# impossible sizes: a training config's --set, and a model directory's window

SIZE_ROWS = [
    Row("layers-100000", "model.num_hidden_layers=100000",
        r"training this model needs about 74\.9 GiB \(20,097,048,704 parameters x 4 bytes\), more than this "
        r"machine's 16\.0 GiB of memory: make it smaller \(model\.num_hidden_layers=100000\)"),
    Row("intermediate-1e9", "model.intermediate_size=1000000000",
        r"model section: the config describes 1\.54e\+12 parameters .*intermediate_size=1000000000"),
    Row("hidden-65536", "model.hidden_size=65536", r"training this model needs about .* GiB .*model\.hidden_size=65536"),
    Row("window-2-to-70", "model.sliding_window=1180591620717411303424",
        r"model\.sliding_window must be at most 2,147,483,647 \(2\*\*31 - 1\), got an int of 71 bits"),
    Row("vocab-1e23", "model.vocab_size=99999999999999999999999", r"model\.vocab_size must be at most"),
    Row("eval-windows-1e9-float", "eval.windows=1e9", r"'eval\.windows' must be int"),
    Row("eval-windows-1e9", "eval.windows=1000000000", r"eval\.windows must be <= 1,048,576, got 1,000,000,000"),
    Row("eval-batch-1e12", "eval.batch_size=1000000000000", r"eval\.batch_size must be <= 1,048,576"),
    Row("batch-1e11", "train.batch_size=100000000000", r"train\.batch_size must be <= 1,048,576"),
]


@pytest.mark.parametrize("row", SIZE_ROWS, ids=[row.id for row in SIZE_ROWS])
def test_impossible_training_sizes(row, files, tmp_path, capsys):
    overrides = [f"data.dir={files['data']}", "train.device=cpu", "train.steps=1", row.edit]  # steps: a regression fails fast
    _refused(["train", "--out", str(tmp_path / "out"), "--set", *overrides], lambda: load_config({}, overrides),
             row.message, capsys)
    assert not (tmp_path / "out").exists()


def test_a_window_whose_cache_cannot_fit_is_refused_before_loading(files, tmp_path, capsys):
    directory = tmp_path / "m"
    shutil.copytree(files["model"], directory)
    _config(sliding_window=2**30)(directory)
    _refused(["generate", "--model", str(directory), "--prompt", "the"], lambda: load_model(directory),
             r"the model in .* in float32 needs about 256\.0 GiB \(39,072 parameters x 4 bytes \+ a rolling cache of "
             r"1,073,741,823 positions per layer\), more than this machine's 16\.0 GiB .*sliding_window=1073741824",
             capsys)


def test_the_machine_memory_is_read():
    assert 2**28 < memory.machine_memory() < 2**50


def test_generation_stops_at_non_finite_logits_naming_the_step(files, tmp_path, capsys):
    """Finite weights whose logits overflow: generation stops before sampling from them."""
    directory = tmp_path / "m"
    shutil.copytree(files["model"], directory)
    _weights(lambda w: w["lm_head.weight"].fill_(3e38))(directory)
    assert main(["generate", "--model", str(directory), "--prompt", "the", "--max-new-tokens", "3"]) == 2
    assert re.search(r"swat generate: the model produced non-finite logits \(NaN or inf\) for new token 1: ",
                     capsys.readouterr().err)
    scores = torch.zeros(1, 5)
    scores[0, 2] = float("nan")
    with pytest.raises(UserError, match=r"for new token 3: .*\(try --dtype float32"):
        FiniteLogits(prompt_length=4, dtype="float16")(torch.ones(1, 6, dtype=torch.long), scores)
    ruled_out = torch.tensor([[0.0, -float("inf"), 1.0]])
    assert FiniteLogits(prompt_length=1, dtype="float32")(torch.ones(1, 1), ruled_out) is ruled_out


def test_no_row_allocates_the_size_it_asks_for():
    """The tables again in a child whose address space is limited far below every impossible size
    (and than the machine memory the tables assume): a row that allocated it would fail there."""
    if os.environ.get("SWAT_HOSTILE_CHILD"):
        return  # the child itself
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))
    env = {**os.environ, "SWAT_HOSTILE_CHILD": "1", "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-m", "pytest", __file__, "-o", "addopts=", "-v", "-x", "-p", "no:cacheprovider",
                            "-k", "hostile_model or impossible or cache_cannot_fit"], env=env, preexec_fn=limit,
                           capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
    assert child.stdout.count(" PASSED") == len(CONFIG_ROWS) + len(TENSOR_ROWS) + len(SIZE_ROWS) + 1, child.stdout


def test_each_table_covers_its_class():
    assert (len(CONFIG_ROWS), len(TENSOR_ROWS), len(MANIFEST_ROWS), len(SIZE_ROWS)) >= (20, 9, 16, 9)
