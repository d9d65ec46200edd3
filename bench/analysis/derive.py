"""The arithmetic of derived figures, in plain Python (no torch, no pandas): the report, the estimate and check_gpu share it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bench.analysis.words import fmt_time
from bench.format.records import Load

__all__ = [
    "FLAT_ABOVE_FLOOR",
    "FLAT_GROWTH",
    "FLAT_WORK",
    "MORE_THREADS_SLOWER",
    "SLOWER_THAN_MORE",
    "crossover_batch_size",
    "crossover_says",
    "suspect_copies",
    "threads_waited",
    "loglog_interp",
    "mostly_busy",
    "seed_breakdown",
]

# A broken measurement can look steady (issue 21): under load, a copy with a second thread that
# waits for a core takes a whole scheduler slice whatever its size. Measured on the 2-core VM with
# every core kept busy (docs/findings.md): 2-thread copies of 100 float32 images, 10,000 and 60,000
# uint8 all took 12.0 ms, IQR 0-9%, where 1,000 float32 images took 36.7 us and the 1-thread copies
# 1.9 us to 6.7 ms. Three symptoms:
#
# - slower than more: a copy that took over SLOWER_THAN_MORE times as long as a copy of more bytes in its series;
# - flat: a copy of at least FLAT_WORK times the bytes of the next smaller one that took under (that ratio) **
#   FLAT_GROWTH its time (1.57x for 6x the bytes), where the smaller took over FLAT_ABOVE_FLOOR times the
#   series' fastest (below that a copy is its latency floor: an H100's copies of 1 and of 100 images both take
#   ~15 us). Above the floor every 10x of bytes took at least 6.9x the time on the 2-core VM and 8.1x on the H100
#   host's GPU in the reference runs;
# - threads that waited: a copy with more threads that took over MORE_THREADS_SLOWER times the fewest threads'
#   copy of the same bytes (in the committed runs, reference and fixtures, 0.34-1.64x the 1-thread ones).
SLOWER_THAN_MORE = 2.0
FLAT_WORK = 5.0
FLAT_GROWTH = 0.25
FLAT_ABOVE_FLOOR = 10.0
MORE_THREADS_SLOWER = 4.0


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


def suspect_copies(
    work: Sequence[float], times: Sequence[float], sizes: Sequence[int]
) -> dict[int, str]:
    """{index: why} for the copies of one series (one device, direction, memory, dtype and thread count; `work` its
    bytes, `sizes` its images) whose time does not follow their work: slower than a copy of more
    bytes, or flat over the sizes above the series' floor (the constants above say how far)."""
    order = sorted(
        (i for i in range(len(work)) if work[i] > 0 and times[i] > 0), key=lambda i: work[i]
    )
    said: dict[int, str] = {}
    if len(order) < 2:
        return said
    floor = min(times[i] for i in order)
    for k, i in enumerate(order):
        more = [j for j in order[k + 1 :] if work[j] > work[i]]
        faster = min(more, key=lambda j: times[j], default=None)
        if faster is not None and times[i] > SLOWER_THAN_MORE * times[faster]:
            said.setdefault(
                i,
                f"its {sizes[i]:,} images took {fmt_time(times[i])}, {times[i] / times[faster]:.3g}x the "
                f"{fmt_time(times[faster])} of {sizes[faster]:,} images",
            )
    for i, j in zip(order, order[1:], strict=False):
        grew, took = work[j] / work[i], times[j] / times[i]
        if (
            grew >= FLAT_WORK
            and 1 / SLOWER_THAN_MORE <= took < grew**FLAT_GROWTH
            and times[i] > FLAT_ABOVE_FLOOR * floor
        ):
            why = (
                f"copies of {sizes[i]:,} and {sizes[j]:,} images took {fmt_time(times[i])} and {fmt_time(times[j])}: "
                f"{took:.2g}x the time for {grew:.0f}x the bytes"
            )
            said.setdefault(i, why)
            said.setdefault(j, why)
    return said


def threads_waited(times: Sequence[float], threads: Sequence[int]) -> dict[int, str]:
    """{index: why} among copies of the same bytes at several thread counts: those with more threads than the
    fewest that took over MORE_THREADS_SLOWER times the fewest threads' time (a thread waiting for a
    core)."""
    known = [i for i in range(len(times)) if times[i] > 0 and threads[i] is not None]
    if len(known) < 2:
        return {}
    base = min(known, key=lambda i: threads[i])
    return {
        i: f"{threads[i]} threads took {fmt_time(times[i])}, {times[i] / times[base]:.3g}x the "
        f"{fmt_time(times[base])} of {threads[base]} thread{'s' if threads[base] != 1 else ''} for the same bytes"
        for i in known
        if threads[i] > threads[base] and times[i] > MORE_THREADS_SLOWER * times[base]
    }


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


# A run the load held: other work took over a tenth of the machine's CPU (bench/measure/load.py) in
# more than this share of its spans, or more than this share of its CPU time across the whole run.
MOSTLY = 0.5


def mostly_busy(load: Load | Mapping | None) -> bool:
    """Whether other work held the machine for most of a run, from its saved load (format 5 on; none before)."""
    load = load if isinstance(load, Load) else Load.read(load)
    if load.available is not True:
        return False
    spans, busy = load.intervals or 0, load.busy_intervals or 0
    return (spans > 0 and busy / spans > MOSTLY) or (load.outside_share or 0.0) > MOSTLY
