"""Mean and spread over seeds; values paired by seed; Student's t quantiles and intervals."""

import math

import pytest

from swat.experiments.seeds import (
    aggregate_seeds,
    by_seed,
    format_spread,
    mean_interval,
    t_quantile,
    t_within,
)


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


def test_by_seed_keys_a_configs_finite_values_by_their_seed():
    rows = [_seed_row("swat", 2, 12.0, 13.0, 1.0), _seed_row("mamba2", 0, 14.0, 15.0),
            _seed_row("swat", 0, 10.0, 11.0, math.nan), {**_seed_row("swat", 1, 11.0, 11.0), "sink_ratio": None}]
    assert by_seed(rows, "swat", "ppl@1x") == {2: 12.0, 0: 10.0, 1: 11.0}
    assert by_seed(rows, "swat", "sink_ratio") == {2: 1.0}  # NaN and None (NaN read back from JSON) are left out
    assert by_seed(rows, "mamba2", "sink_ratio") == {} and by_seed(rows, "absent", "ppl@1x") == {}


# Student's t quantiles as printed in standard tables (three decimals)
TABLE = [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 4, 2.776), (0.975, 5, 2.571),
         (0.975, 6, 2.447), (0.975, 9, 2.262), (0.975, 10, 2.228), (0.975, 20, 2.086), (0.975, 30, 2.042),
         (0.975, 60, 2.000), (0.975, 120, 1.980), (0.95, 1, 6.314), (0.95, 4, 2.132), (0.95, 10, 1.812),
         (0.995, 2, 9.925), (0.995, 5, 4.032), (0.9, 3, 1.638)]


@pytest.mark.parametrize(("probability", "df", "quantile"), TABLE)
def test_t_quantiles_match_the_printed_table(probability, df, quantile):
    assert round(t_quantile(probability, df), 3) == quantile


def test_t_quantiles_are_exact_where_they_are_known_in_closed_form():
    # df 1 is Cauchy: tan(pi (p - 1/2)); df 2: (2p - 1) sqrt(2 / (4p (1 - p)))
    for p in (0.6, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), rel=1e-12)
    assert t_quantile(0.975, 2000) == pytest.approx(1.9611508261, abs=1e-9)  # towards the normal 1.95996
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-12)
    for df in (1, 2, 3, 4, 7, 8):
        assert t_within(t_quantile(0.975, df), df) == pytest.approx(0.95, abs=1e-13)
    with pytest.raises(ValueError, match="0.5 <= probability < 1 and df >= 1"):
        t_quantile(0.975, 0)


def test_mean_interval_is_the_t_interval_of_the_mean():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])  # std 1, t(0.975, 2) = 4.3027
    assert mean == 2.0 and high - mean == pytest.approx(mean - low)
    assert high - mean == pytest.approx(4.302652729749464 / math.sqrt(3), rel=1e-12)
    assert mean_interval([5.0, 5.0]) == (5.0, 5.0, 5.0)
    assert mean_interval([1.0]) is None and mean_interval([]) is None  # no spread from one value
    _, low90, high90 = mean_interval([1.0, 2.0, 3.0], level=0.9)
    assert low < low90 < high90 < high
