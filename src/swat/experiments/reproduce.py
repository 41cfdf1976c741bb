"""``swat reproduce``: the paper's comparisons, trained and evaluated on the embedded corpus.

Eight configs of one training preset differ only in their attention (docs/spec.md section 5);
all share the seed, the data and the token budget (``steps x batch x seq_len``). A ``mamba2``
config (named with ``--configs``, and in the ``decisive`` budget) is the linear-recurrent
baseline of the same parameter count (:mod:`swat.experiments.mamba2`). Each config is trained
with :func:`swat.training.train` in ``OUT/runs/NAME`` (``OUT/runs/NAME/seed-S`` with several
seeds; :func:`ablation_run`), then all are evaluated on the held-out split:

- perplexity at 1x, 2x, 4x, 8x and 16x the training length, and loss by position
  (:mod:`swat.evaluation.length`);
- passkey retrieval inside the window, between the window and the receptive field, and beyond
  (:mod:`swat.evaluation.passkey`);
- the attention sink, total weight and weight variance per head (:mod:`swat.evaluation.attention`).

``OUT/summary.md`` holds the table and the paper's claims checked against these numbers
(:mod:`swat.experiments.claims`); with several seeds, the mean and standard deviation over them
(:mod:`swat.experiments.seeds`), and a claim is decided from the differences of configs paired by
seed, where their 95% interval excludes 0. ``OUT/reproduce.json`` holds everything, with the
settings and wall times; :func:`rebuild_summary` writes the summary and the claims again from it
(``swat reproduce --out OUT --summarize``), with no run or checkpoint needed.

The ``decisive`` budget (:data:`BUDGETS`) is the comparison the paper is about at a scale that
can tell the models apart on two CPU cores: SWAT, Transformer++, softmax SWA, sigmoid SWA with
one-sided ALiBi and Mamba2, 5x the ``tiny`` recipe's tokens each (1500 steps x 8 x 256 = 3.1M),
five seeds for the three configs of the claims whose differences are small (SWAT, sigmoid SWA with
one-sided ALiBi, Mamba2) and three for the others.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM

from swat.data.corpus import default_data_dir, shakespeare_corpus
from swat.data.prepare import prepare_data
from swat.data.shards import MANIFEST_NAME, read_manifest
from swat.errors import UserError
from swat.evaluation.attention import diagnose_attention, write_attention_outputs
from swat.evaluation.heldout import read_tokens, sequences_of
from swat.evaluation.length import evaluate_lengths, write_length_outputs
from swat.evaluation.model_info import has_attention, receptive_field
from swat.evaluation.passkey import NoPasskeyCellFits, default_grid, evaluate_passkey, write_passkey_outputs
from swat.evaluation.results import markdown_table, write_json, write_text
from swat.experiments.claims import check_claims, claims_markdown, extrapolation_column
from swat.experiments.mamba2 import mamba2_fields, parameter_count
from swat.experiments.seeds import STD_SUFFIX, aggregate_seeds, format_spread
from swat.models import SWATConfig
from swat.models.loading import load_model
from swat.ops.device import describe_machine
from swat.training import TrainConfig, load_config, train
from swat.training.distributed import pick_device
from swat.training.optim import build_optimizer
from swat.training.run_dir import RunDir
from swat.training.sampler import split_batch
from swat.training.trainer import use_bf16, window_loss
from swat.utils.checks import check_count, check_seeds

LENGTH_MULTIPLES = (1, 2, 4, 8, 16)
TRAIN_SHARE = 0.8  # of --minutes spent training; the rest evaluates
ATTENTION_SEQUENCES = 4  # held-out sequences of the training length for the attention statistics
MAMBA2 = "mamba2"
# A budget's ``seeds`` train every config; ``more_seeds`` adds seeds to the configs it names.
BUDGETS = {
    "decisive": dict(names=("transformer++", "softmax-swa", "sigmoid-swa-alibi", "swat", MAMBA2), steps=1500,
                     seeds=(0, 1, 2), more_seeds={name: (3, 4) for name in ("sigmoid-swa-alibi", "swat", MAMBA2)},
                     eval_tokens=32768),
}


@dataclass(frozen=True)
class Ablation:
    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)
    train_short: bool = False  # seq_len = window, batch scaled up to keep the tokens per step


def ablation_run(out: str | Path, name: str, seed: int | None = None) -> RunDir:
    """Where ``swat reproduce --out OUT`` trains the config ``name`` (with one of several seeds)."""
    root = Path(out) / "runs" / name
    return RunDir(root if seed is None else root / f"seed-{seed}")


def ablations(window: int) -> list[Ablation]:
    """The paper's baselines and SWAT (docs/spec.md section 5) as overrides of the training
    preset's model section, and SWAT with ``b = 0``. The sigmoid configs keep ``SWATConfig``'s
    default ``sigmoid_bias = -log(w)``; ``swat-no-bias`` measures what that default buys."""
    return [
        Ablation("transformer++", "softmax, full attention, RoPE",
                 dict(attention_activation="softmax", alibi="none", sliding_window=None)),
        Ablation("softmax-swa", "softmax sliding window, RoPE", dict(attention_activation="softmax", alibi="none")),
        Ablation("sigmoid-swa-rope", "sigmoid SWA, RoPE only", dict(alibi="none")),
        Ablation("sigmoid-swa-alibi", "sigmoid SWA, standard one-sided ALiBi + RoPE", dict(alibi="standard")),
        Ablation("swat", f"SWAT: sigmoid, balanced ALiBi + RoPE, b = -log(w) = {-math.log(window):.2f}",
                 dict(alibi="balanced")),
        Ablation("swat-no-rope", "SWAT without RoPE (balanced ALiBi only)", dict(alibi="balanced", use_rope=False)),
        Ablation("swat-train-short", "SWAT trained short (seq_len = window)", dict(alibi="balanced"), train_short=True),
        Ablation("swat-no-bias", "SWAT with sigmoid_bias = 0", dict(alibi="balanced", sigmoid_bias=0.0)),
    ]


def extra_ablations(window: int) -> list[Ablation]:
    """Configs run only when named (``--configs``): the magnitude of the retaining half of the
    balanced slopes (docs/spec.md section 2 leaves it to this evidence; 1 is the paper's, the
    default is ``SWATConfig.alibi_retain_scale``)."""
    return [
        Ablation(f"swat-retain-{scale:g}", f"SWAT, retaining slopes scaled by {scale:g}",
                 dict(alibi="balanced", alibi_retain_scale=scale))
        for scale in (1.0, 0.5, 0.25, 0.125, 0.0625, 0.0)
    ]


def mamba2_ablation() -> Ablation:
    """The linear-recurrent baseline; its model section is sized in :func:`ablation_config`."""
    return Ablation(MAMBA2, "Mamba2 (linear recurrent) of the same parameter count")


def choose_ablations(window: int, names: Sequence[str] | None) -> list[Ablation]:
    """The eight configs (``names=None``), or those named (in the order of the known configs)."""
    chosen = ablations(window)
    if names is None:
        return chosen
    if not names:
        raise UserError("no config named: pass None for the eight configs, or names such as transformer++,swat")
    known = chosen + [mamba2_ablation()] + extra_ablations(window)
    unknown = sorted(set(names) - {a.name for a in known})
    if unknown:
        raise UserError(f"unknown configs {unknown}: choose from {[a.name for a in known]}")
    return [a for a in known if a.name in names]


def ablation_config(preset: str, overrides: Sequence[str], ablation: Ablation, steps: int,
                    seed: int | None = None) -> TrainConfig:
    """The training config of one ablation: the ``preset`` with the user's ``overrides``, then the
    ablation's model fields, ``steps`` optimiser steps, evaluation and checkpoints only at the end
    (and for ``train_short`` sequences of one window, the batch scaled to keep the tokens per step).
    The ``mamba2`` baseline keeps everything but the model, which :func:`mamba2_fields` sizes to
    the SWAT model's parameter count (the user's ``model.*`` overrides shape that SWAT model)."""
    base = load_config(preset, overrides)
    if ablation.name == MAMBA2:
        return _mamba2_config(preset, overrides, base, steps, seed)
    own = _run_settings(ablation.name, base, steps, seed)
    own += [f"model.{key}={json.dumps(value)}" for key, value in ablation.model.items()]
    if ablation.train_short:
        window = ablation.model.get("sliding_window", base.model_config().sliding_window)
        factor = max(1, base.data.seq_len // window)
        own += [f"data.seq_len={window}", f"train.batch_size={base.train.batch_size * factor}",
                f"train.micro_batch_size={base.train.micro_batch_size * factor}"]
    return load_config(preset, [*overrides, *own])


def _run_settings(name: str, base: TrainConfig, steps: int, seed: int | None) -> list[str]:
    """The overrides every ablation shares: its name, steps (warm-up at most a tenth of them),
    evaluation and checkpoints only at the end, and the seed when one is given."""
    own = [f"name={name}", f"train.steps={steps}",
           f"optim.warmup_steps={min(base.optim.warmup_steps, max(1, steps // 10))}",
           "eval.every=0", "checkpoint.every=0", "checkpoint.keep_last=1"]
    return own if seed is None else [*own, f"train.seed={seed}"]


def _mamba2_config(preset: str, overrides: Sequence[str], base: TrainConfig, steps: int,
                   seed: int | None) -> TrainConfig:
    vocab_size = read_manifest(base.data.dir)["vocab_size"]
    swat = base.model_config(vocab_size=vocab_size)
    fields = mamba2_fields(parameter_count(swat), vocab_size=vocab_size, hidden_size=swat.hidden_size,
                           tie_word_embeddings=swat.tie_word_embeddings)
    own = _run_settings(MAMBA2, base, steps, seed) + ["model.preset=null"]
    own += [f"model.{key}={json.dumps(value)}" for key, value in fields.items()]
    return load_config(preset, [*(o for o in overrides if not o.startswith("model.")), *own])


def model_sizes(configs: dict[str, TrainConfig], vocab_size: int) -> dict[str, int]:
    """Parameters of each config's model."""
    return {name: parameter_count(config.model_config(vocab_size=vocab_size)) for name, config in configs.items()}


