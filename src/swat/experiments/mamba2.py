"""A Mamba2 baseline of a given parameter count: the linear-recurrent model the paper compares
SWAT with, at equal size and tokens.

transformers' ``Mamba2ForCausalLM`` runs on the CPU through its pure-PyTorch path (the
``mamba_ssm`` and ``causal_conv1d`` kernels are optional). It keeps the SWAT config's
``hidden_size`` and vocabulary; :func:`mamba2_fields` picks the number of layers, the expansion
and the state size whose parameter count is nearest the target.

The other recurrent baseline considered: transformers' ``MambaForCausalLM`` (Mamba 1, also with a
pure-PyTorch path on the CPU, maintained in transformers). It is not added: it is the
predecessor of Mamba2 with the same kind of state, so it would add a row of the same family, and
its sequential pure-PyTorch scan would add at least as much training time as the Mamba2 rows,
already the slowest of the decisive run.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from transformers import AutoModelForCausalLM, Mamba2Config, PretrainedConfig

from swat.errors import UserError

SIZE_TOLERANCE = 0.05  # the baseline's parameter count is within 5% of the target
HEAD_DIM = 64  # channels per Mamba2 head (the Mamba2 paper's): num_heads = expand * hidden_size / HEAD_DIM;
# fewer, wider heads also make the pure-PyTorch path faster on a CPU
EXPANDS = (2, 1, 3, 4)
STATE_SIZES = (64, 32, 16, 128, 8, 24, 48, 96)
MAX_LAYERS = 64


def parameter_count(config: PretrainedConfig) -> int:
    """Parameters of the causal LM ``config`` describes (tied weights counted once), built on the
    meta device so that nothing is allocated."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def mamba2_config(fields: dict[str, Any], vocab_size: int) -> Mamba2Config:
    """The config of a ``model.type: mamba2`` section."""
    return Mamba2Config(vocab_size=vocab_size, **{key: value for key, value in fields.items() if key != "type"})


def mamba2_fields(target: int, *, vocab_size: int, hidden_size: int, tie_word_embeddings: bool = False,
                  chunk_size: int = 64) -> dict[str, Any]:
    """The ``model`` section (``model.type: mamba2``) of the Mamba2 with ``hidden_size`` whose
    parameter count is nearest ``target``, over the layers, ``expand`` and ``state_size``;
    ``UserError`` when none is within ``SIZE_TOLERANCE``."""
    expands = [expand for expand in EXPANDS if expand * hidden_size % HEAD_DIM == 0]
    if not expands:
        raise UserError(f"hidden_size {hidden_size} times one of the expansions {EXPANDS} must be a multiple of "
                        f"{HEAD_DIM} (the Mamba2 head size): choose e.g. a hidden_size that is a multiple of 16")
    best, best_error = None, float("inf")
    for expand, state_size in itertools.product(expands, STATE_SIZES):
        for layers in range(1, MAX_LAYERS + 1):
            fields = dict(type="mamba2", hidden_size=hidden_size, num_hidden_layers=layers, expand=expand,
                          state_size=state_size, head_dim=HEAD_DIM, num_heads=expand * hidden_size // HEAD_DIM,
                          n_groups=1, chunk_size=chunk_size, tie_word_embeddings=tie_word_embeddings)
            count = parameter_count(mamba2_config(fields, vocab_size))
            error = abs(count - target) / target
            if error < best_error:
                best, best_error = fields, error
            if count > target:
                break
    if best_error > SIZE_TOLERANCE:
        raise UserError(f"no Mamba2 with hidden_size {hidden_size} has within {SIZE_TOLERANCE:.0%} of {target:,} "
                        f"parameters (nearest {best_error:.1%} off): change the SWAT config's size")
    return best

