"""A ratio is a claim: its 95% interval from both figures' rounds, and the words decided on it."""

import json
import math
from pathlib import Path

import pytest

from bench.analysis.answers import answers
from bench.analysis.figures import breakdown, crossovers, ladder, speedups
from bench.analysis.intervals import (
    NO_DIFFERENCE,
    interval_said,
    ratio_estimate,
    ratio_interval,
    side,
    t_quantile,
)
from bench.analysis.rows import load_frame
from bench.run.summary import end_summary

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = Path(__file__).parent.parent / "results" / "reference"


def _density(t: float, df: float) -> float:
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    return scale * (1 + t * t / df) ** (-(df + 1) / 2)


def _integrated(q: float, df: float, steps: int = 20_000) -> float:
    """P(0 < T < q) by Simpson's rule over the density: an independent check of the quantile."""
    h = q / steps
    inner = sum((4 if i % 2 else 2) * _density(i * h, df) for i in range(1, steps))
    return (_density(0, df) + inner + _density(q, df)) * h / 3


def test_the_t_quantile_is_exact_at_whole_and_fractional_degrees_of_freedom():
    # Closed forms: 1 degree of freedom is Cauchy's, 2 has (2p - 1) / sqrt(2p(1 - p)); many tend to the normal's.
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-10)
    assert t_quantile(0.975, 2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-10)
    # Many degrees of freedom: the normal's 1.95996... plus (z^3 + z) / 4df, here by Cornish and Fisher's expansion
    # (mpmath's incomplete beta, at 40 digits, gives 1.9599639869123255 at 1e9 and 1.9599877075346 at 1e5).
    assert t_quantile(0.975, 1e9) == pytest.approx(1.9599639869123255, rel=1e-13)
    below, above = t_quantile(0.975, 99_999.0), t_quantile(0.975, 100_001.0)
    assert below > above and below - above == pytest.approx(
        4.745e-10, rel=1e-3
    )  # no step where the method changes
    # Welch's degrees of freedom are seldom whole: the density integrated up to the quantile holds 47.5%.
    for df in (1.5, 2.7, 5.3, 31.4):
        assert _integrated(t_quantile(0.975, df), df) == pytest.approx(0.475, abs=1e-9)
    assert t_quantile(0.975, 1.5) < 12.706  # interpolating between 1 and 2 gave 8.50: 41% too wide
    assert t_quantile(0.975, 1.5) == pytest.approx(6.0167, rel=1e-4)
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


def test_the_ratio_is_the_estimate_its_interval_is_of():
    # Skewed rounds: the ratio of medians (2.0) lies outside the interval of the means' ratio; the estimate does not.
    slow, fast = [1.0, 2.0, 2.05], [1.0, 1.01, 1.02]
    found = ratio_estimate(slow, fast)
    assert found.low <= found.value <= found.high
    assert found.value == pytest.approx(
        math.exp(sum(map(math.log, slow)) / 3 - sum(map(math.log, fast)) / 3)
    )
    # One round a side: that round's ratio, no interval; no rounds kept: the medians, no interval.
    assert ratio_estimate([2.0], [1.0, 1.0]).value == pytest.approx(2.0)
    lone = ratio_estimate(None, [], numerator_median=3.0, denominator_median=1.5)
    assert lone.value == pytest.approx(2.0) and math.isnan(lone.low) and lone.side is None


def test_every_ratio_the_report_prints_lies_in_its_interval():
    frame = load_frame([REFERENCE, FIXTURES])
    speed = speedups(frame)
    steps = ladder(frame, "train")
    pairs = [
        (speed, "speedup", "speedup_low", "speedup_high"),
        (speed, "speedup_vs_best_cpu", "vs_best_low", "vs_best_high"),
        (steps, "vs_first", "vs_first_low", "vs_first_high"),
        (steps, "vs_base", "vs_base_low", "vs_base_high"),
    ]
    checked = 0
    for table, value, low, high in pairs:
        known = table[table[low].notna()]
        assert (
            (known[low] <= known[value] + 1e-12) & (known[value] <= known[high] + 1e-12)
        ).all(), value
        # And as printed, at two decimals: the shown ratio is never outside the shown bounds.
        for r in known.itertuples():
            shown = interval_said(getattr(r, value), getattr(r, low), getattr(r, high))
            number, bounds = shown.split("x (", 1)
            lo, hi = (float(x) for x in bounds.split(",")[0].rstrip(")").split("-"))
            assert lo <= float(number) <= hi, shown
        checked += len(known)
    assert checked > 50