def seconds_per_step(config: TrainConfig, vocab_size: int, repeats: int = 2) -> float:
    """Wall time of one optimiser step of ``config`` (forward, backward, AdamW), measured here
    through the call the trainer trains with (``window_loss``), on its device and precision."""
    torch.manual_seed(0)
    device = pick_device(config.train.device, local_rank=0)
    model = AutoModelForCausalLM.from_config(config.model_config(vocab_size=vocab_size)).to(device)
    optimizer = build_optimizer(model, config.optim)
    micro, accumulation = split_batch(config.train.batch_size, config.train.micro_batch_size, world_size=1)
    windows = torch.randint(0, vocab_size, (micro, config.data.seq_len + 1), device=device)
    bf16 = use_bf16(config.train.bf16, device)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for _ in range(accumulation):
            window_loss(model, windows, bf16=bf16).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def steps_within(minutes: float, step_seconds: float, configs: int) -> int:
    """Optimiser steps per config (at least 10) that train ``configs`` configs of ``step_seconds``
    a step in ``TRAIN_SHARE`` of ``minutes``."""
    steps = max(10, int(minutes * 60 * TRAIN_SHARE / configs / step_seconds))
    print(f"--minutes {minutes:g}: one step takes {step_seconds:.2f} s here, so {steps} steps per config")
    return steps


