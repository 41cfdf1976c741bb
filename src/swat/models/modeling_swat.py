"""SWATModel and SWATForCausalLM: Llama-style pre-norm decoder blocks with SWAT attention.

Weight names follow Llama's, so Llama/Mistral checkpoints map one to one onto the softmax
baseline configs (tests copy weights across and compare logits).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils.deprecation import deprecate_kwarg

from swat.inference.cache import RollingCache
from swat.inference.streaming import PREFILL_CHUNK_SIZE
from swat.layers import GatedMLP, RMSNorm, SWATAttention, rope_cos_sin
from swat.models.configuration_swat import SWATConfig
from swat.models.hub import AUTO_MAP, write_remote_code


class SWATDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: SWATConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = SWATAttention(config, layer_idx)
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, cache=cache, segment_ids=segment_ids
        )
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class SWATPreTrainedModel(PreTrainedModel):
    config_class = SWATConfig
    config: SWATConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SWATDecoderLayer"]
    _supports_sdpa = False
    _supports_flash_attn = False

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Hugging Face's ``save_pretrained``, plus what lets tools that never ``import swat`` load
        the directory with ``trust_remote_code=True`` (``auto_map`` and its modules, see
        :mod:`swat.models.hub`)."""
        self.config.auto_map = AUTO_MAP
        super().save_pretrained(save_directory, *args, **kwargs)
        write_remote_code(save_directory)


class SWATModel(SWATPreTrainedModel):
    def __init__(self, config: SWATConfig) -> None:
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(SWATDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        segment_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """Besides Hugging Face's usual arguments, ``segment_ids [batch, past + seq]`` restricts
        attention to keys of the same segment (packed documents). Without it, a 2-D
        ``attention_mask`` with zeros (padding) is used as segments: padding is never attended."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if use_cache and cache is None:
            cache = RollingCache(self.config)
        if not use_cache:
            cache = None
        if position_ids is None:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(past, past + inputs_embeds.shape[1], device=inputs_embeds.device)
            position_ids = position_ids.unsqueeze(0).expand(inputs_embeds.shape[0], -1)
        padded = attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask.all())
        if segment_ids is None and padded:
            segment_ids = attention_mask.to(torch.long)

        position_embeddings = None
        if self.config.use_rope:
            position_embeddings = rope_cos_sin(
                position_ids, self.config.head_dim, self.config.rope_theta, inputs_embeds.dtype
            )
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, cache=cache, segment_ids=segment_ids)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden_states), cache=cache)


class SWATForCausalLM(SWATPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: SWATConfig) -> None:
        super().__init__(config)
        self.model = SWATModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        segment_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Causal LM forward. With ``labels`` (``-100`` = ignored), returns the next-token
        cross-entropy (labels are shifted inside, as in every Hugging Face causal LM)."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            segment_ids=segment_ids,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden_states = hidden_states[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden_states = hidden_states[:, logits_to_keep]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache)

    def _prepare_cache_for_generation(self, generation_config, model_kwargs: dict, *args, **kwargs) -> None:
        """``generate``'s cache hook, where a stream gets what SPEC.md section 4 asks: a
        :class:`RollingCache` (unless the caller passed a cache or chose a ``cache_implementation``)
        and, unless ``prefill_chunk_size`` is set, prompts prefilled ``PREFILL_CHUNK_SIZE`` tokens at
        a time, so a long prompt never needs memory proportional to its length."""
        given = model_kwargs.get("cache")
        super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        default = generation_config.cache_implementation in (None, "dynamic")
        if given is None and default and type(model_kwargs.get("cache")) is DynamicCache:
            model_kwargs["cache"] = RollingCache(self.config)
        chunkable = model_kwargs.get("cache") is not None and model_kwargs.get("inputs_embeds") is None
        if generation_config.prefill_chunk_size is None and chunkable:
            generation_config.prefill_chunk_size = PREFILL_CHUNK_SIZE
