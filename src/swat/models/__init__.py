"""Configs and full models; ``import swat`` registers them with the Auto classes."""

import transformers.processing_utils  # its first import replaces the transformers package object: done first
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from swat.models.cache import RollingCache
from swat.models.configuration_swat import SWATConfig
from swat.models.modeling_swat import SWATForCausalLM, SWATModel, SWATPreTrainedModel
from swat.models.presets import PRESETS, preset_config

AutoConfig.register("swat", SWATConfig, exist_ok=True)
AutoModel.register(SWATConfig, SWATModel, exist_ok=True)
AutoModelForCausalLM.register(SWATConfig, SWATForCausalLM, exist_ok=True)
# `transformers serve` loads a checkpoint by the class its config names, looked up as an attribute of the
# transformers package (there is no registry for that): swat serve relies on it (swat.cli.serve)
for _model_class in (SWATModel, SWATForCausalLM):
    setattr(transformers, _model_class.__name__, _model_class)

__all__ = ["PRESETS", "RollingCache", "SWATConfig", "SWATForCausalLM", "SWATModel", "SWATPreTrainedModel", "preset_config"]
