"""The SWAT language model, top to bottom: token embeddings -> decoder layers (pre-norm SWAT
attention and SwiGLU MLP, Llama's blocks) -> final RMSNorm -> LM head.

Weight names follow Llama's, so Llama/Mistral checkpoints map one to one onto the softmax
baseline configs (tests copy weights across and compare logits). The KV cache and the chunked
forward that fills it are in :mod:`swat.models.cache`; what differs between transformers
releases is in :mod:`swat.models.compat`.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation.stopping_criteria import MaxLengthCriteria, StoppingCriteriaList
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils.generic import can_return_tuple

from swat.errors import UserError
from swat.layers import GatedMLP, RMSNorm, SWATAttention, rope_cos_sin
from swat.models.cache import PREFILL_CHUNK_SIZE, RollingCache, forward_in_chunks
from swat.models.compat import CACHE_FIELD, cache_argument, model_output, output_cache
from swat.models.configuration_swat import SWATConfig
from swat.models.hub import AUTO_MAP, write_remote_code
from swat.models.loss import IGNORE_INDEX, causal_lm_head_loss, causal_lm_loss


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
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention, weights = self.self_attn(self.input_layernorm(hidden_states), position_embeddings, cache=cache,
                                            segment_ids=segment_ids, output_attentions=output_attentions)
        hidden_states = hidden_states + attention
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states)), weights


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
        config.validate()
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(SWATDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        segment_ids: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
    ) -> BaseModelOutputWithPast:
        """Hugging Face's decoder forward; ``cache`` and ``past_key_values`` are two names of the
        same argument (see :mod:`swat.models.compat`). Besides the usual arguments,
        ``segment_ids`` restricts attention to keys of the query's own segment (packed
        documents). Inputs are checked in :meth:`check_inputs`; positions and segments are set
        in :meth:`positions_and_segments`, where their contract is written."""
        cache = cache_argument(cache, past_key_values)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if not use_cache:
            cache = None
        elif cache is None:
            cache = RollingCache(self.config)
        past = 0 if cache is None else cache.get_seq_length()
        self.check_inputs(input_ids, inputs_embeds, past)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        position_ids, segment_ids = self.positions_and_segments(
            inputs_embeds, past, attention_mask, position_ids, segment_ids
        )
        position_embeddings = None
        if self.config.use_rope:
            position_embeddings = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta,
                                               inputs_embeds.dtype)

        hidden_states = inputs_embeds
        all_hidden_states = [] if output_hidden_states else None  # each layer's input, kept only when asked:
        all_attentions = [] if output_attentions else None  # otherwise a layer's input is freed after it
        for layer in self.layers:
            if all_hidden_states is not None:
                all_hidden_states.append(hidden_states)
            hidden_states, weights = layer(hidden_states, position_embeddings, cache=cache, segment_ids=segment_ids,
                                           output_attentions=output_attentions)
            if all_attentions is not None:
                all_attentions.append(weights)
        hidden_states = self.norm(hidden_states)
        return model_output(
            BaseModelOutputWithPast,
            cache,
            last_hidden_state=hidden_states,
            hidden_states=(*all_hidden_states, hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )

    def check_inputs(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, past: int) -> None:
        """Refuse inputs the layers would misread, with what to change: exactly one of
        ``input_ids`` (integer ``[batch, seq]``, ids in ``0 .. vocab_size - 1``) and
        ``inputs_embeds`` (``[batch, seq, hidden_size]``), at least one token.

        The ids' range is read on the host where that costs nothing to the device's queue: on
        the CPU, and on an accelerator outside autograd (a prefill, an evaluation). It is not
        read in a decoding step (one token per row after ``past > 0`` cached ones), whose ids
        come from the model's own logits, nor in a training forward on an accelerator, where it
        would make every step wait for the device (there the embedding itself refuses them), nor
        under ``torch.compile`` (a read of values would split the graph; the compiled embedding
        checks its indices)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise UserError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is not None:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
                raise UserError(f"inputs_embeds must be [batch, seq, hidden_size] = [batch, seq, "
                                f"{self.config.hidden_size}], got shape {tuple(inputs_embeds.shape)}")
            tokens = inputs_embeds.shape[1]
        else:
            if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
                raise UserError(f"input_ids must be integer token ids (torch.long), got {input_ids.dtype}; "
                                "pass vectors as inputs_embeds")
            if input_ids.dim() != 2:
                raise UserError(f"input_ids must be 2-D [batch, seq], got shape {tuple(input_ids.shape)}"
                                + ("; add the batch dimension: input_ids[None]" if input_ids.dim() == 1 else ""))
            tokens = input_ids.shape[1]
            decoding = past > 0 and tokens == 1
            free_to_read = ((input_ids.device.type == "cpu" or not torch.is_grad_enabled())
                            and not torch.compiler.is_compiling())
            if input_ids.numel() and not decoding and free_to_read:
                low, high = torch.stack(torch.aminmax(input_ids)).tolist()  # one read of the device
                if low < 0 or high >= self.config.vocab_size:
                    raise UserError(
                        f"input_ids must lie in 0 .. vocab_size - 1 = {self.config.vocab_size - 1}, got ids from "
                        f"{low} to {high}: tokenize with the model's tokenizer, or build the model with a "
                        "vocab_size that covers the tokenizer"
                    )
        batch = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        if tokens == 0 or batch == 0:
            raise UserError(f"the input is empty (batch {batch}, seq {tokens}): pass at least one row of at least "
                            "one token")

    @staticmethod
    def positions_and_segments(
        inputs_embeds: torch.Tensor,
        past: int,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        segment_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The position ids ``[batch or 1, seq]`` of the new tokens and the segment ids
        ``[batch, past + seq]`` of the whole history (``None``: one segment), for a forward of
        ``seq`` new tokens after ``past`` tokens already in the cache.

        - ``position_ids``: as given, else ``past .. past + seq - 1``. RoPE and ALiBi see only
          differences of positions (docs/spec.md section 2), so left padding need not be skipped.
        - ``attention_mask [batch, past + seq]``: 1 for tokens, 0 for padding, over the cached
          tokens and the new ones (as ``generate`` passes it). It becomes the segment ids, so
          padding is never attended and a token never attends to padding.
        - ``segment_ids [batch, past + seq]``: a query sees only keys of its own segment.

        Only shapes are checked (no value is read on the host, so a decoding step never waits
        for the device). Each layer's keys are the most recent ones, so it takes the last entries.
        """
        batch, seq = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=inputs_embeds.device)[None]
        elif position_ids.dim() != 2 or position_ids.shape[0] not in (1, batch) or position_ids.shape[1] != seq:
            raise UserError(f"position_ids must be [batch or 1, seq] = [{batch} or 1, {seq}] (one per new token), "
                            f"got shape {tuple(position_ids.shape)}; or leave them out to number from {past}")
        if attention_mask is not None:
            if segment_ids is not None:
                raise UserError("pass attention_mask (padding) or segment_ids (packed documents), not both")
            if attention_mask.dim() != 2:
                raise UserError(f"attention_mask must be 2-D [batch, past + seq] of 1 (token) and 0 (padding), "
                                f"got shape {tuple(attention_mask.shape)}; pass segment_ids for other patterns")
            segment_ids = attention_mask.long()
        if segment_ids is not None and tuple(segment_ids.shape) != (batch, past + seq):
            name = "segment_ids" if attention_mask is None else "attention_mask"
            raise UserError(f"{name} must cover the {past} cached tokens and the {seq} new ones: shape "
                            f"[batch, past + seq] = [{batch}, {past + seq}], got {tuple(segment_ids.shape)}; pass "
                            f"one entry per token so far, cached and new, as generate does")
        return position_ids, segment_ids


class SWATForCausalLM(SWATPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    accepts_loss_kwargs = True  # transformers' Trainer passes num_items_in_batch (the forward has no **kwargs)

    def __init__(self, config: SWATConfig) -> None:
        super().__init__(config)
        self.model = SWATModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @can_return_tuple
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
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        shift_labels: torch.LongTensor | None = None,
        skip_logits: bool | None = None,
        tokenizer: object | None = None,
    ) -> CausalLMOutputWithPast:
        """Causal LM forward (arguments as :meth:`SWATModel.forward`). ``logits_to_keep``: logits
        of the last ``n`` positions only (0 = all), or of the positions a tensor lists. With
        ``labels`` (the input ids, ``-100`` where no loss is wanted; or ``shift_labels``, already
        shifted) the loss is :func:`swat.models.loss.causal_lm_loss` (``num_items_in_batch`` as in
        transformers' gradient accumulation), computed with the LM head chunk by chunk
        (:func:`swat.models.loss.causal_lm_head_loss`), so that the ``[tokens, vocab]`` logits never
        exist. ``skip_logits``: whether to leave ``logits`` out (``None``); by default (as Liger's
        fused loss in transformers' Trainer) they are left out when a loss is computed in training
        mode, and returned in eval mode and without labels (``generate``, evaluation, metrics).

        The arguments are exactly these (no ``**kwargs``), so a misspelt one is a ``TypeError``
        rather than silently ignored; they cover what ``generate``, transformers' ``Trainer`` and
        pipelines, and lm-evaluation-harness pass (``return_dict`` is taken by
        ``can_return_tuple``). ``tokenizer``: what ``generate`` hands every model with
        ``stop_strings``; unused."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache_argument(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            segment_ids=segment_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden_states = hidden_states[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden_states = hidden_states[:, logits_to_keep]
        with_loss = labels is not None or shift_labels is not None
        loss = logits = None
        if with_loss:
            loss = causal_lm_head_loss(hidden_states, self.lm_head.weight, labels, shift_labels=shift_labels,
                                       num_items_in_batch=num_items_in_batch)
        if skip_logits is None:
            skip_logits = self.training and with_loss
        if not skip_logits:
            logits = self.lm_head(hidden_states)
        return model_output(CausalLMOutputWithPast, output_cache(outputs), loss=loss, logits=logits,
                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)

    def loss_function(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor | None,
        *,
        num_items_in_batch: torch.Tensor | int | None = None,
        ignore_index: int = IGNORE_INDEX,
        shift_labels: torch.Tensor | None = None,
        **unused,
    ) -> torch.Tensor:
        """Hugging Face's ``loss_function`` hook (transformers' trainer may call it with
        ``vocab_size`` among ``unused``): :func:`swat.models.loss.causal_lm_loss`."""
        return causal_lm_loss(logits, labels, num_items_in_batch=num_items_in_batch, ignore_index=ignore_index,
                              shift_labels=shift_labels)

    def _prepare_cache_for_generation(self, generation_config, model_kwargs: dict, *args, **kwargs) -> None:
        """``generate``'s cache hook: a :class:`RollingCache` unless the caller passed a cache or
        chose a ``cache_implementation``."""
        given = model_kwargs.get(CACHE_FIELD)
        super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        default = generation_config.cache_implementation in (None, "dynamic")
        if given is None and default and type(model_kwargs.get(CACHE_FIELD)) is DynamicCache:
            model_kwargs[CACHE_FIELD] = RollingCache(self.config)

    def _prepare_generated_length(self, generation_config, has_default_max_length: bool, has_default_min_length: bool,
                                  model_input_name: str, input_ids_length: int, inputs_tensor: torch.Tensor):
        """``generate``'s length hook, without the position limit for a windowed model (see
        :meth:`_get_stopping_criteria`): transformers caps its default length (the prompt and 20
        new tokens) at ``config.max_position_embeddings``, and then refuses a longer prompt."""
        default_new_tokens = generation_config.max_length
        generation_config = super()._prepare_generated_length(
            generation_config, has_default_max_length, has_default_min_length, model_input_name, input_ids_length,
            inputs_tensor)
        if self.config.sliding_window is not None and has_default_max_length and generation_config.max_new_tokens is None:
            generation_config.max_length = default_new_tokens + input_ids_length
        return generation_config

    def _get_stopping_criteria(self, *args, **kwargs) -> StoppingCriteriaList:
        """``generate``'s stopping criteria, without the position limit for a windowed model:
        transformers warns once a sequence is longer than ``config.max_position_embeddings`` ("you
        may observe exceptions"), but a window model takes any length (docs/spec.md section 4:
        the rolling cache keeps ``w - 1`` keys, RoPE angles are float64, ALiBi sees distances
        below ``w``). ``max_position_embeddings`` stays the context that evaluation tools give the
        model by default; with full attention it is the limit, as in transformers."""
        criteria = super()._get_stopping_criteria(*args, **kwargs)
        if self.config.sliding_window is not None:
            for criterion in criteria:
                if isinstance(criterion, MaxLengthCriteria):
                    criterion.max_position_embeddings = None
        return criteria

    def _prefill(self, input_ids, generation_config, model_kwargs: dict, is_first_iteration: bool = True, **kwargs):
        """``generate``'s prompt pass: a new prompt goes through :func:`swat.models.cache.forward_in_chunks`
        in chunks of ``prefill_chunk_size`` tokens (``PREFILL_CHUNK_SIZE`` unless the generation
        config sets it), so a long prompt never needs memory proportional to its length
        (docs/spec.md section 4). Prompts given as embeddings, and generation that continues a
        filled cache, take transformers' own path."""
        cache = model_kwargs.get(CACHE_FIELD)
        if (cache is None or cache.get_seq_length() > 0 or not is_first_iteration
                or model_kwargs.get("inputs_embeds") is not None):
            return super()._prefill(input_ids, generation_config, model_kwargs, is_first_iteration, **kwargs)
        passed = {name: value for name, value in model_kwargs.items()
                  if name not in ("attention_mask", "position_ids", "use_cache", CACHE_FIELD)}

        def forward(**chunk):
            inputs = self.prepare_inputs_for_generation(**chunk, **passed, is_first_iteration=True)
            return self(**inputs, return_dict=True)

        chunks = forward_in_chunks(
            forward, input_ids, chunk_size=generation_config.prefill_chunk_size or PREFILL_CHUNK_SIZE, cache=cache,
            attention_mask=model_kwargs.get("attention_mask"), position_ids=model_kwargs.get("position_ids"),
        )
        _, outputs = deque(chunks, maxlen=1).pop()  # run every chunk, keep the last one's outputs
        return outputs
