"""Claims decided from runs paired by seed: the differences' 95% t interval gives the verdict."""

import json
import math
import shutil
from pathlib import Path

import pytest

from swat.cli import main
from swat.errors import UserError
from swat.experiments.claims import SINK_RATIO, check_claims, claims_markdown
from swat.experiments.reproduce import rebuild_summary

DECISIVE = Path(__file__).resolve().parents[2] / "docs" / "results" / "decisive"


def _runs(name, ppl1, ppl16=None, sink=None, seeds=(0, 1, 2)):
    """Made-up per-seed rows of one config, one per seed."""
    ppl16 = ppl16 or ppl1
    sink = sink or [math.nan] * len(ppl1)
    return [{"name": name, "seed": s, "ppl@1x": a, "ppl@16x": b, "ppl@16x/1x": b / a, "sink_ratio": k}
            for s, a, b, k in zip(seeds, ppl1, ppl16, sink, strict=True)]


def _mamba2_claim(rows):
    (claim,) = check_claims(rows, 16)
    assert claim["claim"].startswith("SWAT beats a linear-recurrent model (Mamba2)")
    return claim


def test_a_difference_whose_interval_is_below_zero_holds():
    # the seeds move both configs together (same batches); SWAT is lower by 1.0 +- 0.1 in each
    claim = _mamba2_claim(_runs("swat", [10.0, 16.0, 13.0]) + _runs("mamba2", [11.1, 16.9, 14.0]))
    ppl1 = claim["comparisons"][0]
    assert ppl1["differences"] == pytest.approx([-1.1, -0.9, -1.0]) and ppl1["seeds"] == [0, 1, 2]
    assert ppl1["mean"] == pytest.approx(-1.0)
    assert ppl1["interval"] == pytest.approx([-1.0 - 4.302653 * 0.1 / math.sqrt(3), -1.0 + 4.302653 * 0.1 / math.sqrt(3)])
    assert claim["holds"] is True
    # the old rule cannot see it: each config's own spread over seeds (3.0) hides the gap of 1.0
    assert claim["spread_rule"]["holds"] is None
    assert ppl1["spread_rule"]["first"] == pytest.approx([13.0, 3.0])


def test_a_difference_whose_interval_is_above_zero_fails():
    claim = _mamba2_claim(_runs("swat", [12.0, 18.0, 15.0]) + _runs("mamba2", [11.1, 16.9, 14.0]))
    assert claim["comparisons"][0]["interval"][0] > 0 and claim["holds"] is False


def test_an_interval_that_contains_zero_is_inconclusive():
    claim = _mamba2_claim(_runs("swat", [10.0, 16.0, 13.0]) + _runs("mamba2", [11.0, 16.5, 15.0]))
    low, high = claim["comparisons"][0]["interval"]
    assert claim["comparisons"][0]["mean"] < 0 and low < 0 < high  # lower on average, by too little
    assert claim["holds"] is None


def test_seeds_that_disagree_in_sign_leave_the_claim_inconclusive():
    # the committed decisive run: balanced against one-sided ALiBi, -1.92, -5.38, +2.35 at 1x
    rows = _runs("swat", [70.765, 68.124, 70.118]) + _runs("sigmoid-swa-alibi", [72.688, 73.506, 67.766])
    (claim,) = check_claims(rows, 16)
    assert claim["claim"] == "balanced ALiBi slopes beat one-sided ones" and claim["holds"] is None
    assert [round(d, 2) for d in claim["comparisons"][0]["differences"]] == [-1.92, -5.38, 2.35]
    text = claims_markdown([claim])
    assert "| 70.765 - 72.688 = -1.923 | 68.124 - 73.506 = -5.382 | 70.118 - 67.766 = 2.352 | 2 of 3 below 0 |" in text
    assert "| ppl@1x: balanced - one-sided; ppl@16x: balanced - one-sided | -1.651 [" in text


def test_one_claim_comparison_failing_fails_the_claim_and_one_undecided_leaves_it_open():
    swat = _runs("swat", [10.0, 16.0, 13.0], ppl16=[10.0, 16.0, 13.0])
    lower_at_1x_higher_at_16x = _runs("mamba2", [11.1, 16.9, 14.0], ppl16=[9.1, 14.9, 12.0])
    assert _mamba2_claim(swat + lower_at_1x_higher_at_16x)["holds"] is False
    open_at_16x = _runs("mamba2", [11.1, 16.9, 14.0], ppl16=[9.0, 17.0, 14.0])
    assert _mamba2_claim(swat + open_at_16x)["holds"] is None


def test_runs_pair_by_seed_not_by_order_and_unpaired_seeds_are_left_out():
    swat = _runs("swat", [16.0, 10.0, 13.0, 50.0], seeds=(1, 0, 2, 3))
    mamba2 = _runs("mamba2", [11.1, 14.0, 16.9], seeds=(0, 2, 1))
    comparison = _mamba2_claim(swat + mamba2)["comparisons"][0]
    assert comparison["seeds"] == [0, 1, 2] and comparison["differences"] == pytest.approx([-1.1, -0.9, -1.0])


def test_claims_over_different_seed_counts_say_so():
    """The decisive budget trains five seeds of some configs and three of others: each comparison
    runs over the seeds its two configs share, and the text says which counts there are."""
    rows = _runs("swat", [10.0, 11.0, 12.0, 13.0, 14.0], ppl16=[10.0, 11.0, 12.0, 13.0, 14.0], seeds=range(5))
    rows += _runs("mamba2", [11.0, 12.0, 13.0, 14.0, 15.0], ppl16=[11.0, 12.0, 13.0, 14.0, 15.0], seeds=range(5))
    rows += _runs("transformer++", [10.0, 11.0, 12.0], ppl16=[30.0, 31.0, 40.0])
    claims = check_claims(rows, 16)
    assert {len(x["seeds"]) for c in claims for x in c["comparisons"]} == {3, 5}
    text = claims_markdown(claims)
    assert "Over the seeds both configs ran (3 or 5 here), a claim holds" in text
    assert "| seed 0 | seed 1 | seed 2 | seed 3 | seed 4 | signs |" in text and "| - | - | 3 of 3 below 0 |" in text
    assert "Over 5 seeds, a claim" in claims_markdown([c for c in claims if "Mamba2" in c["claim"]])


