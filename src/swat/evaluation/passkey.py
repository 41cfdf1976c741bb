"""Passkey retrieval: a random number hidden in filler text, which the model must repeat.

A prompt of ``length`` tokens is::

    [instruction][filler ...][key line: "The pass key is 71432. Remember it. 71432 is the pass key."]
    [filler ...][question: "What is the pass key? The pass key is"]  -> answer " 71432"

``distance`` is how far back the key line starts, counted in tokens from the answer. With a
window ``w`` and ``L`` layers a key closer than ``w`` is in direct reach of the last attention,
one between ``w`` and ``L*(w-1)+1`` (the receptive field) must have been carried forward through
the layers, and one beyond the receptive field cannot influence the answer at all.

A trial is scored in one teacher-forced pass: it is correct when every answer token is the
model's argmax (exactly when greedy decoding would produce the key), and its answer loss is the
mean next-token loss over the answer tokens.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from swat.errors import UserError
from swat.evaluation.model_info import model_kind, receptive_field
from swat.evaluation.results import markdown_table, save_figure, write_outputs
from swat.inference import PREFILL_CHUNK_SIZE, prefill
from swat.models.compat import CACHE_FIELD
from swat.models.loss import next_token_loss
from swat.utils.checks import check_count

INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
               "I will quiz you about the important information there.")
FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = " What is the pass key? The pass key is"
ANSWER = " {key}"


class NoPasskeyCellFits(UserError):
    """No (length, distance) of the grid leaves room for the passkey prompt."""


def default_grid(config) -> tuple[list[int], list[int]]:
    """Context lengths and key distances covering the three regimes: inside the window, between
    the window and the receptive field ``L*(w-1)+1``, and beyond it."""
    window = getattr(config, "sliding_window", None)
    if window is None:
        return [256, 512, 1024], [64, 192, 512]
    reach = receptive_field(config)
    return [reach, 2 * reach, 4 * reach], [window - 1, (window + reach) // 2, 2 * reach]


class PasskeyPrompts:
    """Builds passkey prompts as token ids; each piece is tokenised once and ids are concatenated."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, digits: int = 5, filler: str = FILLER) -> None:
        if digits < 1:
            raise UserError(f"a pass key needs at least one digit, got digits={digits}")
        self.tokenizer = tokenizer
        self.digits = digits
        self.instruction = self._ids(INSTRUCTION)
        self.filler = self._ids(filler)
        self.question = self._ids(QUESTION)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def random_key(self, rng: random.Random) -> str:
        return str(rng.randrange(10 ** (self.digits - 1), 10**self.digits))

    def _filler(self, count: int) -> list[int]:
        repeats = count // len(self.filler) + 1
        return (self.filler * repeats)[:count]

    def distance_range(self, keys: Sequence[str], length: int) -> tuple[int, int]:
        """The shortest and longest key distance at which every key fits a context of ``length``."""
        key_line = max(len(self._ids(KEY_LINE.format(key=key))) for key in keys)
        return key_line + len(self.question), length - len(self.instruction)

    def build(self, key: str, length: int, distance: int) -> tuple[list[int], list[int]] | None:
        """``(context, answer)`` ids with ``len(context) == length`` and the key line starting
        ``distance`` tokens before the answer; None when that layout does not fit."""
        key_line = self._ids(KEY_LINE.format(key=key))
        after = distance - len(key_line) - len(self.question)
        before = length - distance - len(self.instruction)
        if after < 0 or before < 0:
            return None
        context = self.instruction + self._filler(before) + key_line + self._filler(after) + self.question
        return context, self._ids(ANSWER.format(key=key))


@torch.inference_mode()
def score_answer(model: PreTrainedModel, context: list[int], answer: list[int], chunk_size: int) -> tuple[bool, float]:
    """Teacher-forced answer after a prefilled context: (every answer token is the argmax, mean
    next-token loss over the answer tokens)."""
    device = model.device
    logits, cache = prefill(model, torch.tensor([context], device=device), chunk_size=chunk_size)
    logits = logits[:, None]
    if len(answer) > 1:
        rest = model(input_ids=torch.tensor([answer[:-1]], device=device), use_cache=True, **{CACHE_FIELD: cache}).logits
        logits = torch.cat([logits, rest], dim=1)
    targets = torch.tensor(answer, device=device)
    logits = logits[0]
    correct = bool((logits.argmax(-1) == targets).all())
    return correct, next_token_loss(logits, targets).item()


