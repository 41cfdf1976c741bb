import math

import pytest
import torch
from transformers import AutoConfig

from swat import PRESETS, SWATConfig, SWATForCausalLM, alibi_slopes, preset_config
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
        (dict(alibi="sideways"), "unknown alibi mode"),
        (dict(attention_backend="sdpa"), "softmax only"),
        (dict(attention_backend="flash"), "attention_backend must be one of"),
        (dict(alibi_retain_scale=-1.0), "magnitude"),
    ],
)
def test_invalid_configs_are_rejected_with_a_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
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
