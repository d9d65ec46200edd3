"""The arithmetic of derived figures, in plain Python (no torch, no pandas): the report, the estimate and check_gpu share it."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "FLAT_ABOVE_FLOOR",
    "FLAT_GROWTH",
    "crossover_batch_size",
    "crossover_says",
    "flat_spans",
    "loglog_interp",
    "seed_breakdown",
]

# A copy of w times the bytes that took under w ** FLAT_GROWTH the time (1.78x for 10x the bytes) did not
# grow with its work, where the smaller copy took over FLAT_ABOVE_FLOOR times the series' fastest: below that
# a copy is its latency floor (an H100's copies of 1 and of 100 images both take ~15 us). Above it, every 10x
# of bytes took at least 6.9x the time on the 2-core VM and 8.1x on the H100 host's GPU (results/reference/,
# measured). The one exception there is the rule's case: the H100 host's 16-thread CPU copy of 1,000 images
# took 5.97 ms, of 60,000 4.59 ms. Issue 21's: 2-thread copies of 100 to 10,000 images all took one 7.96 ms
# scheduler slice on a busy VM.
FLAT_GROWTH = 0.25
FLAT_ABOVE_FLOOR = 10.0


def crossover_batch_size(batch_sizes: Sequence[int], speedup: Sequence[float]) -> int | None:
    """The smallest batch size from which the GPU wins (speedup > 1) at every larger size measured.

    None when it does not win at the largest size. A win at a small size that is lost again
    at a larger one is not a crossover: the GPU only "starts to win" where it keeps winning.
    """
    pairs = sorted(zip(batch_sizes, speedup, strict=True))
    found = None
    for size, s in reversed(pairs):
        if not s > 1:
            break
        found = size
    return found


def crossover_says(batch_sizes: Sequence[int], speedup: Sequence[float]) -> str:
    """The crossover as a sentence that is true of every figure it sums up (speedup > 1: the GPU is faster).

    A GPU that wins at small sizes and loses at the largest has no crossover: the sentence
    says it is not faster at the largest size, and names where it was.
    """
    pairs = sorted(zip(batch_sizes, speedup, strict=True))
    if not pairs:
        raise ValueError("no batch sizes to sum up")
    found = crossover_batch_size([s for s, _ in pairs], [x for _, x in pairs])
    smallest, largest = pairs[0][0], pairs[-1][0]
    if found is None:
        wins = [f"{size:,}" for size, x in pairs if x > 1]
        where = f"; faster at {', '.join(wins)}" if wins else ""
        return f"GPU not faster at the largest batch size measured ({largest:,}){where}"
    if found == smallest:
        span = f"{smallest:,} to {largest:,}" if smallest != largest else f"{smallest:,}"
        return f"GPU faster at every batch size measured ({span})"
    if found == largest:
        return f"GPU faster only at the largest batch size measured ({largest:,})"
    return f"GPU faster from batch size {found:,} on (measured up to {largest:,})"


def flat_spans(work: Sequence[float], times: Sequence[float]) -> list[tuple[int, int]]:
    """Index pairs (i, j) of neighbouring sizes, in the order given, where the time did not grow with the work.

    Neighbours by work (sorted here): j's work is at least 10x i's and its time under
    (work ratio) ** FLAT_GROWTH times i's, while i's time is over FLAT_ABOVE_FLOOR times the
    fastest of the series (a time far above what the work needs, not a latency floor).
    """
    order = sorted((i for i in range(len(work)) if work[i] > 0 and times[i] > 0), key=lambda i: work[i])
    if len(order) < 2:
        return []
    floor = min(times[i] for i in order)
    spans = []
    for i, j in zip(order, order[1:], strict=False):
        grew = work[j] / work[i]
        if grew >= 10 and times[j] / times[i] < grew**FLAT_GROWTH and times[i] > FLAT_ABOVE_FLOOR * floor:
            spans.append((i, j))
    return spans


def loglog_interp(xs: Sequence[float], ys: Sequence[float], at: float) -> float:
    """y at `at`, interpolated linearly in log-log between the measured points; the end value outside them.

    Copy times and epoch times grow as a power of the size between two measured sizes, so a
    straight line in log-log is the honest guess between them.
    """
    points = sorted((float(x), float(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0)
    if not points:
        raise ValueError("no positive points to interpolate between")
    if at <= points[0][0]:
        return points[0][1]
    if at >= points[-1][0]:
        return points[-1][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= at <= x1:
            if x1 == x0:
                return y0
            t = (math.log(at) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
    return points[-1][1]  # pragma: no cover - the loop covers every inner point


def seed_breakdown(seed_s: float, resident_s: float, transfer_s: float) -> dict[str, float]:
    """Where a seed-pipeline epoch's time goes: compute, transfer and data loading (seconds).

    compute  = the resident epoch: the same training with the data already on the device;
    transfer = the seed pipeline's per-batch copies (batches x one batch's measured copy; 0 on a CPU);
    loading  = the rest of the seed epoch: DataLoader, PIL + ToTensor, collation, per-batch syncs.
    Derived, not measured directly: loading is never below 0.
    """
    transfer = 0.0 if transfer_s is None or math.isnan(transfer_s) else transfer_s
    return {
        "seed_epoch_s": seed_s,
        "loading_s": max(seed_s - resident_s - transfer, 0.0),
        "transfer_s": transfer_s,
        "compute_s": resident_s,
    }
