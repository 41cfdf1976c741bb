"""Mean and spread over seeds of several ``swat reproduce`` outputs (scripts/ablate_defaults.sh).

Every ``OUT/*/reproduce.json`` contributes its runs, labelled by heads, slopes and bias; the table
gives held-out perplexity at 1x and 16x the training length per seed, their mean and
standard deviation, and the total attention weight per query.

    .venv/bin/python scripts/summarize_seeds.py results/defaults --plot retain.png > seeds.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt

from swat.evaluation.results import markdown_table
from swat.experiments.reproduce import ablation_run
from swat.ops import alibi_slopes


def collect(root: Path) -> tuple[dict[str, dict[int, dict]], dict[str, dict]]:
    """``{label: {seed: summary row}}`` from every reproduce.json under ``root``, and each label's
    model config. The label is the attention of the trained model as its saved config resolved it
    (a run is labelled by what it trained with, whatever the defaults were then); the same label
    and seed twice is the same run (training is deterministic), kept once."""
    rows: dict[str, dict[int, dict]] = defaultdict(dict)
    configs = {}
    for path in sorted(root.glob("*/reproduce.json")):
        result = json.loads(path.read_text())
        for row in result["summary"]:
            config = json.loads((ablation_run(path.parent, row["name"]).final / "config.json").read_text())
            label = describe(config)
            rows[label][result["settings"]["seed"]] = row
            configs[label] = config
    return dict(sorted(rows.items())), configs


def describe(config: dict) -> str:
    """E.g. ``H=4, balanced x0.125, b=-4.16``."""
    alibi = config["alibi"]
    if alibi == "balanced":
        alibi = f"balanced x{config['alibi_retain_scale']:g}"
    elif alibi == "standard":
        alibi = "one-sided"
    return f"H={config['num_attention_heads']}, {alibi}, b={config['sigmoid_bias']:.2f}"


def retaining_reward(config: dict) -> float:
    """What the steepest retaining slope adds to the score of the oldest key in the window."""
    return -min(alibi_slopes(config["num_attention_heads"], "balanced",
                             retain_scale=config["alibi_retain_scale"]).tolist()) * (config["sliding_window"] - 1)


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def plot(rows: dict[str, dict[int, dict]], configs: dict[str, dict], path: Path) -> None:
    """Held-out perplexity of balanced SWAT (b = -log w) against the retaining reward, one line per
    head count, mean and spread over seeds; one-sided ALiBi as a dashed line."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for heads in sorted({c["num_attention_heads"] for c in configs.values()}):
        points = sorted(
            (retaining_reward(c), [r["ppl@1x"] for r in rows[label].values()])
            for label, c in configs.items()
            if c["num_attention_heads"] == heads and c["alibi"] == "balanced" and c["sigmoid_bias"] != 0)
        x = [p[0] for p in points]
        mean = [statistics.fmean(p[1]) for p in points]
        sd = [statistics.stdev(p[1]) if len(p[1]) > 1 else 0.0 for p in points]
        seeds = max(len(p[1]) for p in points)
        line = ax.errorbar(x, mean, yerr=sd, marker="o", capsize=3, label=f"{heads} heads, balanced ({seeds} seed{'s' if seeds > 1 else ''})")
        one_sided = [statistics.fmean(r["ppl@1x"] for r in rows[label].values()) for label, c in configs.items()
                     if c["num_attention_heads"] == heads and c["alibi"] == "standard" and c["sigmoid_bias"] != 0]
        if one_sided:
            ax.axhline(one_sided[0], linestyle="--", color=line[0].get_color(), alpha=0.6,
                       label=f"{heads} heads, one-sided ALiBi")
    ax.axvline(1.0, color="gray", linestyle=":", label="default: reward capped at 1")
    ax.set_xscale("symlog", linthresh=0.25)
    ax.set_xlim(left=-0.05)
    ax.set_xlabel("reward of the steepest retaining slope across the window, scale * a_1 * (w - 1)")
    ax.set_ylabel("held-out perplexity @ training length")
    ax.set_title("SWAT (b = -log w), tiny preset, w = 64: retaining slope magnitude")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--plot", type=Path, help="also draw perplexity against the retaining reward (PNG)")
    args = parser.parse_args()
    rows, configs = collect(args.root)
    seeds = sorted({seed for by_seed in rows.values() for seed in by_seed})
    table = []
    for label, by_seed in rows.items():
        at_1x = [by_seed[s]["ppl@1x"] for s in seeds if s in by_seed]
        at_16x = [by_seed[s]["ppl@16x"] for s in seeds if s in by_seed]
        weight = [by_seed[s]["total_weight"] for s in seeds if s in by_seed]
        reward = f"{retaining_reward(configs[label]):.2f}" if configs[label]["alibi"] == "balanced" else ""
        table.append([label, reward] + [f"{by_seed[s]['ppl@1x']:.1f}" if s in by_seed else "" for s in seeds]
                     + [spread(at_1x), spread(at_16x), spread(weight)])
    print(markdown_table(["config", "retaining reward"] + [f"ppl@1x seed {s}" for s in seeds]
                         + ["ppl@1x mean ± sd", "ppl@16x mean ± sd", "total weight"], table))
    if args.plot:
        plot(rows, configs, args.plot)


if __name__ == "__main__":
    main()