def test_the_interval_holds_the_ratio_of_medians_and_narrows_with_steadier_rounds():
    wide = ratio_interval([1.8, 2.0, 2.2, 1.9, 2.1], [0.9, 1.0, 1.1, 0.95, 1.05])
    narrow = ratio_interval([1.98, 2.0, 2.02, 1.99, 2.01], [0.99, 1.0, 1.01, 0.995, 1.005])
    assert wide[0] < 2.0 < wide[1] and narrow[0] < 2.0 < narrow[1]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert ratio_interval([1.8, 2.0, 2.2], [0.9, 1.0, 1.1]) == ratio_interval(
        [1.8, 2.0, 2.2], [0.9, 1.0, 1.1]
    )  # seeded


def test_a_figure_of_one_round_has_no_interval_and_no_verdict():
    low, high = ratio_interval([2.0], [1.0, 1.1, 0.9])
    assert math.isnan(low) and math.isnan(high) and side(low, high) is None
    assert interval_said(2.0, low, high) == "2.00x (1 round)"
    assert math.isnan(ratio_interval(None, [1.0, 2.0])[0])


def test_an_interval_that_includes_one_is_no_difference_measured():
    low, high = ratio_interval([1.0, 1.1, 0.9, 1.05, 0.95], [1.02, 0.92, 1.08, 0.97, 1.0])
    assert low < 1 < high and side(low, high) == 0
    assert interval_said(1.0, low, high).endswith(f", {NO_DIFFERENCE})")
    assert side(1.1, 1.3) == 1 and side(0.7, 0.9) == -1


def _overlapping_run() -> dict:
    """The constructed GPU run with its GPU's training at batch 1,000 made as fast as its CPU, rounds overlapping."""
    run = json.loads((FIXTURES / "constructed_gpu_run.json").read_text())
    cpu = {}
    for b in run["benchmarks"]:
        p = b["params"]
        if b["group"] == "train" and p["device"] == "cpu" and p.get("cpu_threads", 64) == 64:
            cpu[(p["batch_size"], p["pipeline"])] = b["stats"]
    for b in run["benchmarks"]:
        p = b["params"]
        if b["group"] == "train" and p["device"] == "cuda:0" and p["batch_size"] == 1000:
            theirs = cpu[(1000, p["pipeline"])]
            # The CPU's rounds shifted by a hair each way: the same speed, told apart by nothing but noise.
            b["stats"] = {
                **theirs,
                "data": [x * (1.01 if i % 2 else 0.99) for i, x in enumerate(theirs["data"])],
            }
    return run


def test_two_runs_whose_rounds_overlap_read_no_difference_measured(tmp_path):
    run = _overlapping_run()
    path = tmp_path / "overlap.json"
    path.write_text(json.dumps(run))
    frame = load_frame([path])
    speed = speedups(frame)
    at = speed[(speed["family"] == "train") & (speed["batch_size"] == 1000)]
    assert len(at) and (at["speedup_low"] < 1).all() and (at["speedup_high"] > 1).all()
    text = "\n".join(end_summary(run, width=None))
    assert "1,000: 1.00x (" in text and NO_DIFFERENCE in text
    cross = crossovers(speed).set_index(["family", "variant"])
    # 1,000 is no win, so the GPU is not said to be faster from 1,000 on, and the tie is named.
    assert "no difference measured at 1,000" in cross.loc[("train", "seed"), "says"]
    (answer,) = answers(frame, speed, crossovers(speed), breakdown(frame))
    assert any("no faster or slower" in s and NO_DIFFERENCE in s for s in answer["said"])


def test_a_ratio_a_busy_figure_is_part_of_says_so_on_itself():
    assert interval_said(2.0, 1.5, 2.5, busy=True) == "2.00x (1.50-2.50, busy)"
    assert interval_said(1.0, 0.9, 1.1, busy=True) == f"1.00x (0.90-1.10, {NO_DIFFERENCE}, busy)"
    assert interval_said(2.0, math.nan, math.nan, busy=True) == "2.00x (1 round, busy)"
    assert interval_said(2.0, math.nan, math.nan, no_interval="", busy=True) == "2.00x (busy)"
