"""A case's measurement: warm-up size, rounds chosen from the budget, latency percentiles; with fake clocks."""

import json

import numpy as np
import pytest

from bench.measure.clock import DeviceClock, Stopwatch, sample_calls
from bench.measure.plan import Budget
from bench.measure.rounds import latency_summary, profile_size, run_rounds, warmup_size
from tests.test_timing import FakeDevice

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    "images, batch_size, warmup_batches, expected",
    [
        (60_000, 100, 2, (200, 2)),
        (60_000, 64, 2, (2 * 64 + 60_000 % 64, 3)),  # plus the epoch's last, smaller batch
        (60_000, 10_000, None, (60_000, 6)),  # 'all': the whole epoch
        (60_000, 10_000, 6, (60_000, 6)),  # as many as the epoch has: the whole epoch
        (2_000, 10_000, 2, (2_000, 1)),  # one batch smaller than the batch size
        (1_000, 1, 2, (2, 2)),
    ],
)
def test_warmup_is_a_few_batches_and_the_last_shape(images, batch_size, warmup_batches, expected):
    assert warmup_size(images, batch_size, warmup_batches) == expected


@pytest.mark.parametrize(
    "images, batch_size, most, expected",
    [
        (60_000, 1000, 10_000, 10_000),  # whole batches already
        (
            60_000,
            512,
            10_000,
            9_728,
        ),  # 19 batches of 512, not a last batch of 272 that no graph was captured for
        (60_000, 20_000, 10_000, 20_000),  # at least one batch
        (2_000, 100, 10_000, 2_000),  # the whole (quick) epoch: every shape of it was prepared
        (250, 1000, 100, 250),  # one batch larger than the pass: the pass
    ],
)
def test_a_profiled_epoch_is_whole_batches_or_the_whole_pass(images, batch_size, most, expected):
    assert profile_size(images, batch_size, most) == expected


class FakeBenchmark:
    """Records what run_rounds asks pytest-benchmark for."""

    def __init__(self, disabled=False):
        self.disabled = disabled
        self.extra_info = {}
        self.calls = []

    def pedantic(self, target, args=(), kwargs=None, setup=None, rounds=1, warmup_rounds=0):
        self.calls.append({"rounds": rounds, "warmup_rounds": warmup_rounds})
        return target()


def test_rounds_come_from_the_warmup_estimate_and_the_budget():
    dev = FakeDevice()
    clock = DeviceClock("cuda:0", clock=dev.clock, synchronize=dev.synchronize)
    bench = FakeBenchmark()
    budget = Budget(min_rounds=3, max_time=1.0, max_rounds=20)
    # A warm-up of 2 batches that takes 20 ms; an epoch of 10 batches: a 0.1 s round -> 10 rounds.
    result = run_rounds(
        bench, clock, budget, target=lambda: "last", warmup=lambda: dev.launch(0.02), scale=5.0,
        warmup_record={"batches": 2},
    )  # fmt: skip
    assert result == "last"
    assert bench.calls == [
        {"rounds": 10, "warmup_rounds": 0}
    ]  # pytest-benchmark does no warm-up of its own
    assert bench.extra_info["warmup"] == {"batches": 2, "seconds": pytest.approx(0.02)}
    assert bench.extra_info["budget"]["estimated_round_s"] == pytest.approx(0.1)
    assert bench.extra_info["budget"]["rounds"] == 10


def test_a_calibration_replaces_the_warmup_estimate():
    dev = FakeDevice()
    clock = DeviceClock("cuda:0", clock=dev.clock, synchronize=dev.synchronize)
    bench = FakeBenchmark()
    seen = []
    run_rounds(
        bench, clock, Budget(3, 1.0, 100), target=lambda: None, warmup=lambda: dev.launch(5.0), scale=1.0,
        calibrate=lambda warm_s: seen.append(warm_s) or 0.01, warmup_record={},
    )  # fmt: skip
    assert seen == [pytest.approx(5.0)]  # the warm-up's own time is passed in
    assert bench.calls[0]["rounds"] == 100


def test_disabled_benchmarks_run_once_without_warmup():
    bench = FakeBenchmark(disabled=True)
    warmed = []
    run_rounds(
        bench, lambda: 0.0, Budget(3, 1.0, 20), target=lambda: 1, warmup=lambda: warmed.append(1), scale=1.0,
        warmup_record={},
    )  # fmt: skip
    assert warmed == [] and bench.calls == [{"rounds": 1, "warmup_rounds": 0}]


