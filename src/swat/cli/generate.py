"""Generate text from a saved model, streaming the tokens to the terminal as they are produced.

The prompt comes from --prompt, from --prompt-file, or from standard input (when neither is given,
or with --prompt-file -). The model directory holds the model (save_pretrained) and its tokenizer.
Long prompts are prefilled in chunks and SWAT models decode with the rolling KV cache, so memory
stays constant however long the prompt and the output are; each new token is decoded on its own
(with a few tokens before it for context), so the time per token stays constant too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tokenizers.decoders import DecodeStream

from swat.cli.options import (
    add_device_argument,
    add_dtype_argument,
    add_seed_argument,
    non_negative_float,
    positive_int,
    probability,
)
from swat.errors import UserError
from swat.utils.text import read_text

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase
    from transformers.generation.streamers import BaseStreamer

# below this a temperature is greedy decoding in effect, and logits / temperature overflow float32
MIN_TEMPERATURE = 1e-4
# prompt tokens given to the decoder as context for the first new token (spacing, byte-level merges)
DECODE_CONTEXT_TOKENS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory with its tokenizer")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", help="the prompt text")
    source.add_argument("--prompt-file", metavar="FILE", help="read the prompt from FILE ('-' = standard input)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=200, help="tokens to generate (default: 200)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.8,
                        help=f"sampling temperature, 0 (greedy) or >= {MIN_TEMPERATURE:g} (default: 0.8)")
    parser.add_argument("--top-p", type=probability, default=0.95, help="nucleus sampling mass, in (0, 1] (default: 0.95)")
    add_seed_argument(parser, help="random seed of the sampler (default: 0)")
    add_dtype_argument(parser)
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from swat.models.loading import DTYPES, load_model

    if 0 < args.temperature < MIN_TEMPERATURE:
        raise UserError(f"--temperature {args.temperature:g} is too small to sample with (the logits overflow): "
                        f"pass 0 for greedy decoding, or a temperature >= {MIN_TEMPERATURE:g}")
    prompt = read_prompt(args.prompt, args.prompt_file)
    model, tokenizer = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    if inputs["input_ids"].shape[1] == 0:
        if tokenizer.bos_token_id is None:
            raise UserError("the prompt is empty and the tokenizer has no bos_token: pass a non-empty --prompt")
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
        streamer=text_streamer(tokenizer, inputs["input_ids"][0].tolist()),
        logits_processor=[FiniteLogits(inputs["input_ids"].shape[1], args.dtype)],
    )
    return 0


class FiniteLogits:
    """A logits processor for ``generate`` (run before sampling) that stops with a ``UserError``
    naming the step when the model's logits hold a NaN or ``+inf``: sampling from them would fail
    inside torch (``probability tensor contains either inf, nan``) or pick a token at random.
    ``-inf`` is left alone: it is how a token is ruled out."""

    def __init__(self, prompt_length: int, dtype: str) -> None:
        self.prompt_length = prompt_length
        self.dtype = dtype

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if bool((scores.isnan() | scores.isposinf()).any()):
            step = input_ids.shape[-1] - self.prompt_length + 1
            hint = " (try --dtype float32: the activations may overflow)" if self.dtype != "float32" else ""
            raise UserError(f"the model produced non-finite logits (NaN or inf) for new token {step}: its weights or "
                            f"activations overflow, so generation stopped{hint}; use another checkpoint")
        return scores


class IncrementalTextStreamer:
    """A streamer for ``generate`` (``put`` and ``end``, as transformers' ``BaseStreamer``, which is
    not subclassed here: it imports torch). Writes the new tokens to ``file`` as they come, each decoded on its own by
    ``tokenizers``' ``DecodeStream`` (which holds back the bytes of an unfinished UTF-8 character),
    so the cost per token is constant however long the line grows. ``prompt_ids``' last tokens are
    the decoder's context, so the first new token gets the spacing it has after the prompt."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], file: TextIO | None = None) -> None:
        self.tokenizer = tokenizer.backend_tokenizer
        self.decoder = DecodeStream(ids=prompt_ids[-DECODE_CONTEXT_TOKENS:], skip_special_tokens=False)
        self.file = file
        self.prompt_skipped = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_skipped:  # generate hands the streamer the prompt first
            self.prompt_skipped = True
            return
        file = self.file or sys.stdout
        for token in value.reshape(-1).tolist():
            text = self.decoder.step(self.tokenizer, token)
            if text:
                file.write(text)
        file.flush()

    def end(self) -> None:
        file = self.file or sys.stdout
        file.write("\n")
        file.flush()


def text_streamer(tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int]) -> BaseStreamer | IncrementalTextStreamer:
    """The incremental streamer for tokenizers backed by ``tokenizers`` (every fast tokenizer);
    transformers' ``TextStreamer`` for the others."""
    from transformers import TextStreamer

    if getattr(tokenizer, "backend_tokenizer", None) is None:
        return TextStreamer(tokenizer, skip_prompt=True)
    return IncrementalTextStreamer(tokenizer, prompt_ids)


def read_prompt(prompt: str | None, prompt_file: str | None) -> str:
    """The prompt from the argument, the file, or standard input (``prompt_file='-'`` or neither given)."""
    if prompt is not None:
        return prompt
    if prompt_file is not None and prompt_file != "-":
        path = Path(prompt_file)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file not found: {path} (pass an existing UTF-8 text file, or '-' for stdin)")
        return read_text(path)
    if sys.stdin.isatty():
        print("reading the prompt from standard input (end with Ctrl-D)...", file=sys.stderr)
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as error:
        raise UserError(f"standard input is not UTF-8 text ({error}): pipe in a UTF-8 text, or pass --prompt") from None
