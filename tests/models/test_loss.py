import math

import pytest
import torch
from transformers.loss.loss_utils import ForCausalLMLoss

from swat import SWATForCausalLM
from swat.errors import UserError
from swat.models.loss import causal_lm_loss, linear_cross_entropy, next_token_loss, perplexity
from swat.training.trainer import document_segments, window_loss
from tests.conftest import tiny_config


def test_matches_log_softmax_and_ignores_index():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 7, (2, 5), generator=gen)
    targets[0, 1] = -100
    want = -logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    keep = targets != -100
    per_token = next_token_loss(logits, targets, reduction="none")
    assert per_token.dtype == torch.float32 and per_token.shape == targets.shape
    torch.testing.assert_close(per_token[keep], want[keep].float())
    assert per_token[0, 1] == 0
    assert math.isclose(next_token_loss(logits, targets).item(), want[keep].mean().item(), rel_tol=1e-6)
    assert math.isclose(next_token_loss(logits, targets, reduction="sum").item(), want[keep].sum().item(),
                        rel_tol=1e-6)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="must agree"):
        next_token_loss(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("num_items_in_batch", [None, 7, torch.tensor(11)])
def test_causal_lm_loss_is_transformers_causal_lm_loss(num_items_in_batch):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 9, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 9, (2, 6), generator=gen)
    labels[1, :2] = -100
    want = ForCausalLMLoss(logits, labels, vocab_size=9, num_items_in_batch=num_items_in_batch)
    torch.testing.assert_close(causal_lm_loss(logits, labels, num_items_in_batch=num_items_in_batch), want)
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
    torch.testing.assert_close(causal_lm_loss(logits, shift_labels=shifted, num_items_in_batch=num_items_in_batch),
                               want)


def test_causal_lm_loss_needs_labels():
    with pytest.raises(ValueError, match="pass labels"):
        causal_lm_loss(torch.zeros(1, 3, 5))


def test_perplexity_is_exp_of_the_loss_and_never_overflows():
    assert math.isclose(perplexity(2.0), math.exp(2.0))
    assert perplexity(1e6) == math.exp(50.0)


# --- the LM head and the loss together, chunk by chunk ----------------------------------------------

def _head_problem(dtype=torch.float64, tokens=(3, 41), hidden=16, vocab=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    states = torch.randn(*tokens, hidden, generator=gen, dtype=dtype, requires_grad=True)
    weight = torch.randn(vocab, hidden, generator=gen, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, vocab, tokens, generator=gen)
    targets[0, :7] = -100
    targets[2, -1] = -100
    return states, weight, targets


@pytest.mark.parametrize("chunk_tokens", [None, 1, 7, 1000])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_linear_cross_entropy_is_the_plain_loss_in_float64(chunk_tokens, reduction):
    """Loss and the gradients of the hidden states and of the head weight equal the plain
    cross-entropy of ``states @ weight.T`` (float64 throughout), for chunks that do and do not
    divide the tokens, with ignored targets."""
    states, weight, targets = _head_problem()
    ours = linear_cross_entropy(states, weight, targets, reduction=reduction, chunk_tokens=chunk_tokens)
    plain = torch.nn.functional.cross_entropy((states @ weight.T).flatten(0, 1), targets.flatten(),
                                              reduction=reduction)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, plain, rtol=1e-13, atol=1e-13)
    got = torch.autograd.grad(ours * 1.7, (states, weight))
    want = torch.autograd.grad(plain * 1.7, (states, weight))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-13)


def test_linear_cross_entropy_per_token_and_only_one_input_needing_gradients():
    states, weight, targets = _head_problem()
    with torch.no_grad():
        per_token = linear_cross_entropy(states, weight, targets, reduction="none", chunk_tokens=5)
    want = next_token_loss(states.detach() @ weight.detach().T, targets, reduction="none")
    torch.testing.assert_close(per_token.float(), want)
    with pytest.raises(UserError, match="no gradient"):
        linear_cross_entropy(states, weight, targets, reduction="none")
    frozen = weight.detach()
    (grad,) = torch.autograd.grad(linear_cross_entropy(states, frozen, targets), states)
    (want,) = torch.autograd.grad(next_token_loss(states @ frozen.T, targets), states)
    torch.testing.assert_close(grad, want)