def test_one_seed_gives_no_interval_and_no_verdict():
    claim = _mamba2_claim(_runs("swat", [10.0], seeds=(0,)) + _runs("mamba2", [14.0], seeds=(0,)))
    assert claim["comparisons"][0]["interval"] is None and claim["holds"] is None
    assert claim["spread_rule"]["holds"] is True  # the old rule let any difference decide
    text = claims_markdown([claim])
    assert "One seed: no interval can be estimated" in text and "-4.000 (no interval: 1 seed)" in text


def test_the_stability_claim_compares_with_the_threshold_and_with_full_attention():
    rows = _runs("swat", [10.0, 11.0, 12.0], ppl16=[10.0, 11.1, 12.0])
    rows += _runs("transformer++", [10.0, 11.0, 12.0], ppl16=[30.0, 31.0, 40.0])
    (stable,) = check_claims(rows, 16)  # no sink ratios, so no sink claim
    below_threshold, below_full = stable["comparisons"]
    assert below_threshold["second"] == "1.05" and below_threshold["second_values"] == [1.05] * 3
    assert below_threshold["holds"] is True and below_full["holds"] is True and stable["holds"] is True
    drifting = _runs("swat", [10.0, 11.0, 12.0], ppl16=[11.0, 12.2, 13.3])  # ratio 1.1: above the threshold
    (stable,) = check_claims(drifting + rows[3:], 16)
    assert stable["comparisons"][0]["holds"] is False and stable["holds"] is False


def test_the_sink_claim_needs_a_softmax_model_that_formed_a_sink():
    sigmoid = _runs("swat", [10.0] * 3, sink=[1.0, 1.1, 0.9])
    no_sink = _runs("softmax-swa", [10.0] * 3, sink=[0.4, 0.5, 0.45])
    sink_claim = check_claims(sigmoid + no_sink, 16)[0]
    assert sink_claim["claim"] == "sigmoid removes the attention sink"
    assert sink_claim["premise"]["holds"] is False and sink_claim["holds"] is None
    assert sink_claim["comparisons"][0]["holds"] is False  # sigmoid is higher, but the premise is not met
    assert sink_claim["note"].startswith("premise not met: no softmax model formed a sink")
    sink = _runs("transformer++", [10.0] * 3, sink=[SINK_RATIO + 2, SINK_RATIO + 3, SINK_RATIO + 2.5])
    sink_claim = check_claims(sigmoid + no_sink + sink, 16)[1]  # the softmax model with the most sink is chosen
    assert sink_claim["premise"]["second"] == "Transformer++" and sink_claim["holds"] is True


def test_only_claims_whose_configs_ran_are_checked():
    assert check_claims(_runs("swat", [11.0, 12.0, 13.0]), 16) == []
    rows = _runs("swat", [11.0, 12.0, 13.0], sink=[1.0] * 3) + _runs("transformer++", [10.0, 11.0, 12.0], sink=[1.0] * 3)
    assert [c["claim"].split()[0] for c in check_claims(rows, 16)] == ["SWAT", "sigmoid"]


def test_the_committed_decisive_summary_is_what_the_code_writes_from_its_reproduce_json(tmp_path):
    saved = json.loads((DECISIVE / "reproduce.json").read_text())
    shutil.copy(DECISIVE / "reproduce.json", tmp_path / "reproduce.json")
    result = rebuild_summary(tmp_path)  # no run, no checkpoint: only the saved evaluations
    assert (tmp_path / "summary.md").read_text() == (DECISIVE / "summary.md").read_text()
    assert json.loads((tmp_path / "reproduce.json").read_text()) == saved
    claims = {c["claim"].split(" (")[0]: c for c in result["claims"]}
    mamba2 = claims["SWAT beats a linear-recurrent model"]["comparisons"][0]
    assert mamba2["seeds"] == [0, 1, 2, 3, 4]  # five seeds of each: SWAT above Mamba2 on 4 of them
    assert [round(d, 2) for d in mamba2["differences"]] == [1.18, 1.53, -0.49, 2.26, 0.01]


def test_summarize_rebuilds_from_reproduce_json_and_says_so(tmp_path, capsys):
    shutil.copy(DECISIVE / "reproduce.json", tmp_path / "reproduce.json")
    assert main(["reproduce", "--out", str(tmp_path), "--summarize"]) == 0
    assert "| claim | difference | seed 0 | seed 1 | seed 2 | seed 3 | seed 4 | signs |" in capsys.readouterr().out
    summary = (tmp_path / "summary.md").read_text()
    assert f"rebuilt from the saved evaluations in reproduce.json by `swat reproduce --out {tmp_path} --summarize`" in summary
    with pytest.raises(UserError, match="does not exist: --summarize rebuilds the summary of an earlier"):
        rebuild_summary(tmp_path / "missing")
    assert main(["reproduce", "--out", str(tmp_path / "missing"), "--summarize"]) == 2


def test_summarize_refuses_a_reproduce_json_of_an_older_format(tmp_path):
    (tmp_path / "reproduce.json").write_text(json.dumps({"settings": {}, "summary": []}))
    with pytest.raises(UserError, match="has no runs, length: it was written by an older swat reproduce"):
        rebuild_summary(tmp_path)
