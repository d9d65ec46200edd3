"""What the terminal says while a run goes: a line per finished case with its figure, and the time left."""

from __future__ import annotations

from bench.analysis.limits import FLOOR_SAID, LIMIT_ROUND, LIMIT_UNITS, limit_figure
from bench.analysis.words import cases, fmt_time, format_seconds
from bench.format.records import (
    Benchmark,
    Held,
    Latency,
    LimitWork,
    Params,
    Stats,
    StepExtra,
)

__all__ = ["case_headline", "progress_line"]


def _iqr_share(stats: Stats) -> float | None:
    median, iqr = stats.median, stats.iqr
    return iqr / median if median and iqr is not None else None


def case_headline(record: dict, link_gbps: dict[str, float] | None = None) -> str:
    """One finished case's figure, as a person reads it: GB/s, time per epoch with loss, images/s with latency."""
    case = Benchmark.read(record)
    family, params, extra = case.group, case.params or Params(), case.extra
    stats = case.stats or Stats()
    median = stats.median
    spread = _iqr_share(stats)
    tail = f", IQR {spread:.0%}" if spread is not None and (stats.rounds or 0) > 1 else ""
    tail += f", {stats.rounds} round{'s' if stats.rounds != 1 else ''}"
    if family == "limits":
        work = extra.work or LimitWork()
        figure = limit_figure(params.limit, work.write(), getattr(stats, LIMIT_ROUND) or median)
        if figure is None:
            return f"{fmt_time(median)} a round{tail}"
        unit = LIMIT_UNITS[params.limit]
        said = fmt_time(figure) + " an operation" if unit == "s" else f"{figure / 1e9:.3g} G{unit}"
        size = f" at {work.n:,} square" if params.limit == "matmul" else ""
        busy = extra.machine_load is not None and extra.machine_load.busy is True
        return f"{said}{size} (its fastest round){tail}" + (
            "; busy: no floor is built on it" if busy else ""
        )
    if family == "transfer":
        gbps = (extra.bytes or 0) / median / 1e9 if median else float("nan")
        link = (link_gbps or {}).get(params.device)
        share = f" ({gbps / link:.0%} of the link)" if link and params.direction != "h2h" else ""
        return f"{gbps:.3g} GB/s{share} in {fmt_time(median)}{tail}"
    if family == "train":
        loss = extra.loss if extra.loss is not None else float("nan")
        accuracy = extra.accuracy if extra.accuracy is not None else float("nan")
        return f"{fmt_time(median)} per epoch{tail}{_held(extra)}; loss {loss:.3f}, accuracy {accuracy:.1%}"
    if family == "inference":
        rate = (extra.images or 0) / median if median else float("nan")
        latency = extra.latency or Latency()
        lat = (
            f"; a batch p50 {fmt_time(latency.p50_s)}, p99 {fmt_time(latency.p99_s)} ({latency.samples} timed)"
            if latency.p50_s is not None
            else ""
        )
        return f"{rate:,.0f} images/s{lat}{tail}{_held(extra)}"
    return fmt_time(median)


def _held(extra: StepExtra) -> str:
    """'; 2.1x its arithmetic floor': a case's binding limit, where the run measured its device's limits; a case
    that ran under a floor says which limit that proves wrong, and one held against no trusted limit
    says so."""
    held = extra.limits or Held()
    distrusted = held.distrusted or {}
    wrong = [why.limit for why in distrusted.values() if why.contradicted]
    said = f"; under a floor: {wrong[0]} was measured too low" if wrong else ""
    if held.binding and held.multiple:
        return f"; {held.multiple:.2g}x its {FLOOR_SAID[held.binding]} floor{said}"
    if distrusted:
        return said or "; no trusted limit to hold it against"
    return said


def progress_line(
    done: int,
    total: int,
    name: str,
    text: str,
    elapsed_s: float,
    left_s: float | None,
    unknown: int,
) -> str:
    """`[12/82] 1m05s, about 2m10s left | train cuda:0-1000-resident: 151 ms per epoch, ...`."""
    if left_s is None or (unknown and left_s < 1):
        left = "time left not yet known" + (
            f" ({cases(unknown)} not yet predictable)" if unknown else ""
        )
    else:
        left = f"about {format_seconds(left_s)}{'+' if unknown else ''} left"
        if unknown:
            left += f" ({unknown} case{'s' if unknown != 1 else ''} not yet predictable)"
    width = len(str(total))
    return f"[{done:>{width}}/{total}] {format_seconds(elapsed_s)}, {left} | {name}: {text}"
