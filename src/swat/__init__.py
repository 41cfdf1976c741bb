"""swat: Sliding Window Attention Training (sigmoid attention, balanced ALiBi + RoPE).

``import swat`` loads neither torch nor transformers (the ``swat`` command starts at once): the
names below are imported on first use, and SWAT registers with transformers' Auto classes
(``AutoConfig``, ``AutoModel``, ``AutoModelForCausalLM``, hence ``AutoTokenizer`` and
``pipeline``) when those are loaded, whether that happens before or after ``import swat``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys

__version__ = "0.1.0"
# set to 1: `import swat` registers at once (imports torch and transformers); swat serve sets it for
# the processes of the server, which must import swat.models before transformers' server module
REGISTER_AT_IMPORT = "SWAT_REGISTER_AT_IMPORT"

_EXPORTS = {
    "PRESETS": "swat.models",
    "SWATConfig": "swat.models",
    "SWATForCausalLM": "swat.models",
    "SWATModel": "swat.models",
    "preset_config": "swat.models",
    "alibi_slopes": "swat.ops",
    "swat_attention": "swat.ops",
}
__all__ = ["__version__", *_EXPORTS]

# transformers' Auto classes all start from this module (modeling_auto and tokenization_auto import it)
_AUTO_CLASSES = "transformers.models.auto.configuration_auto"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'swat' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _RegisterWithAutoClasses(importlib.abc.MetaPathFinder):
    """Imports ``swat.models`` (which registers SWAT with the Auto classes) once transformers' Auto
    classes are loaded. It checks when the outermost import of a transformers or swat module has
    finished, so that no module that ``swat.models`` needs is half-initialised at that moment
    (transformers' ``modeling_utils`` imports the Auto classes while it is being imported)."""

    def __init__(self) -> None:
        self.importing = False

    def find_spec(self, name, path=None, target=None):
        if self.importing or name.partition(".")[0] not in ("transformers", "swat"):
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        if not isinstance(getattr(spec, "loader", None), importlib.machinery.SourceFileLoader):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module) -> None:
            self.importing = True
            try:
                exec_module(module)
            finally:
                self.importing = False
                del spec.loader.exec_module  # the loader's own method again
            _register_if_auto_classes_loaded()

        spec.loader.exec_module = exec_then_register
        return spec


def _register_if_auto_classes_loaded() -> None:
    if _AUTO_CLASSES not in sys.modules:
        return
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _RegisterWithAutoClasses)]
    importlib.import_module("swat.models")


if _AUTO_CLASSES in sys.modules or os.environ.get(REGISTER_AT_IMPORT) == "1":
    importlib.import_module("swat.models")
else:
    sys.meta_path.insert(0, _RegisterWithAutoClasses())
