"""Shared fixtures: a small text, a byte-level BPE tokenizer trained on it, tiny saved models."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, Mamba2Config, PreTrainedTokenizerFast

from swat import SWATForCausalLM, preset_config

WORDS = ("the king and queen walk to the castle where a fool sings of love and war while the sky "
         "is blue and the grass is green here we go there and back again what is the pass key "
         "0 1 2 3 4 5 6 7 8 9")


def make_text(num_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = WORDS.split()
    lines, line = [], []
    for _ in range(num_words):
        line.append(rng.choice(words))
        if len(line) == 12:
            lines.append(" ".join(line) + ".")
            line = []
    return "\n".join(lines) + "\n"


def make_tokenizer(text: str, vocab_size: int = 320) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([text], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")


def tiny_config(vocab_size: int, **overrides):
    settings = dict(vocab_size=vocab_size, num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                    num_attention_heads=4, sliding_window=16, max_position_embeddings=128)
    return preset_config("tiny", **{**settings, **overrides})


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
