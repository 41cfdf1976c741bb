"""Generate text from a saved model, streaming the tokens to the terminal as they are produced.

The prompt comes from --prompt, from --prompt-file, or from standard input (when neither is given,
or with --prompt-file -). The model directory holds the model (save_pretrained) and its tokenizer.
Long prompts are prefilled in chunks and SWAT models decode with the rolling KV cache, so memory
stays constant however long the prompt and the output are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import TextStreamer

from swat.evaluation.options import add_device_argument, add_dtype_argument
from swat.models.loading import DTYPES, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory with its tokenizer")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", help="the prompt text")
    source.add_argument("--prompt-file", metavar="FILE", help="read the prompt from FILE ('-' = standard input)")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: 200)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy (default: 0.8)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default: 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampler (default: 0)")
    add_dtype_argument(parser)
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    prompt = read_prompt(args.prompt, args.prompt_file)
    model, tokenizer = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    if inputs["input_ids"].shape[1] == 0:
        if tokenizer.bos_token_id is None:
            raise SystemExit("the prompt is empty and the tokenizer has no bos_token: pass a non-empty --prompt")
        inputs["input_ids"] = torch.tensor([[tokenizer.bos_token_id]], device=model.device)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    torch.manual_seed(args.seed)
    greedy = args.temperature == 0
    sampling = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    model.generate(
        **inputs,
        max_new_tokens=args.max_new_tokens,
        **sampling,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        streamer=TextStreamer(tokenizer, skip_prompt=True),
    )
    return 0


def read_prompt(prompt: str | None, prompt_file: str | None) -> str:
    """The prompt from the argument, the file, or standard input (``prompt_file='-'`` or neither given)."""
    if prompt is not None:
        return prompt
    if prompt_file is not None and prompt_file != "-":
        path = Path(prompt_file)
        if not path.is_file():
            raise SystemExit(f"prompt file not found: {path} (pass an existing UTF-8 text file, or '-' for stdin)")
        return path.read_text(encoding="utf-8")
    if sys.stdin.isatty():
        print("reading the prompt from standard input (end with Ctrl-D)...", file=sys.stderr)
    return sys.stdin.read()


def _check_args(args: argparse.Namespace) -> None:
    if args.max_new_tokens < 1:
        raise SystemExit(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise SystemExit(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise SystemExit(f"--top-p must be in (0, 1], got {args.top_p}")
