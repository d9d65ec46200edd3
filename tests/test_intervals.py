"""A ratio is a claim: its 95% interval from both figures' rounds, and the words decided on it."""

import json
import math
from pathlib import Path

from bench.record.intervals import NO_DIFFERENCE, interval_said, ratio_interval, side
from bench.report.answers import answers
from bench.report.figures import breakdown, crossovers, speedups
from bench.report.load import load_frame
from bench.run.summary import end_summary

FIXTURES = Path(__file__).parent / "fixtures"


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
            b["stats"] = {**theirs, "data": [x * (1.01 if i % 2 else 0.99) for i, x in enumerate(theirs["data"])]}
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