def ensure_data(data_dir: str | Path | None) -> Path:
    """The prepared data directory; the embedded Shakespeare corpus is prepared if missing."""
    path = Path(data_dir) if data_dir is not None else Path(default_data_dir())
    if (path / MANIFEST_NAME).is_file():
        return path
    if data_dir is not None:
        raise FileNotFoundError(f"{path} is not a prepared data directory: make one with `swat data prepare`")
    print(f"preparing the embedded Shakespeare corpus in {path} (once)")
    corpus = shakespeare_corpus()
    prepare_data(corpus.train, path, heldout_files=corpus.heldout)
    return path


@dataclass(frozen=True)
class Plan:
    """What a reproduction trains and evaluates, decided (and checked) before anything is trained."""
    preset: str
    overrides: list[str]  # the user's
    base_overrides: list[str]  # the user's after the data directory's
    data_dir: Path
    base: TrainConfig
    window: int
    ablations: list[Ablation]
    seeds: dict[str, list[int | None]]  # per config; [None]: the preset's seed
    steps: int
    eval_tokens: int
    tokens_per_config: int
    parameters: dict[str, int]
    estimated_train_seconds: float
    budget: str | None
    minutes: float
    command: str | None


def plan_reproduction(*, minutes: float = 60.0, steps: int | None = None, preset: str = "tiny",
                      overrides: Sequence[str] = (), data_dir: str | Path | None = None,
                      names: Sequence[str] | None = None, eval_tokens: int | None = None, passkey_trials: int = 5,
                      seeds: Sequence[int] | None = None, budget: str | None = None,
                      command: str | None = None) -> Plan:
    """The :class:`Plan` of :func:`reproduce`'s arguments: the budget's values where an argument is
    None, the step count from ``minutes`` when ``steps`` is None, the evaluation tokens from the
    budget; each config's step measured once, for the step count and the estimate (printed)."""
    more_seeds: dict[str, Sequence[int]] = {}
    if budget is not None:
        if budget not in BUDGETS:
            raise UserError(f"unknown budget {budget!r}: choose from {sorted(BUDGETS)}")
        preset_values = BUDGETS[budget]
        names = preset_values["names"] if names is None else names
        steps = preset_values["steps"] if steps is None else steps
        if seeds is None:
            seeds, more_seeds = preset_values["seeds"], preset_values["more_seeds"]
        eval_tokens = preset_values["eval_tokens"] if eval_tokens is None else eval_tokens
    _check_settings(minutes=minutes, steps=steps, eval_tokens=eval_tokens, passkey_trials=passkey_trials, seeds=seeds)
    data_dir = ensure_data(data_dir)
    vocab_size = read_manifest(data_dir)["vocab_size"]
    base_overrides = [f"data.dir={data_dir}", *overrides]
    base = load_config(preset, base_overrides)
    window = base.model_config().sliding_window
    if window is None:
        raise UserError("the base config must have a sliding_window (the SWAT window of the ablations)")
    chosen = choose_ablations(window, names)
    seed_lists = {a.name: [None] if seeds is None else [*seeds, *more_seeds.get(a.name, ())] for a in chosen}
    probes = {a.name: ablation_config(preset, base_overrides, a, 1) for a in chosen}
    sizes = model_sizes(probes, vocab_size)
    print("parameters: " + ", ".join(f"{name} {count:,}" for name, count in sizes.items()))
    per_step = measure_steps(probes, vocab_size)
    if steps is None:
        steps = steps_within(minutes, per_step[chosen[0].name], sum(map(len, seed_lists.values())))
    tokens = steps * base.train.batch_size * base.data.seq_len
    if eval_tokens is None:
        eval_tokens = max(LENGTH_MULTIPLES[-1] * base.data.seq_len, int(16384 * minutes / 60))
    runs = sum(map(len, seed_lists.values()))
    print(f"{runs} run{'s' * (runs != 1)} of {steps} steps x "
          f"{base.train.batch_size * base.data.seq_len:,} tokens = {tokens:,} training tokens each, "
          f"seeds {_shown_seeds(seed_lists, base.train.seed)}, data {data_dir}")
    return Plan(preset=preset, overrides=list(overrides), base_overrides=base_overrides, data_dir=data_dir,
                base=base, window=window, ablations=chosen, seeds=seed_lists, steps=steps, eval_tokens=eval_tokens,
                tokens_per_config=tokens, parameters=sizes,
                estimated_train_seconds=estimate_training_seconds(per_step, steps, seed_lists),
                budget=budget, minutes=minutes, command=command)


