"""Mean and spread over seeds, and claims decided only beyond that spread."""

import math

import pytest

from swat.experiments.claims import check_claims
from swat.experiments.seeds import aggregate_seeds, format_spread


def _seed_row(name, seed, ppl1, ppl16, sink=math.nan):
    return {"name": name, "description": f"{name} model", "seed": seed, "ppl@1x": ppl1, "ppl@16x": ppl16,
            "ppl@16x/1x": ppl16 / ppl1, "sink_ratio": sink}


def test_rows_of_several_seeds_become_their_mean_and_sample_std():
    rows = [_seed_row("swat", 0, 10.0, 11.0, 1.0), _seed_row("mamba2", 0, 14.0, 15.0),
            _seed_row("swat", 1, 12.0, 13.0, 1.2), _seed_row("swat", 2, 14.0, 12.0, 1.4),
            _seed_row("mamba2", 1, 16.0, 15.0)]
    swat, mamba2 = aggregate_seeds(rows)
    assert swat["name"] == "swat" and swat["description"] == "swat model" and swat["seeds"] == 3
    assert swat["ppl@1x"] == pytest.approx(12.0) and swat["ppl@1x std"] == pytest.approx(2.0)  # ddof = 1
    assert swat["ppl@16x"] == pytest.approx(12.0) and swat["ppl@16x std"] == pytest.approx(1.0)
    assert swat["sink_ratio std"] == pytest.approx(0.2) and "seed" not in swat
    assert mamba2["seeds"] == 2 and mamba2["ppl@1x std"] == pytest.approx(math.sqrt(2))
    assert math.isnan(mamba2["sink_ratio"]) and math.isnan(mamba2["sink_ratio std"])  # no attention: stays NaN
    assert format_spread(swat, "ppl@1x") == "12.000 ± 2.000"
    (one,) = aggregate_seeds([_seed_row("swat", 0, 10.0, 11.0)])
    assert one["ppl@1x std"] == 0.0 and format_spread(one, "ppl@1x") == 10.0


def test_a_difference_beyond_the_spread_decides_a_claim():
    rows = [_seed_row("swat", s, 10.0 + 0.1 * s, 10.2 + 0.1 * s) for s in range(3)]
    rows += [_seed_row("mamba2", s, 14.0 + 0.1 * s, 16.0 + 0.1 * s) for s in range(3)]
    (claim,) = check_claims(aggregate_seeds(rows), 16)
    assert claim["claim"].startswith("SWAT beats a linear-recurrent model (Mamba2)") and claim["holds"] is True
    assert "ppl@1x SWAT 10.100 ± 0.100 vs Mamba2 14.100 ± 0.100" in claim["evidence"]
    rows = [_seed_row(r["name"], r["seed"], r["ppl@1x"] + (8 if r["name"] == "swat" else 0),
                      r["ppl@16x"] + (8 if r["name"] == "swat" else 0)) for r in rows]
    assert check_claims(aggregate_seeds(rows), 16)[0]["holds"] is False  # SWAT worse, beyond the spread


def test_a_difference_within_the_spread_is_inconclusive():
    rows = [_seed_row("swat", 0, 10.0, 10.0), _seed_row("swat", 1, 16.0, 16.0), _seed_row("swat", 2, 13.0, 13.0),
            _seed_row("mamba2", 0, 14.0, 14.0), _seed_row("mamba2", 1, 14.5, 14.5), _seed_row("mamba2", 2, 15.0, 15.0)]
    summary = aggregate_seeds(rows)
    assert summary[0]["ppl@1x"] < summary[1]["ppl@1x"]  # SWAT's mean is lower ...
    (claim,) = check_claims(summary, 16)
    assert claim["holds"] is None  # ... but by less than the seeds' spread (3.0 + 0.5)
    one_seed = aggregate_seeds([rows[0], rows[3]])
    assert check_claims(one_seed, 16)[0]["holds"] is True  # one seed: no spread, the difference decides


def test_sink_and_stability_claims_use_the_spread_too():
    rows = [{**_seed_row("transformer++", s, 10.0, 30.0), "sink_ratio": sink} for s, sink in enumerate((1.5, 4.5, 3.0))]
    rows += [{**_seed_row("swat", s, 11.0, 11.0 + 0.1 * s), "sink_ratio": 1.0} for s in range(3)]
    stable, sink = check_claims(aggregate_seeds(rows), 16)
    assert stable["holds"] is True
    assert sink["holds"] is None and "no softmax model formed a sink beyond the spread" in sink["evidence"]
