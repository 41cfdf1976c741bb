import json
import math
import typing

import pytest
import torch
from transformers import AutoConfig

from swat import PRESETS, SWATConfig, SWATForCausalLM, alibi_slopes, preset_config
from swat.errors import UserError
from swat.models import configuration_swat
from swat.models.configuration_swat import MAX_EMBEDDING_PARAMETERS
from swat.models.hub import AUTO_MAP
from swat.ops import ACTIVATIONS, ALIBI_MODES, BACKEND_NAMES
from tests.conftest import tiny_config


def test_defaults_are_swat():
    config = SWATConfig()
    assert config.attention_activation == "sigmoid"
    assert config.alibi == "balanced"
    assert config.use_rope
    assert config.sliding_window == 512
    assert config.num_key_value_heads == config.num_attention_heads
    assert config.head_dim == config.hidden_size // config.num_attention_heads
    half = config.num_attention_heads // 2  # balanced, the retaining half scaled down: its steepest
    steepest_reward = -config.slopes()[half] * (config.sliding_window - 1)  # slope adds 1 across the window
    assert steepest_reward.item() == pytest.approx(1.0)
    assert config.sigmoid_bias == pytest.approx(-math.log(config.sliding_window))


@pytest.mark.parametrize(("overrides", "bias"), [
    (dict(), -math.log(512)),
    (dict(sliding_window=64), -math.log(64)),
    (dict(sliding_window=1), 0.0),
    (dict(sliding_window=None), 0.0),  # full attention: no fixed number of keys
    (dict(attention_activation="softmax"), 0.0),  # softmax cancels any bias
    (dict(sliding_window=64, sigmoid_bias=0.0), 0.0),  # an explicit value is kept
    (dict(sliding_window=64, sigmoid_bias=-1.5), -1.5),
])
def test_sigmoid_bias_defaults_to_minus_log_window(overrides, bias):
    assert SWATConfig(**overrides).sigmoid_bias == pytest.approx(bias, abs=0)


def test_resolved_sigmoid_bias_survives_save_and_load(tmp_path):
    """The bias is stored resolved, so a loaded model keeps it even if the default changes."""
    tiny_config(sliding_window=64).save_pretrained(tmp_path)
    assert '"sigmoid_bias": -4.1588' in (tmp_path / "config.json").read_text()
    assert AutoConfig.from_pretrained(tmp_path).sigmoid_bias == -math.log(64)


def test_round_trip_through_auto_config(tmp_path):
    config = tiny_config(alibi=[0.5, -0.25, 0.0, 0.125], sigmoid_bias=-2.0, qk_norm=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SWATConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert torch.equal(loaded.slopes(), torch.tensor([0.5, -0.25, 0.0, 0.125]))


def test_slopes_follow_the_alibi_field():
    assert tiny_config(alibi="none").slopes() is None
    assert torch.equal(tiny_config(alibi="standard").slopes(), alibi_slopes(4, "standard"))
    balanced = tiny_config(alibi_retain_scale=0.5).slopes()
    assert torch.allclose(balanced, torch.tensor([0.0625, 0.00390625, -0.03125, -0.001953125]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_attention_heads=4, num_key_value_heads=3), "multiple of num_key_value_heads"),
        (dict(hidden_size=30, num_attention_heads=4), "divisible by num_attention_heads"),
        (dict(sliding_window=0), "sliding_window"),
        (dict(attention_activation="relu"), "attention_activation"),
        (dict(attention_activation="softmax", sigmoid_bias=-1.0), "softmax cancels"),
        (dict(alibi="balanced", num_attention_heads=2, num_key_value_heads=1, hidden_size=30, head_dim=15),
         "head_dim must be even"),
        (dict(alibi="balanced", num_attention_heads=1, num_key_value_heads=1), "even number of heads"),
        (dict(alibi=[0.1, 0.2]), "one slope per attention head"),
        (dict(alibi="sideways"), r"alibi must be one of \('balanced', 'standard', 'none'\) or a list"),
        (dict(attention_backend="sdpa"), "softmax only"),
        (dict(attention_backend="flash"), r"'attention_backend' expected one of \('auto', "),
        (dict(alibi_retain_scale=-1.0), "magnitude"),
    ],
)
def test_invalid_configs_are_rejected_with_a_fix(overrides, message):
    with pytest.raises(UserError, match=message):
        tiny_config(**overrides)


def test_presets_have_the_papers_sizes():
    for name in PRESETS:
        preset_config(name)
    assert preset_config("340m").num_hidden_layers == 24 and preset_config("340m").hidden_size == 1024
    assert preset_config("760m").num_hidden_layers == 24 and preset_config("760m").hidden_size == 1536
    assert preset_config("tiny", sliding_window=32).sliding_window == 32
    with pytest.raises(ValueError, match="unknown model preset"):
        preset_config("huge")


@pytest.mark.parametrize("name, low, high", [("340m", 330e6, 390e6), ("760m", 740e6, 800e6)])
def test_preset_parameter_counts(name, low, high):
    with torch.device("meta"):
        model = SWATForCausalLM(preset_config(name))
    count = sum(p.numel() for p in model.parameters())
    assert low < count < high