def _shown_seeds(seed_lists: dict[str, list[int | None]], preset_seed: int) -> str:
    """``0, 1, 2`` when every config has those seeds, else each config's (``swat 0-4``)."""
    shown = {name: ", ".join(str(preset_seed if s is None else s) for s in seeds) for name, seeds in seed_lists.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"{name} {seeds}" for name, seeds in shown.items())


def train_ablations(plan: Plan, out: Path) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
    """Every config of ``plan`` once per seed (finished runs reused): the runs (name, seed, label,
    model path) and each run's training seconds (None where it was reused)."""
    runs, train_seconds = [], {}
    for ablation in plan.ablations:
        for seed in plan.seeds[ablation.name]:
            run = ablation_run(out, ablation.name, seed)
            label = ablation.name if seed is None else f"{ablation.name}/seed-{seed}"
            config = ablation_config(plan.preset, plan.base_overrides, ablation, plan.steps, seed)
            train_seconds[label] = train_or_reuse(run, config)
            runs.append(dict(name=ablation.name, seed=config.train.seed, label=label, path=str(run.final)))
    return runs, train_seconds


def reproduce(
    out: str | Path = "results",
    *,
    minutes: float = 60.0,
    steps: int | None = None,
    preset: str = "tiny",
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    names: Sequence[str] | None = None,
    eval_tokens: int | None = None,
    passkey_trials: int = 5,
    seeds: Sequence[int] | None = None,
    budget: str | None = None,
    command: str | None = None,
    estimate_only: bool = False,
) -> dict[str, Any]:
    """Train the ablations (or those in ``names``) and evaluate them; returns what
    ``reproduce.json`` holds. With ``steps=None`` the step count comes from ``minutes``; the
    held-out tokens per evaluation length (``eval_tokens``) default to 16k per hour of budget, at
    least one sequence of the longest length. ``seeds`` trains every config once per seed (default:
    the preset's one seed). A ``budget`` from :data:`BUDGETS` sets ``names``, ``steps``, ``seeds``
    and ``eval_tokens`` where they are None; ``command`` (the command line that ran it) and the
    machine are recorded in the results. With ``estimate_only`` nothing is trained: the parameter
    counts and the estimated training time are printed and returned. Every setting is checked
    before anything is trained (:func:`plan_reproduction`), and the training time estimated from
    the measured seconds per step is printed before it starts."""
    started = time.perf_counter()
    plan = plan_reproduction(minutes=minutes, steps=steps, preset=preset, overrides=overrides, data_dir=data_dir,
                             names=names, eval_tokens=eval_tokens, passkey_trials=passkey_trials, seeds=seeds,
                             budget=budget, command=command)
    if estimate_only:
        return dict(parameters=plan.parameters, steps=plan.steps, seeds=plan.seeds,
                    tokens_per_config=plan.tokens_per_config, estimated_train_seconds=plan.estimated_train_seconds,
                    machine=describe_machine())
    out = Path(out)
    runs, train_seconds = train_ablations(plan, out)
    eval_start = time.perf_counter()
    evaluation = evaluate_runs({r["label"]: Path(r["path"]) for r in runs}, plan.data_dir, plan.base, out,
                               eval_tokens=plan.eval_tokens, passkey_trials=passkey_trials)
    wall_seconds = dict(train=train_seconds, evaluate=time.perf_counter() - eval_start,
                        total=time.perf_counter() - started)
    return summarize(out, _result(plan, runs, wall_seconds, evaluation))


