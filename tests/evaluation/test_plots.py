"""Plots that do not mislead: harness.png draws scores only (not lm-eval's sample_len or a
perplexity next to accuracies), and the length plots' y axes start at 0."""

from __future__ import annotations

import pytest

from swat.evaluation import harness, length

HARNESS_RESULT = {
    "model": "runs/x/final",
    "results": {"piqa": {"alias": "piqa", "acc,none": 0.375, "acc_stderr,none": 0.1, "acc_norm,none": 0.5,
                         "acc_norm_stderr,none": 0.1, "sample_len": 8},
                "lambada_openai": {"perplexity,none": 130.0, "perplexity_stderr,none": 9.0, "acc,none": 0.25}},
    "higher_is_better": {"piqa": {"acc": True, "acc_norm": True},
                         "lambada_openai": {"perplexity": False, "acc": True}},
}


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting functions would save."""
    saved = []
    for module in (harness, length):
        monkeypatch.setattr(module, "save_figure", lambda fig, path: saved.append(fig) or path)
    return saved


def test_harness_plot_draws_the_scores_only(figures, tmp_path):
    assert [row[:3] for row in harness.score_rows(HARNESS_RESULT)] == [
        ["piqa", "acc", 0.375], ["piqa", "acc_norm", 0.5], ["lambada_openai", "acc", 0.25]]
    harness.plot_harness(HARNESS_RESULT, tmp_path / "harness.png")
    (axes,) = figures[0].axes
    assert [bar.get_height() for bar in axes.patches] == [0.375, 0.5, 0.25]
    assert "sample_len" not in " ".join(label.get_text() for label in axes.get_xticklabels())
    assert {row[1] for row in harness.harness_rows(HARNESS_RESULT)} >= {"sample_len", "perplexity"}  # in the table


def test_length_plot_axes_start_at_zero(figures, tmp_path):
    """Perplexities of 130.0 to 131.2 (a 1% change) no longer fill the plot from bottom to top."""
    result = {"model": "swat", "lengths": [{"length": n, "ppl": ppl} for n, ppl in ((256, 130.0), (1024, 131.2))],
              "buckets": [{"start": 0, "end": 512, "nll": 4.87}, {"start": 512, "end": 1024, "nll": 4.88}]}
    length.plot_lengths([result], tmp_path / "length.png", train_length=256)
    left, right = figures[0].axes
    assert left.get_ylim()[0] == 0 and left.get_ylim()[1] >= 131.2
    assert right.get_ylim()[0] == 0
