"""Op tests: without a CUDA device the Triton kernels run under Triton's CPU interpreter.

Triton decides when a function is decorated with ``@triton.jit`` whether it will be interpreted.
The kernels of :mod:`swat.ops.triton_kernels` are decorated on first use, after this file has set
``TRITON_INTERPRET=1``; but ``import torch`` may already have imported Triton, whose own library
functions (``tl.zeros``, ``tl.sum``, ``tl.max``, ...) were then decorated as compiled kernels, which
the interpreter cannot call. Their module is then re-executed, now interpreted. On a CUDA machine
nothing changes: the same tests run the compiled kernels on the GPU.

The interpreter of Triton 3.9 runs them; that of Triton 3.6 cannot with NumPy 2.4 (it converts
loop bounds, 1-element arrays, with ``int()``, which NumPy 2.4 refuses). Compiled, 3.6 is fine.
"""

import importlib
import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    if "triton.language" in sys.modules and os.environ["TRITON_INTERPRET"] == "1":
        import triton.language
        from triton.runtime.interpreter import InterpretedFunction

        if not isinstance(triton.language.standard.zeros, InterpretedFunction):
            importlib.reload(triton.language.standard)
            importlib.reload(triton.language)
