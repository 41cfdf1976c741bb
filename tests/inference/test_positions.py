"""Positions far into a stream: translation invariance (docs/spec.md section 2) and exact RoPE angles."""

import torch

from swat import SWATForCausalLM
from swat.inference import prefill
from tests.conftest import tiny_model as _model


def _reach(config) -> int:
    return config.num_hidden_layers * (config.sliding_window - 1) + 1


@torch.no_grad()
def test_last_logits_depend_only_on_the_last_L_times_w_minus_1_plus_1_tokens():
    model = _model(num_hidden_layers=3)
    reach = _reach(model.config)
    tokens = torch.randint(0, 97, (2, 4 * reach))
    last = model(tokens).logits[:, -1]
    torch.testing.assert_close(model(tokens[:, -reach:]).logits[:, -1], last, rtol=0, atol=1e-10)
    one_fewer = model(tokens[:, -(reach - 1):]).logits[:, -1]
    assert (one_fewer - last).abs().max() > 1e-4


@torch.no_grad()
def test_stream_thousands_of_tokens_long_ends_with_the_logits_of_its_last_window_alone():
    model = _model()
    tokens = torch.randint(0, 97, (1, 2000))
    streamed, _ = prefill(model, tokens, chunk_size=500)
    alone = model(tokens[:, -_reach(model.config):]).logits[:, -1]
    torch.testing.assert_close(streamed, alone, rtol=0, atol=1e-10)


@torch.no_grad()
def test_absolute_offset_does_not_change_the_logits():
    model = _model()
    tokens = torch.randint(0, 97, (2, 20))
    far = torch.arange(10**9, 10**9 + 20).expand(2, -1)
    torch.testing.assert_close(model(tokens, position_ids=far).logits, model(tokens).logits, rtol=0, atol=1e-8)


@torch.no_grad()
def test_float32_rope_at_position_one_million_is_as_accurate_as_at_one_thousand():
    reference = _model(head_dim=64, num_attention_heads=2, num_key_value_heads=2)
    model = SWATForCausalLM(reference.config).eval()
    model.load_state_dict({name: value.float() for name, value in reference.state_dict().items()})
    tokens = torch.randint(0, 97, (1, 16))
    exact = reference(tokens).logits

    def error(offset: int) -> float:
        positions = torch.arange(offset, offset + tokens.shape[1])[None]
        return (model(tokens, position_ids=positions).logits.double() - exact).abs().max().item()

    near, far = error(10**3), error(10**6)
    assert far <= 2 * near + 1e-6, f"float32 logits error {far:.2e} at position 1e6 vs {near:.2e} at 1e3"