def _result(plan: Plan, runs: list[dict[str, Any]], wall_seconds: dict[str, Any],
            evaluation: dict[str, Any]) -> dict[str, Any]:
    """What ``reproduce.json`` holds before the summary: the settings, the runs, the times and the
    evaluations."""
    base = plan.base
    settings = dict(preset=plan.preset, overrides=plan.overrides, data=str(plan.data_dir), steps=plan.steps,
                    batch_size=base.train.batch_size, seq_len=base.data.seq_len,
                    tokens_per_config=plan.tokens_per_config, seed=base.train.seed,
                    seeds=sorted({r["seed"] for r in runs}), budget=plan.budget, window=plan.window,
                    minutes=plan.minutes, eval_tokens=plan.eval_tokens, command=plan.command,
                    machine=describe_machine())
    ablations = [dict(name=a.name, description=a.description, model=a.model, train_short=a.train_short)
                 for a in plan.ablations]
    return dict(settings=settings, ablations=ablations, parameters=plan.parameters, runs=runs,
                estimated_train_seconds=plan.estimated_train_seconds, wall_seconds=wall_seconds, **evaluation)


def summarize(out: str | Path, result: dict[str, Any]) -> dict[str, Any]:
    """The per-seed rows, their mean over seeds and the claims of ``result``'s evaluations, written
    with everything into ``OUT/reproduce.json`` and as ``OUT/summary.md``; returns ``result``."""
    result["per_seed"] = summary_rows(result)
    result["summary"] = aggregate_seeds(result["per_seed"])
    result["claims"] = check_claims(result["per_seed"], LENGTH_MULTIPLES[-1])
    write_json(Path(out) / "reproduce.json", result)
    write_text(Path(out) / "summary.md", summary_markdown(result))
    return result


