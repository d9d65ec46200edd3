"""Does a short warm-up leave the timed rounds unchanged? python -m bench check-warmup [--trials N] [-- PYTEST ARGS].

Runs the suite in fresh processes, alternating a short warm-up (--warmup-batches, default 2)
with a whole epoch or pass of warm-up (--warmup-batches all), so that each variant starts as
cold as a real run does. Then, per case, the median of each variant's medians and their
ratio, and how the first timed round compares with the case's median: a warm-up that is too
short leaves its cost in the first round.
"""

from __future__ import annotations

import statistics
import sys

from bench.check.harness import alternated, arguments, cases_of, largest_change

__all__ = ["compare", "main"]

VARIANTS = {"short": None, "full": "all"}  # None: the suite's default warm-up


def compare(runs: dict[str, list[dict]]) -> list[dict]:
    """Per case: each variant's median of medians, short/full, and the first round against the median."""
    read = {variant: [c for run in found for c in cases_of(run)] for variant, found in runs.items()}
    names = sorted({c.name for c in read["short"]})
    rows = []
    for name in names:
        row: dict = {"name": name}
        for variant, found in read.items():
            stats = [c.stats for c in found if c.name == name and c.stats is not None]
            if not stats:
                continue
            row[variant] = statistics.median(s.median for s in stats)
            row[f"{variant}_iqr"] = statistics.median(s.iqr / s.median for s in stats)
            firsts = [s.data[0] / s.median for s in stats if len(s.data or []) > 1]
            row[f"{variant}_first"] = statistics.median(firsts) if firsts else None
        if "short" in row and "full" in row:
            row["ratio"] = row["short"] / row["full"]
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    short = {"default": "2", "help": "the short warm-up's --warmup-batches (default: 2)"}
    args = arguments("python -m bench check-warmup", __doc__, argv, **{"--short": short})
    options = {
        v: [f"--warmup-batches={args.short if w is None else w}"] for v, w in VARIANTS.items()
    }
    runs = alternated(options, args.trials, args.pytest_args)
    rows = compare(runs)
    first = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(
        f"{'case':<48} {'short (s)':>10} {'full (s)':>10} {'short/full':>10} {'IQR/median':>10}  "
        "first round/median: short, full"
    )
    for r in rows:
        print(
            f"{r['name']:<48} {r['short']:>10.4g} {r['full']:>10.4g} {r['ratio']:>10.3f} "
            f"{max(r['short_iqr'], r['full_iqr']):>10.0%}  {first(r['short_first'])}, {first(r['full_first'])}"
        )
    if rows:
        worst = largest_change(rows)
        print(
            f"Medians with the short warm-up differ from the whole-epoch warm-up's by {worst['ratio'] - 1:+.1%} at most "
            f"({worst['name']}). The seconds are the median of each variant's medians over {args.trials} alternated "
            "trial(s); IQR/median is the larger of the two; a first round well above 1.00 would be warm-up left in the rounds."
        )
        if args.trials < 3:
            print(
                "With fewer than 3 trials a difference says little on a noisy machine: run --trials 3 or more."
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
