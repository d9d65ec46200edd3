"""What the terminal says while a run goes: a line per finished case with its figure, and the time left."""

from __future__ import annotations

from bench.analysis.limits import LIMIT_ROUND, LIMIT_UNITS, limit_figure
from bench.analysis.words import WIDTH, fmt_time, folded, format_seconds
from bench.format.records import (
    Benchmark,
    Held,
    Latency,
    LimitWork,
    Params,
    Stats,
    StepExtra,
)

__all__ = ["WIDTH", "case_headline", "fold", "progress_line"]

# A binding limit's floor as the progress line names it: short, so that a case's line fits WIDTH
# (the report and the answer say them in full).
_FLOOR = {"arithmetic": "arithmetic", "operations": "per-op", "copies": "copy"}


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
        # (--quick's one round: its only round; more: the fastest, which a limit is read from)
        fastest = "" if stats.rounds == 1 else " (fastest round)"
        return f"{said}{size}{fastest}{tail}" + ("; busy: not taken as a floor" if busy else "")
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
        # (a batch's percentiles where more than one batch was timed: of one, both are its time)
        lat = (
            f"; a batch p50 {fmt_time(latency.p50_s)}, p99 {fmt_time(latency.p99_s)}"
            if latency.p50_s is not None and (latency.samples or 0) > 1
            else ""
        )
        return f"{rate:,.0f} images/s{tail}{lat}{_held(extra)}"
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
        floor = _FLOOR.get(held.binding, held.binding)
        times = f"{held.multiple:.2g}" if held.multiple < 100 else f"{held.multiple:,.0f}"
        return f"; {times}x its {floor} floor{said}"
    if distrusted:
        return said or "; no trusted floor"
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
    """`[12/82] 1m05s, ~2m10s left | train cuda:0-1000-resident: 151 ms per epoch, ...`: one line where it
    fits WIDTH, its later clauses folded under it where it does not. ? left: no case left can be
    predicted yet; a + after the time left: some cannot (the estimate before the first case counts them)."""
    if left_s is None or (unknown and left_s < 1):
        left = "? left"
    else:
        left = f"~{format_seconds(left_s)}{'+' if unknown else ''} left"
    width = len(str(total))
    line = f"[{done:>{width}}/{total}] {format_seconds(elapsed_s)}, {left} | {name}: {text}"
    return "\n".join(fold(line))


def fold(line: str, width: int = WIDTH) -> list[str]:
    """A line as lines of at most `width` columns: broken after a '; ' where that fills its lines, else
    between words, each continuation indented under its text. A word wider than `width` (a long path) overruns it."""
    if len(line) <= width:
        return [line]
    wrapped = folded(line, width)  # (a path is never cut: it stands whole on a line of its own)
    by_clause = _by_clause(line, width - 1)  # (room for the ';' that ends a line broken after one)
    # After a clause where that leaves no line but the last under half full; else between words.
    return by_clause if all(len(part) >= width // 2 for part in by_clause[:-1]) else wrapped


def _by_clause(line: str, width: int) -> list[str]:
    """The line broken after each '; ' that would pass `width`, a clause too long alone between its words."""
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    out: list[str] = []
    for clause in line.split("; "):
        joined = f"{out[-1]}; {clause}" if out else clause
        if out and len(joined) <= width:
            out[-1] = joined
            continue
        if out:
            out[-1] += ";"
        first = not out
        out += folded(clause if first else indent + clause, width, indent)
    return out
