"""Training overrides that make a run take a second (the data: ``tests/conftest.py``'s ``data_dir``)."""

from __future__ import annotations

SMALL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=2",
         "model.num_attention_heads=4", "model.sliding_window=8", "data.seq_len=32", "train.batch_size=4",
         "train.micro_batch_size=2", "train.device=cpu", "train.bf16=false", "eval.windows=2", "eval.batch_size=2"]

