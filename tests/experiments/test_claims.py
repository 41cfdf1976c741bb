from swat.experiments.claims import SINK_RATIO, check_claims


def _row(name, ppl1, ppl16, sink):
    return {"name": name, "ppl@1x": ppl1, "ppl@16x": ppl16, "ppl@16x/1x": ppl16 / ppl1, "sink_ratio": sink}


def test_claims_are_computed_from_the_numbers():
    summary = [_row("transformer++", 10.0, 30.0, 5.0), _row("swat", 11.0, 11.0, 1.0),
               _row("sigmoid-swa-alibi", 12.0, 12.5, 1.2), _row("swat-no-bias", 11.5, 11.4, 1.0)]
    claims = check_claims(summary, 16)
    assert [c["holds"] for c in claims] == [True, True, True, True]
    assert "ppl at 16x / 1x the training length: SWAT 1.000, Transformer++ 3.000" in claims[0]["evidence"]
    summary[1] = _row("swat", 11.0, 20.0, 6.0)
    assert [c["holds"] for c in check_claims(summary, 16)] == [False, False, False, False]


def test_a_claim_whose_premise_did_not_occur_is_inconclusive():
    summary = [_row("transformer++", 10.0, 30.0, SINK_RATIO - 0.5), _row("swat", 11.0, 11.0, 1.0)]
    sink = check_claims(summary, 16)[1]
    assert sink["claim"] == "sigmoid removes the attention sink" and sink["holds"] is None
    assert "no softmax model formed a sink" in sink["evidence"]


def test_only_claims_whose_configs_ran_are_checked():
    assert check_claims([_row("swat", 11.0, 11.0, 1.0)], 16) == []
    claims = check_claims([_row("swat", 11.0, 12.0, 1.0), _row("transformer++", 10.0, 30.0, 1.0)], 16)
    assert [c["claim"].split()[0] for c in claims] == ["SWAT", "sigmoid"]
    assert claims[0]["holds"] is False  # degrades less than full attention, but by more than STABLE_RATIO
