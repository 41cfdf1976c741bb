"""``model.generate``: the rolling cache, chunked prefill of long prompts, left-padded batches."""

import pytest
import torch

from swat import SWATForCausalLM
from swat.inference import PREFILL_CHUNK_SIZE, RollingCache, prefill
from swat.models.compat import CACHE_FIELD, output_cache
from tests.conftest import tiny_model

W = 8
PAD = 0


def _model(**overrides) -> SWATForCausalLM:
    return tiny_model(pad_token_id=PAD, eos_token_id=None, bos_token_id=None, **overrides)


def _greedy(model, prompt: torch.Tensor, new: int, **kwargs) -> torch.Tensor:
    return model.generate(prompt, max_new_tokens=new, do_sample=False, pad_token_id=PAD, **kwargs)


@torch.no_grad()
def test_greedy_generation_many_windows_long_equals_argmax_of_full_forwards():
    model = _model()
    sequence = torch.randint(1, 97, (1, 2 * W + 3))
    generated = _greedy(model, sequence, 5 * W)
    for _ in range(5 * W):
        next_token = model(sequence, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, next_token], dim=1)
    assert torch.equal(generated, sequence)


@pytest.mark.parametrize("overrides", [{}, dict(sliding_window=None), dict(attention_activation="softmax", alibi="none")],
                         ids=["swat", "full-attention", "softmax-swa"])
@torch.no_grad()
def test_left_padded_batch_generates_what_each_prompt_generates_alone(overrides):
    model = _model(**overrides)
    prompts = [torch.randint(1, 97, (n,)) for n in (3, W + 1, 3 * W + 2)]
    width = max(len(p) for p in prompts)
    batch = torch.randint(1, 97, (len(prompts), width))  # padding ids that would matter if attended
    mask = torch.zeros_like(batch)
    for row, prompt in enumerate(prompts):
        batch[row, width - len(prompt):] = prompt
        mask[row, width - len(prompt):] = 1
    together = _greedy(model, batch, 4 * W, attention_mask=mask, output_logits=True, return_dict_in_generate=True)
    for row, prompt in enumerate(prompts):
        alone = _greedy(model, prompt[None], 4 * W, output_logits=True, return_dict_in_generate=True)
        assert torch.equal(together.sequences[row, width:], alone.sequences[0, len(prompt):]), f"prompt {row} diverged"
        torch.testing.assert_close(torch.stack(together.logits)[:, row], torch.stack(alone.logits)[:, 0],
                                   rtol=0, atol=1e-10)


@torch.no_grad()
def test_generate_uses_a_rolling_cache_and_prefills_long_prompts_in_chunks():
    model = _model(num_hidden_layers=1)
    lengths = []
    model.model.register_forward_pre_hook(lambda _, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]),
                                          with_kwargs=True)
    prompt = torch.randint(1, 97, (2, 2 * PREFILL_CHUNK_SIZE + 5))
    out = model.generate(prompt, max_new_tokens=3, do_sample=False, pad_token_id=PAD, return_dict_in_generate=True)
    assert lengths == [PREFILL_CHUNK_SIZE, PREFILL_CHUNK_SIZE, 5, 1, 1]
    cache = output_cache(out)
    assert isinstance(cache, RollingCache) and cache.layers[0].keys.shape[-2] == W - 1
    single_chunk = _greedy(model, prompt, 3, prefill_chunk_size=10**9)
    assert torch.equal(out.sequences, single_chunk)


@torch.no_grad()
def test_chunked_prefill_of_a_left_padded_batch_equals_one_chunk():
    model = _model()
    prompt = torch.randint(1, 97, (2, 5 * W))
    mask = torch.ones_like(prompt)
    mask[0, :11] = 0
    prompt[0, :11] = PAD
    one = _greedy(model, prompt, 2 * W, attention_mask=mask, prefill_chunk_size=10**9)
    for chunk in (1, 3, W + 1):
        assert torch.equal(_greedy(model, prompt, 2 * W, attention_mask=mask, prefill_chunk_size=chunk), one)


@torch.no_grad()
def test_sampled_generation_with_a_seed_is_reproducible_and_uses_the_rolling_cache():
    model = _model()
    prompt = torch.randint(1, 97, (2, 5))
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append(model.generate(prompt, max_new_tokens=3 * W, do_sample=True, top_p=0.9, pad_token_id=PAD,
                                   return_dict_in_generate=True))
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    cache = output_cache(runs[0])  # 5 + 3W tokens seen, the last W - 1 kept in every layer
    assert isinstance(cache, RollingCache) and cache.get_seq_length() == 5 + 3 * W - 1
    assert all(layer.keys.shape[-2] == W - 1 for layer in cache.layers)


@torch.no_grad()
def test_prefill_of_a_left_padded_batch_gives_each_prompt_its_own_logits_and_cache():
    model = _model()
    prompts = [torch.randint(1, 97, (n,)) for n in (4, 3 * W + 1)]
    batch = torch.full((2, 3 * W + 1), PAD)
    mask = torch.zeros_like(batch)
    for row, prompt in enumerate(prompts):
        batch[row, batch.shape[1] - len(prompt):] = prompt
        mask[row, batch.shape[1] - len(prompt):] = 1
    logits, cache = prefill(model, batch, attention_mask=mask, chunk_size=5)
    following = torch.randint(1, 97, (2, 3))
    mask = torch.cat([mask, torch.ones_like(following)], dim=1)
    after = model(following, attention_mask=mask, cache=cache).logits
    for row, prompt in enumerate(prompts):
        alone = model(torch.cat([prompt, following[row]])[None]).logits[0]
        torch.testing.assert_close(logits[row], alone[len(prompt) - 1], rtol=0, atol=1e-10)
        torch.testing.assert_close(after[row], alone[len(prompt):], rtol=0, atol=1e-10)


@torch.no_grad()
def test_generate_continues_from_a_prefilled_cache():
    model = _model()
    prompt = torch.randint(1, 97, (1, 3 * W))
    _, cache = prefill(model, prompt[:, :2 * W])
    continued = _greedy(model, prompt, W, **{CACHE_FIELD: cache})
    assert torch.equal(continued, _greedy(model, prompt, W))
