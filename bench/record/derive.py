"""The arithmetic of derived figures, in plain Python (no torch, no pandas): the report, the estimate and check_gpu share it."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["crossover_batch_size", "crossover_says", "loglog_interp", "seed_breakdown"]


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
