"""How far do the limits move when other work holds the cores? python -m bench check-limits [--loops N] [--trials N] [-- PYTEST ARGS].

Runs the limits family in fresh processes, alternating a quiet machine with one where busy loops
(default: one per core) spin beside it, the order swapped every trial so that drift falls on both.
Per limits case: its figure as a run takes it (its fastest round: an operation's cost, a peak in
FLOP/s), quiet and busy, busy over quiet (for a cost, the quiet figure over the busy one, so that
under 1 is worse either way), the matrix side each chose, and how many of the busy figures the run
itself marked as not to be built on (measured while other work took a share of the machine). A busy
figure holds when it is within HOLDS of the quiet one, or the run marked it: then no floor, binding
limit or "why" of that run is built on it. A benchmark of this machine, not a test: its figures are
the machine's, measured now.
"""

from __future__ import annotations

import os
import statistics
import sys

from bench.analysis.limits import LIMIT_ROUND, LIMIT_UNITS, limit_figure
from bench.check.harness import alternated, arguments, busy_loops, print_table
from bench.format import records as fmt

__all__ = ["HOLDS", "compare", "main"]

# A quick CPU run's limits: one round each, as a user's first run takes them.
DEFAULT_ARGS = ["--quick", "--devices", "cpu", "-k", "limits"]
# How far a busy figure may be from the quiet one and still be the machine's (issue 31's bar).
HOLDS = 0.30


def _figures(runs: list[dict]) -> dict[str, list[dict]]:
    """Per limits case, each run's figure, its matrix side and whether the run marked it busy."""
    out: dict[str, list[dict]] = {}
    for run in runs:
        for case in fmt.read_run(run).cases():
            if case.group != "limits" or case.stats is None:
                continue
            if case.params is None or case.params.limit not in LIMIT_UNITS:
                continue
            extra, limit = case.extra, case.params.limit
            work = extra.work or fmt.LimitWork()
            load = extra.machine_load or fmt.Load()
            out.setdefault(case.name, []).append(
                {
                    "figure": limit_figure(limit, work, getattr(case.stats, LIMIT_ROUND)),
                    "unit": LIMIT_UNITS[limit],
                    "n": work.n,
                    "marked": load.busy is True,
                    "share": load.outside_share,
                }
            )
    return out


def compare(runs: dict[str, list[dict]]) -> list[dict]:
    """Per limits case both variants ran: the median figure of each, how the busy one compares (under 1 worse),
    the sides chosen, and how many busy figures held (within HOLDS of the quiet median, or marked by
    their run)."""
    quiet, busy = _figures(runs["quiet"]), _figures(runs["busy"])
    rows = []
    for name in sorted(set(quiet) & set(busy)):
        measured = [f for f in busy[name] if f["figure"]]
        q = statistics.median(f["figure"] for f in quiet[name] if f["figure"])
        b = statistics.median(f["figure"] for f in measured)
        seconds = quiet[name][0]["unit"] == "s"  # a cost: lower is better

        def against_quiet(figure: float, q=q, seconds=seconds) -> float:
            return q / figure if seconds else figure / q

        rows.append(
            {
                "name": name,
                "unit": quiet[name][0]["unit"],
                "quiet": q,
                "busy": b,
                "ratio": against_quiet(b),
                "sides": (
                    [f["n"] for f in quiet[name] if f["n"]],
                    [f["n"] for f in busy[name] if f["n"]],
                ),
                "marked": sum(f["marked"] for f in busy[name]),
                "held": sum(
                    f["marked"] or abs(against_quiet(f["figure"]) - 1) <= HOLDS for f in measured
                ),
                "trials": len(busy[name]),
                "share": statistics.median(
                    [f["share"] for f in busy[name] if f["share"] is not None] or [0.0]
                ),
            }
        )
    return rows


def _said(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e6:.3g} us"
    return f"{value / 1e9:.4g} G{unit}"


def main(argv: list[str] | None = None) -> int:
    loops = {
        "type": int,
        "default": os.cpu_count() or 1,
        "help": "busy loops beside the busy variant (default: one a core)",
    }
    args = arguments(
        "python -m bench check-limits", __doc__, argv, DEFAULT_ARGS, **{"--loops": loops}
    )
    if not 1 <= args.loops <= 4 * (os.cpu_count() or 1):
        raise SystemExit(f"python -m bench check-limits: --loops {args.loops}: from 1 to 4 a core")
    runs = alternated(
        {"quiet": [], "busy": []},
        args.trials,
        args.pytest_args,
        around={"busy": lambda: busy_loops(args.loops)},
    )
    rows = compare(runs)
    print_table(
        rows,
        [
            ("case", 46, lambda r: r["name"]),
            ("quiet", 12, lambda r: _said(r["quiet"], r["unit"])),
            ("busy", 12, lambda r: _said(r["busy"], r["unit"])),
            ("busy/quiet", 10, lambda r: f"{r['ratio']:.2f}"),
            (
                "side q/b",
                12,
                lambda r: "/".join(",".join(map(str, sorted(set(s)))) or "-" for s in r["sides"]),
            ),
            ("marked", 7, lambda r: f"{r['marked']}/{r['trials']}"),
            ("held", 5, lambda r: f"{r['held']}/{r['trials']}"),
        ],
    )
    if rows:
        worst = min(rows, key=lambda r: r["ratio"])
        held = sum(r["held"] for r in rows)
        total = sum(r["trials"] for r in rows)
        print(
            f"With {args.loops} busy loop(s) (other work took a median {statistics.median(r['share'] for r in rows):.0%} "
            f"of the CPU), the figure that moved most is {worst['name']} at {worst['ratio']:.2f}x its quiet one "
            f"(median of {args.trials} alternated trial(s); busy/quiet under 1 is worse). {held} of {total} busy "
            f"figures held: within {HOLDS:.0%} of the quiet one, or marked by their run as not to be built on."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
