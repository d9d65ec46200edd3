"""One case's measurement: a short warm-up, as many timed rounds as its budget allows, and a record of both."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from bench.format import records as fmt
from bench.measure.clock import timed_call
from bench.measure.plan import Budget
from bench.measure.telemetry import Telemetry

__all__ = ["latency_summary", "profile_size", "run_rounds", "warmup_size"]


def warmup_size(images: int, batch_size: int, warmup_batches: int | None) -> tuple[int, int]:
    """(images, batches) of the warm-up for a pass of `images` at `batch_size`.

    `warmup_batches` full batches, plus the pass's last, smaller batch when it has one: its
    shape is new to cuDNN and the allocator, so it must be met before the timed rounds.
    None (or more batches than the pass has) warms up with the whole pass.
    """
    full, rest = divmod(images, batch_size)
    if warmup_batches is None or warmup_batches >= full:
        return images, full + (1 if rest else 0)
    return warmup_batches * batch_size + rest, warmup_batches + (1 if rest else 0)


def profile_size(images: int, batch_size: int, most: int) -> int:
    """Images in a profiled epoch of a pass of `images` at `batch_size`: whole batches, at most `most`
    (at least one batch), or the whole pass where `most` covers it.

    Whole batches: a smaller last batch of another size than the pass's own would be a shape the
    case never prepared (a CUDA graph has none captured for it; a static compile would recompile).
    """
    if most >= images:
        return images
    return min(images, max(1, most // batch_size) * batch_size)


def run_rounds(
    benchmark,
    clock: Callable[[], float],
    budget: Budget,
    *,
    target: Callable,
    warmup: Callable[[], object],
    scale: float,
    warmup_record: dict,
    setup: Callable | None = None,
    calibrate: Callable[[float], float] | None = None,
    telemetry: Telemetry | None = None,
):
    """Warm up once, choose the rounds from the budget, then let pytest-benchmark time them.

    pytest-benchmark's own rule (calibrate, then rounds = max(min_rounds, max_time / round))
    with the calibration taken from the warm-up: its time x `scale` (rounds per warm-up) is
    the round estimate. The warm-up still pays first-call costs, so it over-estimates a round,
    and a case never gets fewer than min_rounds. Where a case can do better, `calibrate` is
    called after the warm-up with its seconds and returns the estimate (it may time a sample
    of its own). `telemetry` observes the timed rounds only (not the warm-up or the
    calibration) and writes extra_info["telemetry"]. Returns the last round's result.
    """
    if benchmark.disabled:  # --benchmark-disable: one untimed call, as pytest-benchmark does
        return benchmark.pedantic(target, setup=setup)
    warm_s, _ = timed_call(clock, warmup)
    round_s = calibrate(warm_s) if calibrate is not None else warm_s * scale
    rounds = budget.rounds_for(round_s)
    benchmark.extra_info.update(
        fmt.rounds_record(
            warmup=warmup_record, warm_s=warm_s, budget=budget, round_s=round_s, rounds=rounds
        )
    )
    if telemetry is None:
        return benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=0)
    with telemetry.observe():
        result = benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=0)
    benchmark.extra_info["telemetry"] = telemetry.record(rounds)
    return result


def latency_summary(seconds: Sequence[float], source: str) -> dict:
    """Per-batch latency percentiles from single-batch times (seconds): p50, p90, p99, mean, and how many.

    With fewer than 100 samples p99 is near the slowest one: `samples` says how far to trust it.
    """
    values = [float(s) for s in seconds if math.isfinite(s)]
    if not values:
        return {"samples": 0, "source": source}
    if len(values) == 1:
        p50 = p90 = p99 = values[0]
    else:
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        p50, p90, p99 = cuts[49], cuts[89], cuts[98]
    return {
        "p50_s": p50,
        "p90_s": p90,
        "p99_s": p99,
        "mean_s": statistics.fmean(values),
        "samples": len(values),
        "source": source,  # "sample": single batches timed apart; "rounds": each round was one batch
        "batch_times_s": values,
    }
