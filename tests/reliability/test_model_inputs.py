"""Bad input to the model's Python API (``SWATConfig``, a saved ``config.json``, the forward,
``generate``): each row is an input, the exception it must raise and a message that says what to
change, never an error from deep inside torch (an ``IndexError`` of the embedding, say)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from swat import SWATForCausalLM
from swat.errors import UserError
from swat.models.cache import RollingCache
from tests.conftest import tiny_config

VOCAB = 97  # tiny_config's


@dataclass
class Row:
    id: str
    call: Callable[[SWATForCausalLM, Path], object]  # given a tiny model and a temporary directory
    error: type[Exception]
    message: str  # a regular expression the message must match


def _config(**fields) -> Callable[[SWATForCausalLM, Path], object]:
    return lambda model, tmp: tiny_config(**fields)


@pytest.fixture(scope="module")
def model() -> SWATForCausalLM:
    torch.manual_seed(0)
    return SWATForCausalLM(tiny_config()).eval()


def _forward(*args, **kwargs) -> Callable[[SWATForCausalLM, Path], object]:
    return lambda model, tmp: model(*args, **kwargs)


def _load_config_json(**changes) -> Callable[[SWATForCausalLM, Path], object]:
    """Save a valid config, edit its config.json, load it as transformers does."""
    def call(model: SWATForCausalLM, tmp: Path) -> object:
        tiny_config().save_pretrained(tmp)
        saved = json.loads((tmp / "config.json").read_text())
        (tmp / "config.json").write_text(json.dumps({**saved, **changes}))
        return AutoConfig.from_pretrained(tmp)
    return call


def _model_from_changed_config(**changes) -> Callable[[SWATForCausalLM, Path], object]:
    """Fields assigned after the config was made are checked as they are assigned; the rules
    across fields, when a model is built from it."""
    def call(model: SWATForCausalLM, tmp: Path) -> object:
        config = tiny_config()
        for name, value in changes.items():
            setattr(config, name, value)
        return SWATForCausalLM(config)
    return call


def _decode_after_prefill(mask_length: int) -> Callable[[SWATForCausalLM, Path], object]:
    def call(model: SWATForCausalLM, tmp: Path) -> object:
        cache = RollingCache(model.config)
        model(torch.ones(1, 6, dtype=torch.long), cache=cache)
        return model(torch.ones(1, 1, dtype=torch.long), cache=cache, attention_mask=torch.ones(1, mask_length))
    return call


IDS = torch.ones(2, 8, dtype=torch.long)

ROWS = [
    # SWATConfig: sizes, window, numbers, token ids, memory, spelling
    Row("hidden-size-0", _config(hidden_size=0), UserError, r"hidden_size must be an int >= 1, got 0"),
    Row("vocab-size-negative", _config(vocab_size=-5), UserError, r"vocab_size must be an int >= 1, got -5"),
    Row("layers-0", _config(num_hidden_layers=0), UserError, r"num_hidden_layers must be an int >= 1, got 0"),
    Row("heads-0", _config(num_attention_heads=0), UserError, r"num_attention_heads must be an int >= 1, got 0"),
    Row("kv-heads-negative", _config(num_key_value_heads=-2), UserError,
        r"num_key_value_heads must be an int >= 1, got -2"),
    Row("intermediate-size-float", _config(intermediate_size=64.5), UserError,
        r"intermediate_size must be an int >= 1, got 64.5"),
    Row("window-float", _config(sliding_window=8.0), UserError,
        r"sliding_window must be an int >= 1 or None \(full attention\), got 8.0"),
    Row("window-bool", _config(sliding_window=True), UserError, r"sliding_window must be an int >= 1 or None"),
    Row("sigmoid-bias-nan", _config(sigmoid_bias=float("nan")), UserError,
        r"sigmoid_bias must be a finite number .*got nan"),
    Row("sigmoid-bias-inf", _config(sigmoid_bias=float("-inf")), UserError,
        r"sigmoid_bias must be a finite number .*got -inf"),
    Row("rope-theta-negative", _config(rope_theta=-10000.0), UserError,
        r"rope_theta must be a finite number > 0, got -10000.0"),
    Row("rope-theta-0", _config(rope_theta=0), UserError, r"rope_theta must be a finite number > 0, got 0"),
    Row("rms-norm-eps-0", _config(rms_norm_eps=0.0), UserError, r"rms_norm_eps must be a finite number > 0"),
    Row("rms-norm-eps-negative", _config(rms_norm_eps=-1e-6), UserError,
        r"rms_norm_eps must be a finite number > 0"),
    Row("alibi-retain-scale-nan", _config(alibi_retain_scale=float("nan")), UserError,
        r"alibi_retain_scale must be a finite number"),
    Row("eos-outside-vocab", _config(eos_token_id=VOCAB), UserError,
        r"eos_token_id must be None or token ids in 0 \.\. vocab_size - 1 = 96, got 97: take it from the tokenizer"),
    Row("eos-list-outside-vocab", _config(eos_token_id=[3, 500]), UserError, r"eos_token_id must be None or token"),
    Row("pad-negative", _config(pad_token_id=-1), UserError, r"pad_token_id must be None or token ids in 0 \.\."),
    Row("embedding-too-large", _config(vocab_size=50_000_000, hidden_size=256, intermediate_size=64), UserError,
        r"12,800,000,000 embedding parameters \(47\.7 GiB in float32.*set vocab_size to the tokenizer's "
        r"vocabulary size, or a smaller hidden_size"),
    Row("misspelt-key", _config(sliding_windw=64), UserError,
        r"unknown field\(s\) 'sliding_windw' \(did you mean 'sliding_window'\?\): fix the spelling or remove"),
    Row("unknown-key", _config(zzz=1), UserError, r"unknown field\(s\) 'zzz'.*SWATConfig's fields: vocab_size, "),
    Row("unknown-activation", _config(hidden_act="slu"), UserError, r"hidden_act .* \(did you mean 'silu'\?\)"),
    Row("config-json-misspelt-key", _load_config_json(num_hiden_layers=4), UserError,
        r"'num_hiden_layers' \(did you mean 'num_hidden_layers'\?\)"),
    Row("config-json-window-float", _load_config_json(sliding_window=8.5), UserError,
        r"sliding_window must be an int >= 1 or None"),
    Row("config-json-eos-outside-vocab", _load_config_json(eos_token_id=1000), UserError,
        r"eos_token_id must be None or token ids in 0 \.\. vocab_size - 1 = 96"),
    Row("layers-set-to-0-after-config", _model_from_changed_config(num_hidden_layers=0), UserError,
        r"num_hidden_layers must be an int >= 1, got 0"),
    Row("rope-theta-set-negative-after-config", _model_from_changed_config(rope_theta=-1.0), UserError,
        r"rope_theta must be a finite number > 0"),
    # the forward
    Row("token-id-equals-vocab", _forward(torch.full((1, 4), VOCAB)), UserError,
        r"input_ids must lie in 0 \.\. vocab_size - 1 = 96, got ids from 97 to 97: tokenize with the model's "
        r"tokenizer"),
    Row("token-id-negative", _forward(torch.tensor([[5, -1, 7]])), UserError, r"got ids from -1 to 7: tokenize"),
    Row("token-ids-float", _forward(IDS.float()), UserError,
        r"input_ids must be integer token ids \(torch.long\), got torch.float32; pass vectors as inputs_embeds"),
    Row("token-ids-1d", _forward(IDS[0]), UserError, r"got shape \(8,\); add the batch dimension: input_ids\[None\]"),
    Row("no-tokens", _forward(IDS[:, :0]), UserError, r"pass at least one row of at least one token"),
    Row("no-rows", _forward(IDS[:0]), UserError, r"input is empty \(batch 0, seq 8\): pass at least one row"),
    Row("ids-and-embeddings", _forward(IDS, inputs_embeds=torch.zeros(2, 8, 32)), UserError,
        r"pass exactly one of input_ids or inputs_embeds"),
    Row("embeddings-wrong-width", _forward(inputs_embeds=torch.zeros(2, 8, 7)), UserError,
        r"inputs_embeds must be \[batch, seq, hidden_size\] = \[batch, seq, 32\], got shape \(2, 8, 7\)"),
    Row("mask-longer-than-input", _forward(IDS, attention_mask=torch.ones(2, 10)), UserError,
        r"attention_mask must cover the 0 cached tokens and the 8 new ones: .*\[2, 8\], got \(2, 10\); pass one "
        r"entry per token so far"),
    Row("mask-shorter-than-input", _forward(IDS, attention_mask=torch.ones(2, 5)), UserError,
        r"attention_mask must cover .*got \(2, 5\)"),
    Row("mask-of-new-tokens-only-after-cache", _decode_after_prefill(mask_length=1), UserError,
        r"attention_mask must cover the 6 cached tokens and the 1 new ones: .*\[1, 7\], got \(1, 1\)"),
    Row("mask-other-batch", _forward(IDS, attention_mask=torch.ones(3, 8)), UserError,
        r"attention_mask must cover .*\[2, 8\], got \(3, 8\)"),
    Row("position-ids-wrong-length", _forward(IDS, position_ids=torch.arange(5)[None]), UserError,
        r"position_ids must be \[batch or 1, seq\] = \[2 or 1, 8\].*or leave them out"),
    Row("generate-prompt-outside-vocab", lambda model, tmp: model.generate(torch.full((1, 3), 200), max_new_tokens=2),
        UserError, r"input_ids must lie in 0 \.\. vocab_size - 1 = 96, got ids from 200 to 200"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_model_input_is_refused_with_what_to_change(row, model, tmp_path):
    with torch.no_grad(), pytest.raises(row.error, match=row.message):
        row.call(model, tmp_path)


def test_the_table_is_the_required_size():
    assert len(ROWS) >= 10
    assert len({row.id for row in ROWS}) == len(ROWS)
