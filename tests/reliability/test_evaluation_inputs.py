"""Bad input to generation, evaluation, diagnostics, the demo and reproduce: every row is refused
with exit code 2 (CLI) or a ValueError/FileNotFoundError (Python API) whose message says what to
change, and never with a traceback."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from swat.cli import build_parser, main
from swat.data.shards import write_split
from swat.errors import UserError
from swat.evaluation.heldout import read_tokens, sequences_of
from swat.evaluation.length import evaluate_lengths, parse_lengths
from swat.evaluation.passkey import evaluate_passkey
from swat.evaluation.perplexity import stream_loss
from swat.experiments.reproduce import choose_ablations, reproduce
from swat.models.loading import load_model
from swat.utils.checks import check_seeds
from tests.conftest import make_text, make_tokenizer
from tests.evaluation.conftest import save_model


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny model, texts good and bad, damaged model directories and data directories."""
    root = tmp_path_factory.mktemp("inputs")
    text = make_text(600)
    tokenizer = make_tokenizer(text)
    model = save_model(root / "model", tokenizer)
    paths = dict(model=model, root=root)
    paths["text"] = root / "text.txt"
    paths["text"].write_text(text, encoding="utf-8")
    paths["binary"] = root / "binary.bin"
    paths["binary"].write_bytes(bytes(range(256)) * 4)
    paths["nul"] = root / "nul.txt"
    paths["nul"].write_text("text\x00with a NUL", encoding="utf-8")
    paths["empty"] = root / "empty.txt"
    paths["empty"].write_text("")

    def damaged(name: str, damage) -> None:
        paths[name] = root / name
        shutil.copytree(model, paths[name])
        damage(paths[name])

    damaged("garbage_config", lambda d: (d / "config.json").write_text("{not json"))
    damaged("truncated_config", lambda d: (d / "config.json").write_text((d / "config.json").read_text()[:80]))
    damaged("unknown_type", lambda d: (d / "config.json").write_text(
        (d / "config.json").read_text().replace('"model_type": "swat"', '"model_type": "swatt"')))
    damaged("truncated_weights", lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:5000]))
    damaged("garbage_weights", lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 4096))
    damaged("pickled_weights", lambda d: (d / "model.safetensors").rename(d / "pytorch_model.bin"))

    def drop_a_tensor(d: Path) -> None:
        weights = load_file(d / "model.safetensors")
        weights.pop(sorted(weights)[0])
        save_file(weights, d / "model.safetensors", metadata={"format": "pt"})

    damaged("missing_tensor", drop_a_tensor)

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    paths["other_size_data"] = root / "other_size_data"
    write_split(paths["other_size_data"], "heldout", [ids], vocab_size=len(tokenizer) + 1,
                eos_token_id=tokenizer.eos_token_id)
    paths["other_tokenizer_data"] = root / "other_tokenizer_data"
    write_split(paths["other_tokenizer_data"], "heldout", [ids], vocab_size=len(tokenizer),
                eos_token_id=tokenizer.eos_token_id, tokenizer="tokenizer")
    tokenizer.save_pretrained(paths["other_tokenizer_data"] / "tokenizer")
    spec_path = paths["other_tokenizer_data"] / "tokenizer" / "tokenizer.json"
    spec = json.loads(spec_path.read_text())
    vocab = spec["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]  # as many tokens, other ids
    spec_path.write_text(json.dumps(spec))
    paths["no_heldout_data"] = root / "no_heldout_data"
    write_split(paths["no_heldout_data"], "train", [ids], vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    return paths


def _args(args: list[str], files: dict[str, Path]) -> list[str]:
    """``{name}`` in an argument is the path of ``files[name]``."""
    return [re.sub(r"\{(\w+)\}", lambda m: str(files[m.group(1)]), arg) for arg in args]


GENERATE = ["generate", "--model", "{model}", "--prompt", "the king"]
PPL = ["eval", "ppl", "--model", "{model}", "--text", "{text}"]
LENGTH = ["eval", "length", "--models", "{model}", "--text", "{text}", "--out", "{root}/length"]
PASSKEY = ["eval", "passkey", "--model", "{model}", "--out", "{root}/passkey"]
DIAGNOSE = ["diagnose", "attention", "--model", "{model}", "--text", "{text}", "--out", "{root}/attention"]

# (arguments, the message on stderr must match this)
CLI_ROWS = [
    (GENERATE + ["--max-new-tokens", "-5"], r"--max-new-tokens: '-5' is too small: pass an integer >= 1"),
    (GENERATE + ["--max-new-tokens", "0"], r"--max-new-tokens: '0' is too small: pass an integer >= 1"),
    (GENERATE + ["--temperature", "inf"], r"--temperature: 'inf' is not finite: pass a finite number"),
    (GENERATE + ["--temperature", "nan"], r"--temperature: 'nan' is not finite"),
    (GENERATE + ["--temperature", "-1"], r"--temperature: '-1' is negative: pass a number >= 0"),
    (GENERATE + ["--temperature", "1e-30"], r"pass 0 for greedy decoding, or a temperature >= 0.0001"),
    (GENERATE + ["--top-p", "0"], r"--top-p: '0' is not in \(0, 1\]: pass e\.g\. 0\.95"),
    (GENERATE + ["--seed", "-1"], r"--seed: '-1' is too small: pass an integer >= 0"),
    (GENERATE + ["--device", "gpu0"], r"--device: 'gpu0' is not a torch device: pass e\.g\. cpu, cuda"),
    (GENERATE + ["--device", "cuda:99"], r"--device: the device 'cuda:99' (is not available on this machine: pass "
                                         r"--device cpu|does not exist)"),
    (["generate", "--model", "{model}", "--prompt-file", "{binary}"], r"binary\.bin is not UTF-8 text .*: pass a UTF-8 text file"),
    (["generate", "--model", "{model}", "--prompt-file", "{nul}"], r"contains NUL bytes.*pass a UTF-8 text file"),
    (["generate", "--model", "{model}", "--prompt-file", "{root}/missing.txt"], r"prompt file not found: .*pass an existing"),
    (["generate", "--model", "{root}/nowhere", "--prompt", "x"], r"is not a model directory \(no config\.json\): pass"),
    (["generate", "--model", "{garbage_config}", "--prompt", "x"], r"config\.json is not valid JSON .*save the model again"),
    (["generate", "--model", "{truncated_config}", "--prompt", "x"], r"config\.json is not valid JSON"),
    (["generate", "--model", "{unknown_type}", "--prompt", "x"], r"names the model type 'swatt', .*fix the file"),
    (["generate", "--model", "{truncated_weights}", "--prompt", "x"], r"cannot read the weights .*save or copy the model again"),
    (["generate", "--model", "{garbage_weights}", "--prompt", "x"], r"cannot read the weights .*damaged or incomplete"),
    (["generate", "--model", "{pickled_weights}", "--prompt", "x"], r"has no weights .*only as safetensors; save the model"),
    (["generate", "--model", "{missing_tensor}", "--prompt", "x"], r"do not fit its config\.json .*save it again"),
    (PPL + ["--max-tokens", "-3"], r"--max-tokens: '-3' is too small: pass an integer >= 2"),
    (PPL + ["--max-tokens", "1"], r"--max-tokens: '1' is too small: pass an integer >= 2"),
    (PPL + ["--chunk-size", "0"], r"--chunk-size: '0' is too small: pass an integer >= 1"),
    (PPL + ["--device", "tpu"], r"--device: 'tpu' is not a torch device"),
    (["eval", "ppl", "--model", "{model}", "--text", "{binary}"], r"is not UTF-8 text .*convert it"),
    (["eval", "ppl", "--model", "{model}", "--text", "{empty}"], r"0 token\(s\): perplexity needs at least 2, pass a longer"),
    (["eval", "ppl", "--model", "{model}", "--text", "{root}/missing.txt"], r"text not found: .*pass a UTF-8 text file"),
    (["eval", "ppl", "--model", "{model}", "--text", "{other_tokenizer_data}"],
     r"another tokenizer than the model's .*prepare the data with the model's tokenizer"),
    (["eval", "ppl", "--model", "{model}", "--text", "{other_size_data}"],
     r"vocabulary of \d+ tokens but the model's tokenizer has \d+: evaluate on a text file"),
    (["eval", "ppl", "--model", "{model}", "--text", "{no_heldout_data}"], r"has no 'heldout' split .*--heldout-files"),
    (LENGTH + ["--lengths", "abc"], r"cannot read the length 'abc' .*use integers with optional k/m"),
    (LENGTH + ["--lengths", "0"], r"length '0' must be a whole number of tokens >= 2"),
    (LENGTH + ["--lengths", "64,1.5"], r"length '1\.5' must be a whole number of tokens >= 2"),
    (LENGTH + ["--batch-size", "0"], r"--batch-size: '0' is too small: pass an integer >= 1"),
    (LENGTH + ["--max-tokens", "-1"], r"--max-tokens: '-1' is too small"),
    (LENGTH + ["--lengths", "1m"], r"fewer than the shortest length 1048576: give a longer text or shorter --lengths"),
    (PASSKEY + ["--trials", "0"], r"--trials: '0' is too small: pass an integer >= 1"),
    (PASSKEY + ["--lengths", "64", "--distances", "2"],
     r"no passkey prompt fits .*a key distance must be between \d+ tokens .*pass such --distances, or longer --lengths"),
    (PASSKEY + ["--distances", "x"], r"cannot read the length 'x'"),
    (DIAGNOSE + ["--length", "0"], r"--length: '0' is too small: pass an integer >= 2"),
    (DIAGNOSE + ["--sequences", "0"], r"--sequences: '0' is too small"),
    (DIAGNOSE + ["--length", "100000"], r"fewer than one sequence of 100000: give a longer text or a shorter length"),
    (["diagnose"], r"^swat diagnose: choose a diagnostic: swat diagnose attention"),
    (["eval"], r"^swat eval: choose an evaluation: swat eval \{length,passkey,harness,ppl\}"),
    (["demo", "--steps", "0"], r"--steps: '0' is too small"),
    (["demo", "--preset", "huge"], r"--preset: invalid choice: 'huge'"),
    (["reproduce", "--minutes", "0"], r"--minutes: '0' is too small: pass a number > 0"),
    (["reproduce", "--minutes", "nan"], r"--minutes: 'nan' is not finite"),
    (["reproduce", "--configs", ","], r"--configs ',' names no config: pass e\.g\. --configs transformer\+\+,swat"),
    (["reproduce", "--passkey-trials", "0"], r"--passkey-trials: '0' is too small"),
    (["reproduce", "--threads", "0"], r"--threads: '0' is too small"),
    (["eval", "harness", "--model", "{model}", "--tasks", ","], r"--tasks ',' names no task: pass comma-separated"),
    (["eval", "harness", "--model", "{model}", "--tasks", "x", "--limit", "-1"], r"--limit: '-1' is too small"),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """``swat.cli.main(argv)``'s exit code (argparse's usage errors raise SystemExit) and stderr."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


@pytest.mark.parametrize(("args", "message"), CLI_ROWS, ids=[" ".join(row[0][:2] + row[0][-2:]) for row in CLI_ROWS])
def test_the_cli_refuses_bad_input_in_one_line_with_exit_code_2(files, capsys, args, message):
    code, err = _run(_args(args, files), capsys)
    assert code == 2
    assert re.search(message, err), err
    last_line = err.strip().splitlines()[-1]
    assert re.match(r"^(swat [a-z ]+: |usage: |swat [a-z ]+: error: )", last_line), err


def test_a_binary_prompt_on_standard_input_is_refused(files, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe binary"), encoding="utf-8"))
    code, err = _run(_args(["generate", "--model", "{model}"], files), capsys)
    assert code == 2 and re.search(r"standard input is not UTF-8 text .*pass --prompt", err), err


def test_swat_debug_shows_the_traceback(files, monkeypatch):
    monkeypatch.setenv("SWAT_DEBUG", "1")
    with pytest.raises(ValueError, match="not valid JSON"):
        main(_args(["generate", "--model", "{garbage_config}", "--prompt", "x"], files))


@pytest.mark.parametrize("bug", [RuntimeError("a bug"), ValueError("a bug"), OSError(28, "No space left on device")])
def test_a_bug_still_shows_its_traceback(files, monkeypatch, bug):
    """Only the user's errors (UserError, a missing file, a permission, an existing output) become
    one line; anything else, a bare ValueError from a bug included, keeps its traceback."""
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr("swat.models.loading.load_model", broken)  # swat generate imports it where it runs
    with pytest.raises(type(bug), match=str(bug.args[-1])):
        main(_args(GENERATE, files))


@pytest.mark.parametrize("error", [UserError("change this"), FileNotFoundError("no such file: x"),
                                   PermissionError("x is not writable"), FileExistsError("x exists")])
def test_user_errors_are_one_line(files, monkeypatch, capsys, error):
    def refused(*args, **kwargs):
        raise error

    monkeypatch.setattr("swat.models.loading.load_model", refused)  # swat generate imports it where it runs
    code, err = _run(_args(GENERATE, files), capsys)
    assert code == 2 and err == f"swat generate: {error}\n"


@pytest.fixture(scope="module")
def model_and_tokenizer(files):
    return load_model(files["model"])


# (call, exception type, the message must match this)
API_ROWS = [
    (lambda f, m, t: load_model(f["truncated_weights"]), ValueError, r"cannot read the weights .*save or copy"),
    (lambda f, m, t: load_model(f["unknown_type"]), ValueError, r"model type 'swatt'.*fix the file"),
    (lambda f, m, t: load_model(f["root"] / "nowhere"), FileNotFoundError, r"no config\.json\): pass the directory"),
    (lambda f, m, t: read_tokens(f["binary"], t), ValueError, r"is not UTF-8 text .*pass a UTF-8 text file"),
    (lambda f, m, t: read_tokens(f["other_tokenizer_data"], t), ValueError, r"another tokenizer .*prepare the data"),
    (lambda f, m, t: evaluate_passkey(m, t, [256], [64], trials=0), ValueError, r"trials must be an int >= 1"),
    (lambda f, m, t: evaluate_passkey(m, t, [64], [2, 3]), ValueError, r"no passkey prompt fits .*pass such --distances"),
    (lambda f, m, t: evaluate_lengths(m, torch.arange(100), [32], batch_size=0), ValueError, r"batch_size must be an int >= 1"),
    (lambda f, m, t: evaluate_lengths(m, torch.arange(10), [32]), ValueError, r"fewer than the shortest length 32"),
    (lambda f, m, t: stream_loss(m, [torch.tensor([1])]), ValueError, r"perplexity needs at least 2, pass a longer text"),
    (lambda f, m, t: stream_loss(m, [torch.arange(5)], max_tokens=1), ValueError, r"max_tokens must be an int >= 2"),
    (lambda f, m, t: stream_loss(m, [torch.arange(5)], chunk_size=0), ValueError, r"chunk_size must be an int >= 1"),
    (lambda f, m, t: parse_lengths("0"), ValueError, r"must be a whole number of tokens >= 2"),
    (lambda f, m, t: sequences_of(torch.arange(10), 11, 1), ValueError, r"give a longer text or a shorter length"),
    (lambda f, m, t: reproduce(f["root"] / "r", minutes=float("nan")), ValueError, r"minutes must be a finite number > 0"),
    (lambda f, m, t: reproduce(f["root"] / "r", passkey_trials=0), ValueError, r"passkey_trials must be an int >= 1"),
    (lambda f, m, t: choose_ablations(64, []), ValueError, r"pass None for the eight configs, or names such as"),
]


@pytest.mark.parametrize(("call", "error", "message"), API_ROWS, ids=[str(i) for i in range(len(API_ROWS))])
def test_the_python_api_refuses_bad_input_saying_what_to_change(files, model_and_tokenizer, call, error, message):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(error, match=message):
        call(files, model, tokenizer)


def test_the_commands_spell_shared_options_alike():
    """``--model`` names the model(s) of every command (``eval length`` also takes ``--models``);
    ``--set`` takes overrides after one flag or one per flag; seeds follow one rule."""
    def parse(argv):
        return build_parser(argv).parse_args(argv)

    for flag in ("--model", "--models"):
        assert parse(["eval", "length", flag, "a", "b", "--text", "t"]).models == ["a", "b"]
    assert parse(["eval", "passkey", "--model", "a", "b"]).model == ["a", "b"]
    for argv in (["--set", "a=1", "b=2"], ["--set", "a=1", "--set", "b=2"]):
        assert parse(["reproduce", *argv]).overrides == ["a=1", "b=2"]
        assert parse(["train", *argv]).overrides == ["a=1", "b=2"]
    assert parse(["reproduce", "--seeds", "0,1,2"]).seeds == [0, 1, 2]
    with pytest.raises(UserError, match=r"seeds must be distinct whole numbers >= 0, e\.g\. 0,1,2, got \[1, 1\]"):
        check_seeds([1, 1])
