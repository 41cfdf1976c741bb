"""Run configs of a 2-layer model that trains in well under a second per step, and the losses a
run logged. The data directory they train on is ``tests/conftest.py``'s ``data_dir``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swat.training.metrics import read_metrics


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
