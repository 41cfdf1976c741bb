"""lm-evaluation-harness with swat models: a model class registered with lm-eval as ``"swat"``.

lm-eval's ``hf`` backend needs ``accelerate``; this class needs only the model, and it knows what a
window buys:

- **context length**: with a window ``w`` and ``L`` layers a logit depends on the last
  ``L*(w-1)+1`` tokens only (docs/spec.md section 2), so truncating contexts to that receptive field
  changes no score. ``max_length`` defaults to ``max(max_position_embeddings, L*(w-1)+1)``, which is
  lossless for windowed models; full-attention models keep ``max_position_embeddings``.
- **rolling log-likelihood** (perplexity tasks): a windowed model streams the whole document
  through the rolling cache (:func:`swat.inference.streaming_nll`) instead of cutting it into
  independent windows; full-attention models use lm-eval's disjoint windows of ``max_length``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lm_eval
import matplotlib.pyplot as plt
import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
from lm_eval.tasks import TaskManager
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from swat.errors import UserError
from swat.evaluation.model_info import receptive_field
from swat.evaluation.results import markdown_table, save_figure, write_outputs
from swat.inference import streaming_nll
from swat.models.loading import load_model
from swat.models.loss import next_token_loss


def harness_max_length(config) -> int:
    """Longest context given to the model: lossless for windowed models (see module docstring)."""
    reach = receptive_field(config)
    return max(config.max_position_embeddings, reach or 0)


@register_model("swat")
class SWATHarnessLM(TemplateLM):
    """``lm_eval.simple_evaluate(model="swat", model_args={"pretrained": DIR})`` or an instance.

    Requests are scored one at a time (a tiny model on a CPU gains little from padding batches);
    the ``batch_size``/``max_batch_size`` that lm-eval passes to every model class are accepted
    and not used."""

    def __init__(
        self,
        pretrained: str | Path | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        device: str = "cpu",
        **lm_eval_options: Any,
    ) -> None:
        super().__init__()
        if isinstance(pretrained, PreTrainedModel):
            if tokenizer is None:
                raise UserError("pass the tokenizer together with a model instance")
            self.model = pretrained.eval()
        else:
            self.model, tokenizer = load_model(pretrained, device=device)
        self.tokenizer = tokenizer
        if tokenizer.eos_token_id is None:
            raise UserError("the tokenizer has no eos_token: lm-eval needs one as the prefix of empty contexts")
        self.max_length = int(max_length or harness_max_length(self.model.config))
        self.max_gen_toks = max_gen_toks
        self.windowed = getattr(self.model.config, "sliding_window", None) is not None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer.encode(string, add_special_tokens=bool(add_special_tokens))

    def tok_decode(self, tokens: list[int], **kwargs) -> str:
        return self.tokenizer.decode(tokens, **kwargs)

    @torch.inference_mode()
    def _continuation_score(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        """``(log p(continuation | context), continuation is the greedy one)``, the input cut to
        its last ``max_length`` tokens."""
        inputs = (context + continuation)[-(self.max_length + 1):][:-1]
        logits = self.model(torch.tensor([inputs], device=self.device), use_cache=False,
                            logits_to_keep=len(continuation)).logits[0]
        targets = torch.tensor(continuation, device=self.device)
        log_likelihood = -next_token_loss(logits, targets, reduction="sum").item()
        return log_likelihood, bool((logits.argmax(-1) == targets).all())

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        results = []
        for cache_key, context, continuation in tqdm(requests, disable=disable_tqdm, desc="loglikelihood"):
            result = self._continuation_score(context, continuation)
            results.append(result)
            self.cache_hook.add_partial("loglikelihood", cache_key, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        results = []
        for request in tqdm(requests, disable=disable_tqdm, desc="loglikelihood_rolling"):
            (text,) = request.args
            tokens = self.tok_encode(text)
            if not tokens:
                results.append(0.0)
                continue
            if self.windowed:
                stream = torch.tensor([self.prefix_token_id] + tokens)
                total = -streaming_nll(self.model, stream).double().sum().item()
            else:
                windows = map(make_disjoint_window, get_rolling_token_windows(
                    tokens, self.prefix_token_id, self.max_length, context_len=1))
                total = sum(self._continuation_score(ctx, cont)[0] for ctx, cont in windows)
            results.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return results

    @torch.inference_mode()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        outputs = []
        for request in tqdm(requests, disable=disable_tqdm, desc="generate_until"):
            context, gen_kwargs = request.args
            options = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            until = handle_stop_sequences(options.pop("until", None), eos=eos)
            max_new = options.pop("max_gen_toks")
            prompt = self.tok_encode(context)[-max(1, self.max_length - max_new):]
            sample = bool(options.get("do_sample")) and options.get("temperature", 0.0) > 0
            generated = self.model.generate(
                torch.tensor([prompt], device=self.device), max_new_tokens=max_new, do_sample=sample,
                temperature=options.get("temperature") if sample else None, top_p=None, top_k=None,
                stop_strings=until, tokenizer=self.tokenizer, pad_token_id=self.eot_token_id,
            )
            text = self.tok_decode(generated[0, len(prompt):].tolist(), skip_special_tokens=False)
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return outputs


def run_harness(
    model_dir: str | Path,
    tasks: list[str],
    *,
    include_path: str | Path | None = None,
    limit: float | None = None,
    num_fewshot: int | None = None,
    max_length: int | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Run lm-eval tasks on a saved model; returns lm-eval's results plus our settings."""
    lm = SWATHarnessLM(model_dir, max_length=max_length, device=device)
    task_manager = None
    if include_path:  # indexing lm-eval's thousands of built-in YAMLs takes half a minute: skip when not needed
        task_manager = TaskManager(include_path=str(include_path), include_defaults=False)
    if task_manager is None or any(task not in task_manager.all_tasks for task in tasks):
        task_manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [task for task in tasks if task not in task_manager.all_tasks]
    if unknown:
        raise UserError(f"unknown lm-eval task(s) {unknown}: check the names (`lm-eval ls tasks`) or pass "
                        "--include-path DIR with the YAML files of local tasks")
    output = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager, limit=limit,
                                     num_fewshot=num_fewshot, log_samples=False, random_seed=seed,
                                     numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
    return dict(model=str(model_dir), max_length=lm.max_length, limit=limit, num_fewshot=num_fewshot,
                results=output["results"], higher_is_better=output.get("higher_is_better", {}),
                versions=output.get("versions", {}),
                n_samples=output.get("n-samples", {}))


