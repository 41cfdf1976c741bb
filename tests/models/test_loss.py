import math

import pytest
import torch
from transformers.loss.loss_utils import ForCausalLMLoss

from swat.models.loss import causal_lm_loss, next_token_loss, perplexity


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
