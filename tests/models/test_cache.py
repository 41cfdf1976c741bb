"""The rolling cache: incremental decoding equals one full forward, and memory stays bounded."""

import pytest
import torch

import swat.inference
import swat.models.cache as cache_module
from swat import SWATForCausalLM
from swat.models.cache import RollingCache
from swat.models.compat import output_cache
from tests.conftest import tiny_config
from tests.conftest import tiny_model as _model

W = 8  # tiny_config's window


def _stored(cache: RollingCache) -> list[int]:
    """Key entries each layer keeps."""
    return [layer.keys.shape[-2] if layer.is_initialized else 0 for layer in cache.layers]


def _stream(model: SWATForCausalLM, tokens: torch.Tensor, prefill: int, chunk: int) -> torch.Tensor:
    """Logits of ``tokens`` fed as one prefill of ``prefill`` tokens, then chunks of ``chunk``."""
    cache = RollingCache(model.config)
    pieces = [tokens[:, :prefill], *tokens[:, prefill:].split(chunk, dim=1)]
    with torch.no_grad():
        return torch.cat([model(piece, cache=cache, use_cache=True).logits for piece in pieces], dim=1)


@pytest.mark.parametrize(("prefill", "chunk"), [
    (1, 1), (1, 2 * W + 1), (W - 1, 3), (W, 1), (W, W), (W + 1, 3), (W + 1, 2 * W + 1),
])
def test_incremental_equals_full_forward(prefill, chunk):
    model = _model()  # balanced ALiBi + RoPE, 4 query heads on 2 kv heads (GQA)
    tokens = torch.randint(0, 97, (2, 6 * W + 5))
    with torch.no_grad():
        full = model(tokens).logits
    torch.testing.assert_close(_stream(model, tokens, prefill, chunk), full, rtol=0, atol=1e-10)


@pytest.mark.parametrize("overrides", [
    dict(alibi="standard", sigmoid_bias=-2.0, qk_norm=True),
    dict(use_rope=False),
    dict(attention_activation="softmax", alibi="none"),
    dict(sliding_window=1),
    dict(sliding_window=3, num_hidden_layers=3),
    dict(sliding_window=None),
], ids=["standard-alibi", "alibi-only", "softmax-swa", "window-1", "window-3", "full-attention"])
def test_incremental_equals_full_forward_across_configs(overrides):
    model = _model(**overrides)
    tokens = torch.randint(0, 97, (3, 5 * W + 3))
    with torch.no_grad():
        full = model(tokens).logits
    torch.testing.assert_close(_stream(model, tokens, W + 1, 5), full, rtol=0, atol=1e-10)


@pytest.mark.parametrize("slack", [1, 2, 5, 64])
@pytest.mark.parametrize("chunks", [[1], [1, 1, 3, 1, 2 * W + 1, 1, 1, 70, 2, 1]], ids=["decode", "mixed"])
def test_buffer_wraps_and_reallocates_without_changing_logits(monkeypatch, slack, chunks):
    """Streams of many buffer lengths: single tokens (the buffer moves its window to the front
    every ``slack`` tokens) and chunks longer than the slack (concatenated, new buffer)."""
    monkeypatch.setattr(cache_module, "SLACK", slack)
    model = _model()
    tokens = torch.randint(0, 97, (2, 260))
    with torch.no_grad():
        full = model(tokens).logits
    cache, pieces, start = RollingCache(model.config), [], 0
    with torch.no_grad():
        for step in range(10**6):
            size = chunks[step % len(chunks)]
            pieces.append(model(tokens[:, start:start + size], cache=cache, use_cache=True).logits)
            start += size
            if start >= tokens.shape[1]:
                break
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-10)


def test_decoding_writes_into_the_buffer_in_place():
    model = _model(num_hidden_layers=1)
    cache = RollingCache(model.config)
    with torch.no_grad():
        model(torch.randint(0, 97, (1, 20)), cache=cache)
        buffer = cache.layers[0].keys.untyped_storage().data_ptr()
        for _ in range(cache_module.SLACK):
            model(torch.randint(0, 97, (1, 1)), cache=cache)
            assert cache.layers[0].keys.untyped_storage().data_ptr() == buffer


def test_beam_reordering_starts_a_new_buffer():
    """``reorder_cache`` (beam search) replaces the kept entries; decoding goes on from them."""
    model = _model()
    tokens = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        want = model(tokens.flip(0)).logits[:, -1]
        cache = RollingCache(model.config)
        model(tokens[:, :-2], cache=cache)
        model(tokens[:, -2:-1], cache=cache)
        cache.reorder_cache(torch.tensor([1, 0]))
        got = model(tokens.flip(0)[:, -1:], cache=cache).logits[:, -1]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_cache_holds_at_most_window_entries_after_thousands_of_steps():
    model = SWATForCausalLM(tiny_config(num_hidden_layers=1, sliding_window=W)).eval()
    cache = RollingCache(model.config)
    token = torch.zeros(1, 1, dtype=torch.long)
    entry_bytes = model.config.num_key_value_heads * model.config.head_dim * 4
    buffer_bytes = (W - 1 + cache_module.SLACK) * entry_bytes
    with torch.no_grad():
        model(torch.randint(0, 97, (1, 300)), cache=cache)
        assert _stored(cache) == [W - 1]
        assert cache.layers[0].keys.untyped_storage().nbytes() == buffer_bytes  # chunk freed
        for _ in range(2000):
            model(token, cache=cache)
            layer = cache.layers[0]
            assert layer.keys.shape[-2] == W - 1
            assert layer.keys.untyped_storage().nbytes() == buffer_bytes
            assert layer.values.untyped_storage().nbytes() == buffer_bytes
    assert cache.get_seq_length() == 2300


def test_window_one_keeps_nothing():
    model = _model(sliding_window=1)
    cache = RollingCache(model.config)
    with torch.no_grad():
        for _ in range(20):
            model(torch.randint(0, 97, (2, 3)), cache=cache)
    assert _stored(cache) == [0, 0]
    assert cache.get_seq_length() == 60


def test_full_attention_cache_grows_with_the_stream():
    model = _model(sliding_window=None)
    cache = RollingCache(model.config)
    with torch.no_grad():
        model(torch.randint(0, 97, (1, 30)), cache=cache)
        model(torch.randint(0, 97, (1, 1)), cache=cache)
    assert _stored(cache) == [31, 31]


def test_forward_with_use_cache_builds_a_rolling_cache():
    model = _model()
    cache = output_cache(model(torch.randint(0, 97, (1, 50)), use_cache=True))
    assert isinstance(cache, RollingCache) and swat.inference.RollingCache is RollingCache
    assert _stored(cache) == [W - 1, W - 1]
    assert cache.get_seq_length() == 50