def harness_rows(result: dict[str, Any]) -> list[list[Any]]:
    """``[task, metric, value, stderr]`` for every numeric metric lm-eval reported."""
    rows = []
    for task, metrics in result["results"].items():
        for key, value in metrics.items():
            metric, _, _filter = key.partition(",")
            if metric.endswith("_stderr") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            stderr = metrics.get(f"{metric}_stderr,{_filter}")
            rows.append([task, metric, float(value),
                         float(stderr) if isinstance(stderr, (int, float)) and not math.isnan(stderr) else None])
    return rows


def harness_markdown(result: dict[str, Any]) -> str:
    return (f"## lm-evaluation-harness: {result['model']}\n\nmax_length {result['max_length']}, "
            f"limit {result['limit']}, few-shot {result['num_fewshot']}\n\n"
            + markdown_table(["task", "metric", "value", "stderr"], harness_rows(result), digits=4))


def score_rows(result: dict[str, Any]) -> list[list[Any]]:
    """The rows of :func:`harness_rows` that are scores: the metrics lm-eval marks higher-is-better
    (accuracies, F1, exact match), not perplexities or counts such as ``sample_len``."""
    better = result.get("higher_is_better", {})
    return [row for row in harness_rows(result) if better.get(row[0], {}).get(row[1]) is True]


def plot_harness(result: dict[str, Any], path: str | Path) -> Path:
    """The scores as bars from 0 (the table has every metric)."""
    rows = score_rows(result)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.8))
    labels = [f"{task}\n{metric}" for task, metric, _, _ in rows]
    errors = [stderr or 0.0 for *_, stderr in rows]
    ax.bar(range(len(rows)), [value for _, _, value, _ in rows], yerr=errors, capsize=3, color="tab:blue")
    ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=30, ha="right")
    ax.set(ylabel="score (higher is better)", title=f"lm-eval: {Path(result['model']).name}")
    if not rows:
        ax.text(0.5, 0.5, "no score among the metrics (see harness.md)", ha="center", transform=ax.transAxes)
    ax.grid(True, axis="y", alpha=0.3)
    return save_figure(fig, path)


def write_harness_outputs(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    return write_outputs(out, "harness", result, harness_markdown(result), lambda path: plot_harness(result, path))