def test_keys_transformers_writes_or_passes_still_load(tmp_path):
    """Unknown keys are refused, but not the ones transformers itself writes into config.json or
    passes through ``from_pretrained``, nor the generation parameters older configs carried."""
    tiny_config().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "torch_dtype": "float32", "_name_or_path": "somewhere",
                                "_commit_hash": None, "max_length": 20, "do_sample": False,
                                "architectures": ["SWATForCausalLM"], "auto_map": AUTO_MAP}))
    config = AutoConfig.from_pretrained(tmp_path, output_attentions=True, attn_implementation="eager")
    assert config.to_diff_dict()["sliding_window"] == 8 and config.output_attentions
    SWATForCausalLM(tiny_config()).save_pretrained(tmp_path / "model")
    model = SWATForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float64, output_hidden_states=True)
    assert model.dtype == torch.float64 and model.config.output_hidden_states


def test_a_saved_config_with_a_misspelt_key_names_the_field(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "sigmoid_bais": -2.0}))
    with pytest.raises(UserError, match=r"'sigmoid_bais' \(did you mean 'sigmoid_bias'\?\)"):
        AutoConfig.from_pretrained(tmp_path)


def test_the_embedding_bound_is_inclusive():
    config = SWATConfig(vocab_size=2**21, hidden_size=2**10, intermediate_size=8, num_hidden_layers=1,
                        num_attention_heads=2)
    assert config.vocab_size * config.hidden_size == MAX_EMBEDDING_PARAMETERS
    with pytest.raises(UserError, match="above the 2,147,483,648"):
        SWATConfig(vocab_size=2**21 + 1, hidden_size=2**10, intermediate_size=8, num_hidden_layers=1,
                   num_attention_heads=2)


@pytest.mark.parametrize("fields, message", [
    (dict(use_rope=3), r"Field 'use_rope' expected bool, got int \(value: 3\)"),
    (dict(qk_norm="yes"), r"Field 'qk_norm' expected bool, got str"),
    (dict(attention_activation=1), r"Field 'attention_activation' expected one of \('sigmoid', 'softmax'\)"),
    (dict(alibi=["steep"]), r"Field 'alibi' with value \['steep'\] doesn't match"),
    (dict(rope_theta="10000"), r"rope_theta must be a finite number > 0, got '10000'"),
    (dict(hidden_size=True), r"hidden_size must be an int >= 1, got True"),
    (dict(eos_token_id=[1, 2.0]), r"Field 'eos_token_id' with value \[1, 2.0\] doesn't match"),
])
def test_field_types_are_checked(fields, message):
    """The annotations are real types (not strings), so huggingface_hub's strict validation checks
    them; a field with its own validator says what it must be."""
    with pytest.raises(UserError, match=r"^invalid SWATConfig: " + message):
        tiny_config(**fields)


@pytest.mark.parametrize("name, value, message", [
    ("use_rope", "no", r"Field 'use_rope' expected bool, got str"),
    ("sliding_window", 0, r"sliding_window must be an int >= 1 or None \(full attention\), got 0"),
    ("sigmoid_bias", float("inf"), r"sigmoid_bias must be a finite number"),
    ("attention_backend", "cuda", r"'attention_backend' expected one of"),
])
def test_assignment_after_construction_is_checked(name, value, message):
    config = tiny_config()
    with pytest.raises(UserError, match=message):
        setattr(config, name, value)
    assert getattr(config, name) == getattr(tiny_config(), name)  # the refused value is not kept


def test_rules_across_fields_are_checked_when_a_model_is_built():
    """A field assigned on its own can break a rule between fields (``validate_*``); the model
    refuses such a config."""
    config = tiny_config(sliding_window=64, attention_activation="softmax", sigmoid_bias=0.0)
    config.sigmoid_bias = -1.0
    with pytest.raises(UserError, match="softmax cancels"):
        SWATForCausalLM(config)


def test_numbers_may_be_ints():
    config = tiny_config(rope_theta=10000, rms_norm_eps=1, sigmoid_bias=-2, alibi=[1, 0, 0, 0], initializer_range=0)
    assert config.rope_theta == 10000 and config.alibi == [1, 0, 0, 0]


def test_the_enumerations_are_the_ops():
    assert typing.get_args(configuration_swat.AttentionActivation) == ACTIVATIONS
    assert typing.get_args(configuration_swat.AlibiMode) == ALIBI_MODES
    assert typing.get_args(configuration_swat.AttentionBackend) == BACKEND_NAMES


def test_a_config_saved_by_an_earlier_version_loads(tmp_path):
    """What ``save_pretrained`` wrote before the fields were typed: ints where floats are meant,
    generation parameters, transformers' bookkeeping."""
    saved = {
        "alibi": [0.5, -0.25, 0, 1], "alibi_retain_scale": 0.03131115459882583, "architectures": ["SWATForCausalLM"],
        "attention_activation": "sigmoid", "attention_backend": "auto", "auto_map": AUTO_MAP, "bos_token_id": None,
        "dtype": "float32", "eos_token_id": [1, 2], "head_dim": 8, "hidden_act": "silu", "hidden_size": 32,
        "initializer_range": 0.02, "intermediate_size": 16, "max_position_embeddings": 2048, "model_type": "swat",
        "num_attention_heads": 4, "num_hidden_layers": 1, "num_key_value_heads": 4, "pad_token_id": None,
        "qk_norm": True, "rms_norm_eps": 1e-06, "rope_theta": 10000, "sigmoid_bias": -2, "sliding_window": 512,
        "tie_word_embeddings": False, "transformers_version": "5.25.0", "use_cache": True, "use_rope": True,
        "vocab_size": 50, "max_length": 20, "torch_dtype": "float32",
    }
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, SWATConfig) and config.sigmoid_bias == -2 and config.eos_token_id == [1, 2]
    assert torch.equal(config.slopes(), torch.tensor([0.5, -0.25, 0.0, 1.0]))