def test_budgeted_rounds_through_the_real_pytest_benchmark(pytester):
    # The real plugin: 5 rounds chosen (0.25 s budget / 0.05 s estimated rounds, min 2), the
    # warm-up's 1 s nowhere in the figures, and every round the device's 0.05 s.
    pytester.makepyfile(
        test_budget="""
        import pytest
        from bench.measure.rounds import run_rounds
        from bench.measure.plan import Budget
        from bench.measure.clock import DeviceClock
        from tests.test_timing import FakeDevice

        dev = FakeDevice()
        clock = DeviceClock("cuda:0", clock=dev.clock, synchronize=dev.synchronize)

        @pytest.mark.benchmark(timer=clock)
        def test_round(benchmark):
            run_rounds(benchmark, clock, Budget(2, 0.25, 50), target=lambda: dev.launch(0.05),
                       warmup=lambda: dev.launch(1.0), scale=0.05, warmup_record={})
        """
    )
    result = pytester.runpytest("--benchmark-json=out.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    bench = json.loads((pytester.path / "out.json").read_text())["benchmarks"][0]
    assert bench["stats"]["rounds"] == 5  # ceil(0.25 / 0.05)
    assert bench["stats"]["min"] == bench["stats"]["max"] == pytest.approx(0.05)
    assert bench["extra_info"]["warmup"]["seconds"] == pytest.approx(1.0)


def test_latency_percentiles_match_numpys():
    values = [0.001 * (i % 17 + 1) for i in range(100)]
    summary = latency_summary(values, "sample")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    assert (summary["p50_s"], summary["p90_s"], summary["p99_s"]) == pytest.approx((p50, p90, p99))
    assert summary["mean_s"] == pytest.approx(np.mean(values)) and summary["samples"] == 100
    assert summary["source"] == "sample" and summary["batch_times_s"] == values


def test_latency_of_one_sample_and_of_none():
    assert latency_summary([0.5], "rounds")["p99_s"] == 0.5
    assert latency_summary([], "rounds") == {"samples": 0, "source": "rounds"}


def test_sample_calls_takes_at_least_min_then_stops_at_the_time_budget_or_max():
    dev = FakeDevice()
    clock = DeviceClock("cuda:0", clock=dev.clock, synchronize=dev.synchronize)
    seen = []

    def call(i, cost):
        seen.append(i)
        dev.launch(cost)

    # Slow calls: the minimum, though it overruns the budget.
    assert (
        sample_calls(clock, lambda i: call(i, 1.0), min_calls=3, max_calls=50, max_time=0.5)
        == [1.0] * 3
    )
    assert seen == [0, 1, 2]  # each call gets its index, to pick its batch
    # Fast calls: until the budget is spent.
    assert (
        len(sample_calls(clock, lambda i: call(i, 0.1), min_calls=3, max_calls=50, max_time=1.0))
        == 10
    )
    # Very fast calls: the ceiling.
    assert (
        len(sample_calls(clock, lambda i: call(i, 1e-6), min_calls=3, max_calls=50, max_time=1.0))
        == 50
    )


def test_stopwatch_counts_from_when_it_was_made():
    now = [10.0]
    watch = Stopwatch(clock=lambda: now[0])
    now[0] = 12.5
    assert watch() == 2.5


def _run(name, rounds):
    data = sorted(rounds)
    median = data[len(data) // 2]
    stats = {"median": median, "iqr": 0.0, "data": rounds}
    return {"benchmarks": [{"group": "train", "name": name, "stats": stats}]}


def test_check_warmup_compares_medians_and_the_first_round_per_case():
    from bench.check.warmup import compare

    runs = {
        # A warm-up too short would leave its cost in the first timed round: 2.0 against a median of 1.0.
        "short": [_run("case", [2.0, 1.0, 1.0]), _run("case", [2.0, 1.1, 1.1])],
        "full": [_run("case", [1.0, 1.0, 1.0]), _run("case", [1.0, 1.0, 1.0])],
    }
    (row,) = compare(runs)
    assert (
        row["short"] == pytest.approx(1.05)
        and row["full"] == 1.0
        and row["ratio"] == pytest.approx(1.05)
    )
    assert row["short_first"] == pytest.approx((2.0 / 1.0 + 2.0 / 1.1) / 2)
    assert row["full_first"] == 1.0


def test_the_checks_alternate_their_variants_and_swap_the_order_every_trial(monkeypatch):
    from bench.check import harness as check_warmup

    calls = []

    def fake_run(options, out, pytest_args):
        calls.append((options, out.name, pytest_args))
        return {"benchmarks": [], "options": options}

    monkeypatch.setattr(check_warmup, "run_variant", fake_run)
    runs = check_warmup.alternated({"a": ["--x=1"], "b": ["--x=2"]}, 3, ["-k", "resident"])
    assert [c[1] for c in calls] == [
        "a-0.json",
        "b-0.json",
        "b-1.json",
        "a-1.json",
        "a-2.json",
        "b-2.json",
    ]
    assert all(c[2] == ["-k", "resident"] for c in calls)
    assert [r["options"] for r in runs["a"]] == [["--x=1"]] * 3 and len(runs["b"]) == 3


def test_check_telemetry_pairs_each_case_on_and_off():
    from bench.check.telemetry import compare

    def run(median, iqr, samples=None, name="case"):
        extra = {"telemetry": {"samples": samples} if samples is not None else {"state": "off"}}
        return {
            "benchmarks": [
                {
                    "group": "train",
                    "name": name,
                    "stats": {"median": median, "iqr": iqr},
                    "extra_info": extra,
                }
            ]
        }

    runs = {"on": [run(1.0, 0.02, 9), run(1.2, 0.06, 11)], "off": [run(1.0, 0.01), run(1.0, 0.01)]}
    runs["off"].append(run(5.0, 0.1, name="only-off"))  # ran in one variant only: not compared
    (row,) = compare(runs)
    assert (
        row["name"] == "case"
        and row["on"] == pytest.approx(1.1)
        and row["off"] == pytest.approx(1.0)
    )
    assert row["trial_ratios"] == pytest.approx([1.0, 1.2]) and row["ratio"] == pytest.approx(1.1)
    assert row["iqr"] == pytest.approx(0.05) and row["samples"] == 10
