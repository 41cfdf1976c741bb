"""Shared fixtures: a small text, a byte-level BPE tokenizer trained on it, tiny saved models."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Mamba2Config, PreTrainedTokenizerFast

from swat import SWATForCausalLM
from tests.conftest import make_text, make_tokenizer
from tests.conftest import tiny_config as shared_tiny_config

# The evaluation tests' models: tiny_config with a window of 16, 128 positions and no GQA.
tiny_config = functools.partial(shared_tiny_config, num_key_value_heads=4, sliding_window=16,
                                max_position_embeddings=128)


def save_model(path, tokenizer, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id, **overrides)
    model = SWATForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def read_outputs(out: Path, name: str) -> tuple[Any, str]:
    """The data and the Markdown an evaluation wrote into ``out``, once its PNG is checked to be one."""
    assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    return json.loads((out / f"{name}.json").read_text()), (out / f"{name}.md").read_text()


@pytest.fixture(scope="session")
def text() -> str:
    return make_text(3000)


@pytest.fixture(scope="session")
def tokenizer(text) -> PreTrainedTokenizerFast:
    return make_tokenizer(text)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("text") / "heldout.txt"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def swat_dir(tmp_path_factory, tokenizer):
    return save_model(tmp_path_factory.mktemp("models") / "swat", tokenizer)


@pytest.fixture(scope="session")
def softmax_dir(tmp_path_factory, tokenizer):
    return save_model(tmp_path_factory.mktemp("models") / "transformer", tokenizer, seed=1,
                      attention_activation="softmax", alibi="none", sliding_window=None)


def save_transformers_model(path, tokenizer, config_class, **fields):
    """A tiny transformers model of another type (sizes of tests/training/test_transformers_models.py)."""
    torch.manual_seed(0)
    config = config_class(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, **fields)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def mamba2_dir(tmp_path_factory, tokenizer):
    return save_transformers_model(tmp_path_factory.mktemp("models") / "mamba2", tokenizer, Mamba2Config,
                                   hidden_size=32, num_hidden_layers=2, state_size=16, head_dim=16, n_groups=1,
                                   expand=2, num_heads=4, chunk_size=16)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, tokenizer):
    return save_transformers_model(tmp_path_factory.mktemp("models") / "llama", tokenizer, LlamaConfig,
                                   hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=256)