def rebuild_summary(out: str | Path, command: str | None = None) -> dict[str, Any]:
    """``OUT/summary.md`` and the summary and claims in ``OUT/reproduce.json`` again from the
    evaluations saved in that ``reproduce.json`` (nothing is trained or evaluated, so the runs
    and their checkpoints need not exist): what a change of the summary or of the claims'
    statistics needs. ``command`` (the command line that rebuilt it) is recorded as
    ``summarized_by``."""
    path = Path(out) / "reproduce.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: --summarize rebuilds the summary of an earlier `swat reproduce "
                        "--out OUT`; pass that OUT")
    result = json.loads(path.read_text())
    missing = [key for key in ("runs", "length") if key not in result]
    if missing:
        raise UserError(f"{path} has no {', '.join(missing)}: it was written by an older swat reproduce, whose "
                        "evaluations --summarize cannot read; run swat reproduce again with that --out")
    if command is not None:
        result["summarized_by"] = command
    return summarize(out, result)


def measure_steps(configs: dict[str, TrainConfig], vocab_size: int) -> dict[str, float]:
    """Seconds per optimiser step of every config, each measured once here (printed)."""
    per_step = {name: seconds_per_step(config, vocab_size) for name, config in configs.items()}
    print("measured seconds per step: " + ", ".join(f"{name} {t:.3f}" for name, t in per_step.items()))
    return per_step


def estimate_training_seconds(per_step: dict[str, float], steps: int, seeds: dict[str, list[int | None]]) -> float:
    """Training wall time of ``steps`` steps of every config once per seed of its own (printed)."""
    total = sum(per_step[name] * len(seeds[name]) for name in per_step) * steps
    runs = sum(map(len, seeds.values()))
    print(f"estimated training time {total / 3600:.2f} h ({runs} run{'s' * (runs != 1)} x {steps} steps), "
          "plus evaluation")
    return total


def _check_settings(*, minutes: float, steps: int | None, eval_tokens: int | None, passkey_trials: int,
                    seeds: Sequence[int] | None) -> None:
    if seeds is not None:
        check_seeds(seeds)
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise UserError(f"minutes must be a finite number > 0 (the wall-time budget), got {minutes!r}")
    for name, value, optional in (("steps", steps, True), ("eval_tokens", eval_tokens, True),
                                  ("passkey_trials", passkey_trials, False)):
        if value is not None or not optional:
            check_count(name, value)


