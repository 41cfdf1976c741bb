"""A tiny prepared data directory, and training overrides that make a run take a second."""

from __future__ import annotations

import pytest

from swat.data.shards import write_split
from tests.evaluation.conftest import make_text, make_tokenizer

SMALL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=2",
         "model.num_attention_heads=4", "model.sliding_window=8", "data.seq_len=32", "train.batch_size=4",
         "train.micro_batch_size=2", "train.device=cpu", "train.bf16=false", "eval.windows=2", "eval.batch_size=2"]


@pytest.fixture(scope="package")
def data_dir(tmp_path_factory):
    """Train and held-out splits of random words, tokenised with a BPE trained on them."""
    tokenizer = make_tokenizer(make_text(3000))
    path = tmp_path_factory.mktemp("data")
    tokenizer.save_pretrained(path / "tokenizer")
    for split, seed, count in (("train", 1, 20), ("heldout", 2, 3)):
        docs = [tokenizer(make_text(400, seed=seed * 100 + i))["input_ids"] for i in range(count)]
        write_split(path, split, docs, vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                    tokenizer="tokenizer")
    return path
