"""The layer's dense attention weights are the op's, and the model returns them."""

import pytest
import torch

from swat import SWATForCausalLM, alibi_slopes, swat_attention
from swat.layers import attention_weights
from swat.models.compat import output_cache
from tests.conftest import tiny_config


@pytest.mark.parametrize("activation, window, slopes, bias, segments", [
    ("sigmoid", 5, "balanced", -1.5, False),
    ("sigmoid", None, "standard", 0.0, True),
    ("softmax", 7, None, 0.0, True),
    ("softmax", None, None, 0.0, False),
])
def test_weights_times_values_give_the_op_output(activation, window, slopes, bias, segments):
    q = torch.randn(2, 9, 4, 8, dtype=torch.float64)
    k, v = torch.randn(2, 2, 12, 2, 8, dtype=torch.float64).unbind(1)  # 12 keys: not a multiple of head_dim
    segment_ids = torch.tensor([[0] * 5 + [1] * 7, [0] * 12]) if segments else None
    kwargs = dict(window=window, slopes=None if slopes is None else alibi_slopes(4, slopes),
                  sigmoid_bias=bias, activation=activation, segment_ids=segment_ids)
    weights = attention_weights(q, k, **kwargs)
    assert weights.shape == (2, 4, 9, 12)
    expected = swat_attention(q, k, v, backend="chunked", **kwargs)
    torch.testing.assert_close(torch.einsum("bhij,bjhd->bihd", weights, v.repeat_interleave(2, dim=2)), expected)
    delta = torch.arange(3, 12)[:, None] - torch.arange(12)[None, :]
    outside = (delta < 0) | (delta >= (window or 99))
    assert bool((weights[..., outside] == 0).all())


@pytest.mark.parametrize("overrides", [{}, dict(attention_activation="softmax", alibi="none", sliding_window=None)],
                         ids=["swat", "transformer++"])
@torch.no_grad()
def test_model_returns_attention_weights_and_hidden_states_with_unchanged_logits(overrides):
    model = SWATForCausalLM(tiny_config(num_hidden_layers=3, **overrides)).double().eval()
    tokens = torch.randint(0, 97, (2, 20))
    plain = model(tokens)
    assert plain.attentions is None and plain.hidden_states is None
    out = model(tokens, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(out.logits, plain.logits, rtol=0, atol=1e-12)
    assert len(out.attentions) == 3 and out.attentions[0].shape == (2, 4, 20, 20)
    if model.config.attention_activation == "softmax":
        torch.testing.assert_close(out.attentions[1].sum(-1), torch.ones(2, 4, 20, dtype=torch.float64))
    assert len(out.hidden_states) == 4  # the embeddings, then each layer's output (the last one normed)
    torch.testing.assert_close(out.hidden_states[0], model.model.embed_tokens(tokens))
    torch.testing.assert_close(model.lm_head(out.hidden_states[-1]), plain.logits)
    # each layer's weights are those of that layer's own queries and keys
    layer = model.model.layers[1].self_attn
    recorded = {}
    layer.register_forward_hook(lambda _, args, output: recorded.update(output=output[1]))
    model(tokens, output_attentions=True, use_cache=False)
    torch.testing.assert_close(recorded["output"], out.attentions[1])


@torch.no_grad()
def test_attention_weights_during_decoding_cover_the_cached_keys():
    model = SWATForCausalLM(tiny_config()).double().eval()
    tokens = torch.randint(0, 97, (1, 30))
    full = model(tokens, output_attentions=True).attentions[0]
    first = model(tokens[:, :29], use_cache=True)
    step = model(tokens[:, 29:], cache=output_cache(first),
                 output_attentions=True).attentions[0]
    window = model.config.sliding_window
    assert step.shape == (1, 4, 1, window)
    torch.testing.assert_close(step[..., 0, :], full[..., 29, 30 - window:], rtol=0, atol=1e-12)


def test_qk_norm_under_bf16_autocast_keeps_the_projections_dtype():
    config = tiny_config(qk_norm=True, num_hidden_layers=1)
    model = SWATForCausalLM(config)
    ids = torch.randint(0, config.vocab_size, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, labels=ids, skip_logits=False)
    out.loss.backward()
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