def evaluate_passkey(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    lengths: Sequence[int],
    distances: Sequence[int],
    *,
    trials: int = 5,
    seed: int = 0,
    chunk_size: int = PREFILL_CHUNK_SIZE,
    label: str = "model",
    filler: str = FILLER,
) -> dict[str, Any]:
    """Accuracy and answer loss for every (length, distance) cell that fits (the others are NaN,
    ``trials=0``); the same keys are used in every cell (trial ``t`` of every cell hides the same
    number). ``NoPasskeyCellFits`` (a ``UserError``) when no cell fits; ``UserError`` for ``trials < 1``."""
    check_count("trials", trials, what="random keys per cell")
    if not lengths or not distances:
        raise UserError("pass at least one context length and one key distance")
    prompts = PasskeyPrompts(tokenizer, filler=filler)
    rng = random.Random(seed)
    keys = [prompts.random_key(rng) for _ in range(trials)]
    grid = [(n, d) for n in sorted(lengths) for d in sorted(distances)]
    fits = {cell: all(prompts.build(key, *cell) is not None for key in keys) for cell in grid}
    if not any(fits.values()):
        shortest, longest = prompts.distance_range(keys, max(lengths))
        raise NoPasskeyCellFits(
            f"no passkey prompt fits any (length, distance) of lengths {sorted(lengths)} and distances "
            f"{sorted(distances)}: a key distance must be between {shortest} tokens (the key line and the question) "
            f"and the length minus {len(prompts.instruction)} (the instruction), here at most {longest}; "
            "pass such --distances, or longer --lengths")
    cells = []
    for length, distance in tqdm(grid, desc=f"passkey {label}", leave=False):
        if not fits[(length, distance)]:
            cells.append(dict(length=length, distance=distance, trials=0, accuracy=math.nan, answer_nll=math.nan))
            continue
        built = [prompts.build(key, length, distance) for key in keys]
        correct, nll = [], []
        for context, answer in built:
            trial_correct, trial_nll = score_answer(model, context, answer, chunk_size)
            correct.append(trial_correct)
            nll.append(trial_nll)
        cells.append(dict(length=length, distance=distance, trials=trials,
                          accuracy=sum(correct) / trials, answer_nll=sum(nll) / trials))
    config = model.config
    return dict(model=label, kind=model_kind(config), window=getattr(config, "sliding_window", None),
                receptive_field=receptive_field(config), lengths=sorted(lengths),
                distances=sorted(distances), keys=keys, cells=cells)


def _matrix(result: dict[str, Any], field: str) -> list[list[float]]:
    value = {(c["length"], c["distance"]): c[field] for c in result["cells"]}
    return [[value[(n, d)] for n in result["lengths"]] for d in result["distances"]]


def passkey_markdown(results: Sequence[dict[str, Any]]) -> str:
    text = "## Passkey retrieval: accuracy (rows: key distance in tokens, columns: context length)\n"
    for r in results:
        reach = r["receptive_field"]
        text += (f"\n### {r['model']} ({r['kind']}, receptive field "
                 f"{reach or 'unbounded'}, {r['cells'][0]['trials'] or len(r['keys'])} trials per cell)\n\n")
        rows = [[d] + accs for d, accs in zip(r["distances"], _matrix(r, "accuracy"), strict=True)]
        text += markdown_table(["distance"] + [f"len {n}" for n in r["lengths"]], rows, digits=2)
        text += "\nMean answer loss per token:\n\n"
        rows = [[d] + nlls for d, nlls in zip(r["distances"], _matrix(r, "answer_nll"), strict=True)]
        text += markdown_table(["distance"] + [f"len {n}" for n in r["lengths"]], rows, digits=2)
    return text


def plot_passkey(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    columns = min(4, len(results))
    rows = math.ceil(len(results) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.4 * rows + 0.6), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(results):]:
        ax.axis("off")
    for ax, r in zip(axes.flat, results, strict=False):
        matrix = np.array(_matrix(r, "accuracy"), dtype=float)
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, "-" if math.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    color="white" if not math.isnan(value) and value < 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(r["lengths"])), [str(n) for n in r["lengths"]])
        ax.set_yticks(range(len(r["distances"])), [str(d) for d in r["distances"]])
        ax.set(xlabel="context length (tokens)", ylabel="key distance (tokens)", title=r["model"])
    fig.colorbar(image, ax=axes.ravel().tolist(), label="accuracy", shrink=0.8)
    fig.suptitle("Passkey retrieval accuracy")
    return save_figure(fig, path)


def write_passkey_outputs(results: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    return write_outputs(out, "passkey", list(results), passkey_markdown(results), lambda path: plot_passkey(results, path))