def train_or_reuse(run: RunDir, config: TrainConfig) -> float | None:
    """Train one config into ``run`` (continuing an interrupted run from its checkpoints) and
    return the seconds it took, or reuse a finished run trained with this config (None)."""
    if run.is_finished():
        check_reusable(run, config)
        print(f"{config.name}: reusing {run.final}")
        return None
    start = time.perf_counter()
    train(config, run.root, resume=True)  # with no checkpoint yet, a fresh start
    return time.perf_counter() - start


def check_reusable(run: RunDir, config: TrainConfig) -> None:
    """A finished run is reused only if it was trained with exactly this config, including the
    model fields its config resolved from defaults then (``sigmoid_bias``, ``alibi_retain_scale``)."""
    saved = yaml.safe_load(run.config.read_text())
    if saved != config.to_dict():
        raise UserError(f"{run.root} holds a run trained with another config (e.g. another step count): pass "
                        f"--steps {saved.get('train', {}).get('steps')} to reuse it, or another --out")
    if config.model_type != "swat":
        return
    trained = SWATConfig.from_pretrained(run.final)
    wanted = config.model_config(vocab_size=trained.vocab_size)
    if _bias_and_slopes(trained) != _bias_and_slopes(wanted):
        raise UserError(f"{run.root} was trained with other defaults of sigmoid_bias or alibi_retain_scale "
                        "than now: delete it to train it again, or use another --out")


def _bias_and_slopes(model_config: SWATConfig) -> tuple[float, list[float] | None]:
    """What a model's attention adds to its scores: ``b`` and the slopes ``m_h`` (None without ALiBi)."""
    slopes = model_config.slopes()
    return model_config.sigmoid_bias, None if slopes is None else slopes.tolist()


def evaluate_runs(models: dict[str, Path], data_dir: Path, base: TrainConfig, out: Path, *, eval_tokens: int,
                  passkey_trials: int) -> dict[str, Any]:
    """Length, passkey and attention evaluations of every trained model, outputs into ``out``.
    Where the passkey prompt fits no cell of the grid (a window and depth far smaller than the
    prompt), the passkey test is skipped and ``passkey_skipped`` says why. A model without
    attention (Mamba2) has no attention statistics: its entry in ``attention`` is None."""
    train_length = base.data.seq_len
    lengths = [m * train_length for m in LENGTH_MULTIPLES]
    swat_config = base.model_config()
    passkey_lengths, distances = default_grid(swat_config)
    length_results, passkey_results, attention_results, passkey_skipped = [], [], [], None
    for name, path in tqdm(models.items(), desc="evaluating", unit="model"):
        model, tokenizer = load_model(path)
        tokens = read_tokens(data_dir, tokenizer, max_tokens=max(lengths[-1], eval_tokens))
        length_results.append(evaluate_lengths(model, tokens, lengths, max_tokens=eval_tokens, label=name))
        if passkey_skipped is None:
            try:
                passkey_results.append(evaluate_passkey(model, tokenizer, passkey_lengths, distances,
                                                        trials=passkey_trials, label=name))
            except NoPasskeyCellFits as error:
                passkey_skipped = str(error)
                print(f"passkey skipped: {passkey_skipped}")
        attention_results.append(diagnose_attention(model, sequences_of(tokens, train_length, ATTENTION_SEQUENCES),
                                                    label=name) if has_attention(model.config) else None)
    write_length_outputs(length_results, out, train_length)
    if passkey_skipped is None:
        write_passkey_outputs(passkey_results, out)
    diagnosed = [r for r in attention_results if r is not None]
    if diagnosed:
        write_attention_outputs(diagnosed, out)
    return dict(length=length_results, passkey=None if passkey_skipped else passkey_results,
                passkey_skipped=passkey_skipped, attention=attention_results,
                train_length=train_length, window=swat_config.sliding_window,
                receptive_field=receptive_field(swat_config))


