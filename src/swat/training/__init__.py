"""Training: configs and presets, the window sampler, AdamW + schedule, checkpoints, the loop."""

from swat.training.config import TrainConfig, load_config, preset_names
from swat.training.run_dir import RunDir
from swat.training.trainer import NonFiniteLossError, Trainer, train, window_loss

__all__ = ["NonFiniteLossError", "RunDir", "TrainConfig", "Trainer", "load_config", "preset_names", "train",
           "window_loss"]
