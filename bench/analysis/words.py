"""How figures read as words, the same in the terminal, compare and the report: times, durations, counts."""

from __future__ import annotations

import math
import textwrap

__all__ = [
    "BY_MODEL_TITLE",
    "MANY_PAGE_FAULTS",
    "WIDTH",
    "cases",
    "flops_said",
    "faults_said",
    "fmt_time",
    "folded",
    "format_seconds",
]


def fmt_time(seconds: float | None) -> str:
    """A measured time with 3 significant digits and a unit: 151 ms, 4.53 s, 20.4 µs; '?' when unknown."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "?"
    if seconds == 0:
        return "0 s"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def format_seconds(seconds: float) -> str:
    """4 s, 2m05s, 1h02m: a duration (elapsed, estimated) as a person reads it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def cases(n: int) -> str:
    """'1 case', '2 cases'."""
    return f"{n} case" if n == 1 else f"{n} cases"


# Minor page faults per round from which a ladder step's figure names them: 10,000 faults of 4 KiB
# pages are 40 MB touched afresh, some 10 ms of a 2-core VM's kernel time (1.45 million cost a
# resident epoch about half its 3.3 s there: bench/measure/allocator.py). Fewer are ordinary work.
MANY_PAGE_FAULTS = 10_000


def faults_said(faults: float | None) -> str:
    """A case's page faults per round as words where there are many ("540k page faults a round"), else ""."""
    if faults is None or not math.isfinite(faults) or faults < MANY_PAGE_FAULTS:
        return ""
    if faults >= 999_500:  # what would round to "1000k"
        return f"{faults / 1e6:.1f}M page faults a round"
    return f"{faults / 1e3:.0f}k page faults a round"


# A terminal's width: no line the suite prints (a session's, its answer, compare's) is wider.
WIDTH = 100


def folded(line: str, width: int = WIDTH, indent: str | None = None) -> list[str]:
    """A line as lines of at most `width` columns, broken between words, each continuation indented by `indent`
    (else 4 more than the line's own); a word wider than a line (a path) stands whole on its own."""
    if indent is None:
        indent = " " * (len(line) - len(line.lstrip()) + 4)
    return textwrap.wrap(
        line,
        width=width,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [""]


def flops_said(flops: float) -> str:
    """A count of FLOPs as a reader holds it: 465 kFLOP, 296 MFLOP, 1.82 GFLOP, 3.1 TFLOP."""
    if flops is None or not math.isfinite(flops):
        return "?"
    for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1e3, "kFLOP")):
        if abs(flops) >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"


# The view across the models one machine measured (bench/analysis/models.py by_model): its title on the
# report's page and its plot.
BY_MODEL_TITLE = "Where model size moves the crossover"
