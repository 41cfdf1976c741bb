"""``torch.compile(model)`` on the CPU with the default backend (inductor): one graph, no graph
break (``fullgraph=True``), no recompile on the second call, logits and gradients equal to eager."""

import copy

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from swat import SWATForCausalLM
from swat.ops import cpu_fused
from tests.conftest import tiny_config

# The op each backend's graph must call: the kernel runs inside the compiled graph as one opaque op.
KERNEL_OPS = {"fused": "swat_cpu.forward", "chunked": "swat.chunked_forward"}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("backend", ["fused", "chunked"])
def test_compiled_training_step_equals_eager_and_compiles_once(backend):
    if backend == "fused" and not cpu_fused.available():
        pytest.skip("the fused CPU kernel cannot be built here")
    torch.manual_seed(0)
    eager = SWATForCausalLM(tiny_config(attention_backend=backend, sigmoid_bias=-1.0)).train()
    counter = CompileCounterWithBackend("inductor")
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, backend=counter, fullgraph=True)
    # 40 tokens, window 8: several tiles of the banded kernels, keys cut at the start of the sequence
    for tokens in (torch.randint(0, 97, (2, 40)), torch.randint(0, 97, (2, 40))):
        expected, got = eager(tokens, labels=tokens), compiled(tokens, labels=tokens)
        expected.loss.backward()
        got.loss.backward()
        torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
        for name, grad in _grads(eager).items():
            torch.testing.assert_close(_grads(twin)[name], grad, rtol=1e-4, atol=1e-5, msg=name)
        eager.zero_grad()
        twin.zero_grad()
    assert counter.frame_count == 1, f"compiled {counter.frame_count} times for two calls of one shape"
    assert KERNEL_OPS[backend] in counter.graphs[0].code
