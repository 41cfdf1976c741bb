"""Configs and full models; ``import swat`` registers them with the Auto classes."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from swat.models.cache import RollingCache
from swat.models.configuration_swat import SWATConfig
from swat.models.modeling_swat import SWATForCausalLM, SWATModel, SWATPreTrainedModel
from swat.models.presets import PRESETS, preset_config

AutoConfig.register("swat", SWATConfig, exist_ok=True)
AutoModel.register(SWATConfig, SWATModel, exist_ok=True)
AutoModelForCausalLM.register(SWATConfig, SWATForCausalLM, exist_ok=True)

__all__ = ["PRESETS", "RollingCache", "SWATConfig", "SWATForCausalLM", "SWATModel", "SWATPreTrainedModel", "preset_config"]