def test_linear_cross_entropy_under_bf16_autocast_is_the_plain_bf16_loss():
    """Under autocast the head's matmuls run in bf16 as ``nn.Linear``'s would: loss and gradients
    as close to the plain bf16 loss as bf16 rounding allows (the float32 inputs get float32 grads)."""
    states, weight, targets = _head_problem()
    states, weight = (x.detach().float().requires_grad_() for x in (states, weight))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = linear_cross_entropy(states, weight, targets, chunk_tokens=16)
        plain = next_token_loss(torch.nn.functional.linear(states, weight), targets)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, plain, rtol=1e-6, atol=1e-6)
    got = torch.autograd.grad(ours, (states, weight))
    want = torch.autograd.grad(plain, (states, weight))
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, rtol=0, atol=0.02 * w.abs().max().item())


def test_linear_cross_entropy_bad_shapes_are_a_clear_error():
    with pytest.raises(UserError, match="must be"):
        linear_cross_entropy(torch.zeros(2, 5, 8), torch.zeros(11, 7), torch.zeros(2, 5, dtype=torch.long))


def _swat(**overrides):
    return SWATForCausalLM(tiny_config(**overrides)).double()


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("num_items_in_batch", [None, 23])
def test_model_loss_without_logits_is_the_loss_of_its_logits(tied, num_items_in_batch):
    """The model's ``labels`` loss (chunked LM head) and its gradients, tied embeddings or not,
    equal transformers' loss of the model's own logits."""
    model = _swat(tie_word_embeddings=tied).train()
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    tokens = torch.randint(0, 97, (2, 30), generator=torch.Generator().manual_seed(3))
    labels = tokens.clone()
    labels[0, 20:] = -100
    output = model(tokens, labels=labels, num_items_in_batch=num_items_in_batch)
    assert output.logits is None  # training mode with labels: no logits unless asked
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(output.loss, params)
    logits = model(tokens).logits
    want_loss = ForCausalLMLoss(logits, labels, vocab_size=97, num_items_in_batch=num_items_in_batch)
    want = torch.autograd.grad(want_loss, params)
    torch.testing.assert_close(output.loss, want_loss)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_model_returns_logits_when_asked():
    model = _swat()
    tokens = torch.randint(0, 97, (1, 12))
    assert model.train()(tokens, labels=tokens, skip_logits=False).logits.shape == (1, 12, 97)
    assert model.eval()(tokens, labels=tokens).logits.shape == (1, 12, 97)
    assert model.train()(tokens).logits.shape == (1, 12, 97)
    assert model.eval()(tokens, labels=tokens, skip_logits=True).logits is None


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("eos_token_id", [None, 5])
def test_window_loss_of_swat_is_the_loss_of_its_logits(bf16, eos_token_id):
    """The trainer's loss of a SWAT model (chunked LM head, no logits) equals the loss of the
    model's logits, and so do its gradients; ``"none"`` still gives per-token losses."""
    model = SWATForCausalLM(tiny_config()).train()
    windows = torch.randint(0, 97, (2, 33), generator=torch.Generator().manual_seed(4))
    loss = window_loss(model, windows, eos_token_id=eos_token_id, bf16=bf16)
    got = torch.autograd.grad(loss, list(model.parameters()))
    inputs = windows[:, :-1]
    documents = {} if eos_token_id is None else {"segment_ids": document_segments(inputs, eos_token_id)}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(inputs, skip_logits=False, **documents).logits
    plain = next_token_loss(logits, windows[:, 1:])
    want = torch.autograd.grad(plain, list(model.parameters()))
    torch.testing.assert_close(loss, plain, rtol=1e-5, atol=1e-5)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=(0.02 if bf16 else 1e-5) * w.abs().max().item())
    with torch.no_grad():
        per_token = window_loss(model, windows, eos_token_id=eos_token_id, bf16=bf16, reduction="none")
    assert per_token.shape == (2, 32)
    torch.testing.assert_close(per_token.mean(), loss.detach(), rtol=1e-4 if not bf16 else 2e-2, atol=1e-4)
