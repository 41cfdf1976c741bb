"""Serve a model directory with transformers' OpenAI-compatible server (streaming included).

    swat serve runs/quickstart/final --host 127.0.0.1 --port 8000
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
        -d '{"model": "runs/quickstart/final", "prompt": "KING HENRY.", "max_tokens": 40, "stream": true}'

This is `transformers serve` itself (/v1/completions, /v1/models, and /v1/chat/completions for a
tokenizer with a chat template), with every option after DIR passed to it (`swat serve DIR --help`
lists them). That server loads the model in a process of its own by the class its config names,
looked up as an attribute of the transformers package (it has no registry for classes from other
packages): swat.models puts SWAT's classes there, and swat serve has every process of the server
import it first (they import the `swat` command's module, as Python's multiprocessing does, and
SWAT_REGISTER_AT_IMPORT=1 makes `import swat` import swat.models).
The server needs fastapi, uvicorn and openai: pip install 'swat-lm[serve]'.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

import swat
from swat.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="DIR", help="a model directory with its tokenizer (save_pretrained)")
    parser.add_argument("options", nargs=argparse.REMAINDER, metavar="...",
                        help="transformers serve's options, e.g. --host 127.0.0.1 --port 8000 --device cpu")


def run(args: argparse.Namespace) -> int:
    path = Path(args.model)
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a model directory (no config.json): pass a directory saved with "
                        f"save_pretrained, e.g. a run's final/ directory")
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        raise UserError("transformers' server needs fastapi, uvicorn, pydantic and openai: "
                        "pip install 'swat-lm[serve]'")
    os.environ[swat.REGISTER_AT_IMPORT] = "1"  # for the server's processes (they import the swat command)
    importlib.import_module("swat.models")
    from transformers.cli.transformers import app

    app(["serve", str(path), *args.options], prog_name="swat")
    return 0



if __name__ == "__main__":  # python -m swat.cli.serve DIR ...
    import sys

    from swat.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
