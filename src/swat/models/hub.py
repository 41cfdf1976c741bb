"""What a saved SWAT model directory carries so that tools which never ``import swat`` load it.

Hugging Face's convention for architectures outside transformers: ``config.json`` names, in
``auto_map``, a module file inside the directory for each Auto class, and
``from_pretrained(..., trust_remote_code=True)`` imports those files. Ours are two short modules
that re-export the installed package's classes (so the ``swat-lm`` package must be installed
where the directory is loaded, and the loaded classes are exactly ``swat``'s own).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from swat.errors import UserError

AUTO_MAP = {
    "AutoConfig": "configuration_swat.SWATConfig",
    "AutoModel": "modeling_swat.SWATModel",
    "AutoModelForCausalLM": "modeling_swat.SWATForCausalLM",
}

_HEADER = ('"""Loads this SWAT model with transformers\' Auto classes and trust_remote_code=True, in a\n'
           'process that never imported swat. Needs the swat-lm package installed (pip install swat-lm).\n'
           '"""\n\n')
REMOTE_CODE = {
    "configuration_swat.py": _HEADER + "from swat.models.configuration_swat import SWATConfig\n\n"
                             '__all__ = ["SWATConfig"]\n',
    "modeling_swat.py": _HEADER + "from swat.models.modeling_swat import SWATForCausalLM, SWATModel\n\n"
                        '__all__ = ["SWATForCausalLM", "SWATModel"]\n',
}


def write_remote_code(directory: str | os.PathLike) -> None:
    """Write the modules ``AUTO_MAP`` names into a model directory (replacing any copies that
    transformers' own ``save_pretrained`` may have made of the full sources)."""
    for name, source in REMOTE_CODE.items():
        (Path(directory) / name).write_text(source)


def refuse_custom_code(directory: str | os.PathLike, auto_class: str) -> None:
    """``UserError`` if the local ``directory`` names code of its own for ``auto_class``
    (``auto_map`` in ``tokenizer_config.json`` or ``config.json``): Hugging Face would import
    that module, and swat never runs code from a directory."""
    for name in ("tokenizer_config.json", "config.json"):
        path = Path(directory) / name
        try:
            auto_map = json.loads(path.read_text(encoding="utf-8")).get("auto_map") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(auto_map, list):  # the old form: the AutoTokenizer classes only
            auto_map = {"AutoTokenizer": auto_map}
        if isinstance(auto_map, dict) and auto_class in auto_map:
            raise UserError(f"{path} asks to run code from {directory} ({auto_class}: {auto_map[auto_class]}); "
                            "swat never runs code from a directory: use a tokenizer or model that transformers "
                            "loads without custom code")
