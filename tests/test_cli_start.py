"""``swat --help``, ``swat COMMAND --help`` and ``swat --version`` start at once: they import
neither torch nor transformers (what a fresh interpreter holds after them is checked, not a time),
and ``import swat`` still registers SWAT with transformers' Auto classes, before or after them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import swat

SRC = str(Path(swat.__file__).parents[1])
HEAVY = ("torch", "transformers", "numpy", "matplotlib")
HELP_LINES = (
    ["--help"], ["--version"], ["train", "--help"], ["data", "--help"], ["data", "prepare", "--help"],
    ["demo", "--help"], ["generate", "--help"], ["diagnose", "attention", "--help"], ["reproduce", "--help"],
    ["serve", "--help"], ["eval", "--help"], ["eval", "length", "--help"], ["eval", "passkey", "--help"],
    ["eval", "harness", "--help"], ["eval", "ppl", "--help"],
)


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=300)


@pytest.mark.parametrize("argv", HELP_LINES, ids=" ".join)
def test_help_and_version_import_neither_torch_nor_transformers(argv):
    code = ("import sys\nfrom swat.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = _python(code, *argv)
    assert done.returncode == 0, done.stderr
    *printed, loaded = done.stdout.strip().splitlines()
    assert loaded == "[]"
    assert "usage: swat" in done.stdout or printed == [f"swat {swat.__version__}"]


def test_every_command_is_in_the_help():
    from swat.cli import COMMANDS, EVAL_COMMANDS, _summary, build_parser

    top = " ".join(build_parser(["--help"]).format_help().split())  # argparse wraps the lines
    for name, module_name in COMMANDS.items():
        assert f" {name} {_summary(module_name)}" in top
    evaluations = build_parser(["eval", "--help"])._subparsers._group_actions[0].choices["eval"].format_help()
    assert all(name in evaluations for name in EVAL_COMMANDS)


def test_the_cli_defaults_are_the_library_defaults():
    """The command modules repeat a few constants of modules they import only where they run."""
    from swat.cli import data, demo, options, reproduce
    from swat.data.prepare import DEFAULT_VOCAB_SIZE
    from swat.data.sources import DEFAULT_HELDOUT_FRACTION
    from swat.evaluation.results import OUTPUT_KINDS
    from swat.experiments.reproduce import BUDGETS
    from swat.models import PRESETS
    from swat.models.loading import DTYPES

    assert (data.DEFAULT_VOCAB_SIZE, data.DEFAULT_HELDOUT_FRACTION) == (DEFAULT_VOCAB_SIZE, DEFAULT_HELDOUT_FRACTION)
    assert tuple(DTYPES) == options.DTYPE_NAMES
    assert set(PRESETS) == set(demo.PRESET_NAMES) and set(BUDGETS) == set(reproduce.BUDGET_NAMES)
    assert OUTPUT_KINDS == reproduce.OUTPUT_KINDS


REGISTERED = ("from transformers import AutoConfig, AutoModelForCausalLM\n"
              "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
              "from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING\n"
              "import swat\n"
              "assert CONFIG_MAPPING['swat'] is swat.SWATConfig\n"
              "assert MODEL_FOR_CAUSAL_LM_MAPPING[swat.SWATConfig] is swat.SWATForCausalLM\n")


@pytest.mark.parametrize("first", [
    "import swat, sys; assert 'torch' not in sys.modules and 'transformers' not in sys.modules",
    "import transformers.models.auto.modeling_auto; import swat",  # the Auto classes before swat
    "import swat; from transformers import PreTrainedModel",  # imports the Auto classes while it loads
    "import swat.layers.attention",  # a swat module that loads transformers while it is imported
    "import swat; from transformers import AutoTokenizer",
], ids=["swat-first", "transformers-first", "modeling-utils", "swat-submodule", "tokenizer"])
def test_import_swat_registers_with_the_auto_classes(first):
    done = _python(f"{first}\n{REGISTERED}")
    assert done.returncode == 0, done.stderr


def test_the_tokenizer_of_a_model_directory_loads_without_a_prompt(tmp_path):
    """AutoTokenizer reads config.json first, whose auto_map (the directory's own code) makes
    transformers ask whether to run it, unless the model type is registered: ``import swat`` does that
    (lazily), and tokenizer_config.json names the tokenizer's class."""
    from swat import SWATForCausalLM
    from tests.conftest import tiny_config
    from tests.evaluation.conftest import make_tokenizer

    tokenizer = make_tokenizer("the king and the queen walk to the castle " * 20, vocab_size=280)
    SWATForCausalLM(tiny_config(vocab_size=len(tokenizer))).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert "tokenizer_class" in json.loads((tmp_path / "tokenizer_config.json").read_text())
    code = ("import builtins, sys\n"
            "def prompted(*args):\n    raise SystemExit('asked: ' + ' '.join(map(str, args))[-80:])\n"
            "builtins.input = prompted\n"
            "import swat\nfrom transformers import AutoTokenizer\n"
            "tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])\n"
            "print(tokenizer.decode(tokenizer('the queen')['input_ids']))")
    done = _python(code, str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("the queen")
