"""What does keeping freed blocks buy? python -m bench check-allocator [--trials N] [-- PYTEST ARGS].

Runs the same cases in fresh processes, alternating --host-allocator default (glibc as it is)
and keep (the suite's default: bench/measure/allocator.py), the order swapped every trial so that drift
on a shared machine falls on both. Then per case the median of each variant's medians, their
ratio (default/keep: how much faster keeping makes it), the trials' ratios, and each variant's
minor page faults a round (from the cases' telemetry).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.check.harness import alternated, paired

__all__ = ["compare", "main"]

VARIANTS = ("default", "keep")
# The training ladder's CPU steps at batch 1,000, a process each: the seed loop, the resident
# epoch and the two memory-format steps, whose buffers are the largest an epoch frees and takes.
DEFAULT_ARGS = ["--devices", "cpu", "--batch-sizes", "1000", "-k", "train and (seed or resident or channels_last)"]


def _faults(bench: dict) -> float | None:
    return (((bench.get("extra_info") or {}).get("telemetry") or {}).get("host") or {}).get("minor_faults_per_round")


def compare(runs: dict[str, list[dict]]) -> list[dict]:
    """Per case: each variant's median of medians and of page faults a round, default/keep, and the trials' ratios."""
    rows = []
    for name, default, keep in paired(runs, "default", "keep"):
        cases = {"default": default, "keep": keep}
        medians = {v: [b["stats"]["median"] for b in cases[v]] for v in VARIANTS}
        faults = {v: [f for f in map(_faults, cases[v]) if f is not None] for v in VARIANTS}
        rows.append({
            "name": name,
            **{v: statistics.median(medians[v]) for v in VARIANTS},
            "ratio": statistics.median(medians["default"]) / statistics.median(medians["keep"]),
            "trial_ratios": [d / k for d, k in zip(medians["default"], medians["keep"], strict=True)],
            **{f"{v}_faults": statistics.median(faults[v]) if faults[v] else None for v in VARIANTS},
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench check-allocator", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="runs of each variant, alternated (default: 3)")
    parser.add_argument("pytest_args", nargs="*", help=f"passed to pytest bench (default: {' '.join(DEFAULT_ARGS)})")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    pytest_args = args.pytest_args or DEFAULT_ARGS
    runs = alternated({v: [f"--host-allocator={v}"] for v in VARIANTS}, args.trials, pytest_args)
    rows = compare(runs)
    count = lambda f: "-" if f is None else f"{f:,.0f}"  # noqa: E731
    print(
        f"{'case':<46} {'default (s)':>11} {'keep (s)':>9} {'default/keep':>12} {'trials':>20} "
        f"{'faults a round: default':>24} {'keep':>8}"
    )
    for r in rows:
        trials = " ".join(f"{x:.2f}" for x in r["trial_ratios"])
        print(
            f"{r['name']:<46} {r['default']:>11.4g} {r['keep']:>9.4g} {r['ratio']:>12.2f} {trials:>20} "
            f"{count(r['default_faults']):>24} {count(r['keep_faults']):>8}"
        )
    if rows:
        print(
            f"Medians of each variant's medians over {args.trials} alternated trial(s), each run a fresh process "
            "running these cases in order (with default, a case's faults depend on the cases before it)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
