"""Training: configs and presets, the window sampler, AdamW + schedule, checkpoints, the loop."""

from swat.training.config import TrainConfig, load_config, preset_names
from swat.training.trainer import NonFiniteLossError, Trainer, train

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "load_config", "preset_names", "train"]
