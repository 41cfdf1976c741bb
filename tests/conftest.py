"""Shared test fixtures, each defined once: the tiny model config and model, the text and
tokenizer makers, and a prepared data directory."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from swat import SWATConfig, SWATForCausalLM
from swat.data.shards import write_split

EOS = "<|endoftext|>"
WORDS = ("the king and queen walk to the castle where a fool sings of love and war while the sky "
         "is blue and the grass is green here we go there and back again what is the pass key "
         "0 1 2 3 4 5 6 7 8 9")


def tiny_config(vocab_size: int = 97, **overrides) -> SWATConfig:
    """A model small enough for float64 tests in milliseconds."""
    fields = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, sliding_window=8)
    fields.update(overrides)
    return SWATConfig(**fields)


def tiny_model(**overrides) -> SWATForCausalLM:
    """``tiny_config``'s model in float64 and eval mode, for comparisons to 1e-10."""
    return SWATForCausalLM(tiny_config(**overrides)).double().eval()


def make_text(num_words: int = 200, seed: int = 0) -> str:
    """Deterministic random words, twelve to a line, each line ending with a full stop."""
    rng = random.Random(seed)
    words = WORDS.split()
    lines, line = [], []
    for _ in range(num_words):
        line.append(rng.choice(words))
        if len(line) == 12:
            lines.append(" ".join(line) + ".")
            line = []
    return "\n".join(lines) + "\n"


def make_tokenizer(texts: str | list[str], vocab_size: int = 320, min_frequency: int = 0) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2's pre-tokenisation) trained on ``texts``, with ``EOS`` as its one special token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator([texts] if isinstance(texts, str) else texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS)


def repetitive_documents(count: int, seed: int) -> list[str]:
    """Short, highly predictable English-like documents: a model learns them in a few steps."""
    rng = random.Random(seed)
    animals, places = ["cat", "dog", "bird", "fox"], ["mat", "log", "hill", "box"]
    docs = []
    for _ in range(count):
        lines = [f"the {rng.choice(animals)} sat on the {rng.choice(places)}." for _ in range(rng.randint(3, 8))]
        docs.append(" ".join(lines))
    return docs


def make_data_dir(path: Path, *, vocab_size: int = 300) -> Path:
    """Train and held-out splits of ``repetitive_documents`` as token shards, with their tokenizer.
    The held-out split is 582 tokens: more than the 16 x 32 that tests/experiments evaluate, fewer
    than the 600 that tests/training/test_trainer.py expects to exceed it."""
    train, heldout = repetitive_documents(60, seed=1), repetitive_documents(15, seed=2)
    tokenizer = make_tokenizer(train, vocab_size=vocab_size, min_frequency=2)
    tokenizer.save_pretrained(path / "tokenizer")
    for split, docs in (("train", train), ("heldout", heldout)):
        write_split(path, split, (tokenizer(doc)["input_ids"] for doc in docs), vocab_size=len(tokenizer),
                    eos_token_id=tokenizer.eos_token_id, tokenizer="tokenizer", shard_tokens=1000)
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A prepared data directory (read only: a test that changes it works on a copy)."""
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test runs tiny problems: one thread avoids the synchronisation cost that dominates
    small matmuls (and does not fight other work for the cores on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