def _passkey_regimes(passkey: dict[str, Any], window: int, reach: int) -> dict[str, float]:
    """Mean accuracy over the cells whose key lies inside the window, between it and the
    receptive field, and beyond."""
    regimes = {"inside window": [], "window..reach": [], "beyond reach": []}
    for cell in passkey["cells"]:
        if cell["trials"]:
            d = cell["distance"]
            key = "inside window" if d < window else "window..reach" if d < reach else "beyond reach"
            regimes[key].append(cell["accuracy"])
    return {k: (sum(v) / len(v) if v else math.nan) for k, v in regimes.items()}


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trained run (config and seed): perplexity at every multiple of the training
    length and its growth to the longest, passkey accuracy per regime and the mean attention
    statistics (NaN for a model without attention)."""
    rows = []
    passkeys = result["passkey"] or [{"cells": []}] * len(result["runs"])
    descriptions = {a["name"]: a["description"] for a in result["ablations"]}
    longest = LENGTH_MULTIPLES[-1]
    for run, length, passkey, attention in zip(result["runs"], result["length"], passkeys,
                                               result["attention"], strict=True):
        ppl = {f"ppl@{m}x": row["ppl"] for m, row in zip(LENGTH_MULTIPLES, length["lengths"], strict=True)}
        means = attention["mean"] if attention else {}
        rows.append(dict(name=run["name"], description=descriptions[run["name"]], seed=run["seed"], **ppl,
                         **{extrapolation_column(longest): ppl[f"ppl@{longest}x"] / ppl["ppl@1x"]},
                         **{f"passkey {k}": v for k, v in
                            _passkey_regimes(passkey, result["window"], result["receptive_field"]).items()},
                         **{k: means.get(k, math.nan) for k in ("sink_share", "sink_ratio", "total_weight")}))
    return rows


def summary_markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    rows = result["summary"]
    columns = [k for k in rows[0] if k not in ("name", "description", "seeds") and not k.endswith(STD_SUFFIX)]
    seeds = s.get("seeds") or [s["seed"]]
    text = (f"# swat reproduce\n\n`{s['preset']}` preset, window {s['window']}, training length {s['seq_len']}, "
            f"{s['steps']} steps x {s['batch_size']} sequences = {s['tokens_per_config']:,} tokens per config, "
            f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}, data `{s['data']}`. "
            f"Wall time {result['wall_seconds']['total'] / 60:.1f} min "
            f"(evaluation {result['wall_seconds']['evaluate'] / 60:.1f} min) on {s.get('machine', 'an unrecorded machine')}")
    reused = [name for name, seconds in result["wall_seconds"]["train"].items() if seconds is None]
    text += f"; {len(reused)} of the runs were trained by an earlier invocation.\n\n" if reused else ".\n\n"
    if s.get("command"):
        text += f"Command: `{s['command']}`.\n\n"
    if result.get("summarized_by"):
        text += (f"Summary and claims rebuilt from the saved evaluations in reproduce.json by "
                 f"`{result['summarized_by']}`.\n\n")
    text += "Parameters: " + ", ".join(f"{name} {count:,}" for name, count in result["parameters"].items()) + ".\n\n"
    text += markdown_table(["config", "what", "seeds"] + columns,
                           [[r["name"], r["description"], r["seeds"]] + [format_spread(r, c) for c in columns]
                            for r in rows])
    text += ("\nppl@Nx: held-out perplexity on sequences N times the training length; ppl@16x/1x its growth. "
             f"passkey: accuracy by where the key lies (window {result['window']}, receptive field "
             f"{result['receptive_field']}). sink_share: attention on the first tokens as a share of each "
             "query's total; sink_ratio: that share over a uniform head's; total_weight: sum of a query's "
             "weights (1 for softmax); '-' where a model has no attention. With several seeds a cell is "
             "mean ± standard deviation over them.\n")
    if result.get("passkey_skipped"):
        text += f"\npasskey: skipped, {result['passkey_skipped']}\n"
    text += "\n## Claims\n\n"
    return text + claims_markdown(result["claims"])
