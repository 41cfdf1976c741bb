"""Tiny prepared data directories (token shards + a byte-level BPE tokenizer) and run configs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

from swat.data.shards import write_split
from swat.training.metrics import read_metrics

EOS = "<|endoftext|>"


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
    train, heldout = repetitive_documents(60, seed=1), repetitive_documents(12, seed=2)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(train, vocab_size=vocab_size, special_tokens=[EOS], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS)
    tokenizer.save_pretrained(path / "tokenizer")
    eos = tokenizer.eos_token_id
    for split, docs in (("train", train), ("heldout", heldout)):
        write_split(path, split, (tokenizer(doc)["input_ids"] for doc in docs), vocab_size=len(tokenizer),
                    eos_token_id=eos, tokenizer="tokenizer", shard_tokens=1000)
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def run_config(data_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config dict of a 2-layer model that trains in well under a second per step."""
    config = {
        "name": "test",
        "model": {"preset": "tiny", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "sliding_window": 8},
        "data": {"dir": str(data_dir), "seq_len": 32},
        "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 2},
        "train": {"steps": 6, "batch_size": 4, "micro_batch_size": 2, "device": "cpu", "bf16": False},
        "eval": {"every": 3, "windows": 4, "batch_size": 2},
        "checkpoint": {"every": 2, "keep_last": 2},
        "log": {"every": 1},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config



def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, training loss) of every record of a run's metrics.jsonl."""
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if "loss" in r]


def eval_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, held-out loss) of every evaluation record of a run's metrics.jsonl."""
    return [(r["step"], r["eval_loss"]) for r in read_metrics(run_dir) if "eval_loss" in r]
