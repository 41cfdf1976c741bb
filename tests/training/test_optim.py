import copy
import math

import pytest
import torch

from swat.models import SWATForCausalLM
from swat.training.config import OptimConfig
from swat.training.optim import build_optimizer, build_scheduler, can_fuse, param_groups
from tests.conftest import tiny_config


def _learning_rates(optim, total_steps, steps):
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([parameter], lr=optim.lr)
    scheduler = build_scheduler(optimizer, optim, total_steps)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    rates = _learning_rates(OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=4), 104, 105)
    assert rates[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert rates[54] == pytest.approx(0.55)  # halfway: (lr + min_lr) / 2
    assert rates[4 + 25] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert rates[104] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))


def test_no_warmup_starts_at_the_peak():
    assert _learning_rates(OptimConfig(lr=2.0, min_lr=0.0, warmup_steps=0), 10, 1) == [2.0]


def test_weight_decay_on_matrices_only():
    model = SWATForCausalLM(tiny_config())
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "model.embed_tokens.weight" in kept and "lm_head.weight" in decayed
    assert all("norm" in n for n in kept - {"model.embed_tokens.weight"})
    assert all(p.dim() == 2 for p in decay["params"])
    assert decayed | kept == set(names.values())
    optimizer = build_optimizer(model, OptimConfig(betas=[0.9, 0.95]))
    assert optimizer.defaults["betas"] == (0.9, 0.95)


def test_the_optimizer_is_fused_for_plain_tensors_and_steps_like_the_default():
    model = SWATForCausalLM(tiny_config())
    optim = OptimConfig(betas=[0.9, 0.95])
    fused = build_optimizer(model, optim)
    assert fused.defaults["fused"]
    twin = copy.deepcopy(model)
    default = torch.optim.AdamW(param_groups(twin, optim.weight_decay), lr=optim.lr, betas=(0.9, 0.95), eps=optim.eps,
                                foreach=True)
    for step in range(3):
        for one in (model, twin):
            torch.manual_seed(step)
            for param in one.parameters():
                param.grad = torch.randn_like(param)
        fused.step()
        default.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not can_fuse([torch.zeros(2, dtype=torch.int64)]) and not can_fuse([])
