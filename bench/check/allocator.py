"""What does keeping freed blocks buy? python -m bench check-allocator [--trials N] [-- PYTEST ARGS].

Runs the same cases in fresh processes, alternating --host-allocator default (glibc as it is) and
keep (the suite's default: bench/measure/allocator.py), the order swapped every trial so that drift
on a shared machine falls on both. Then per case the median of each variant's medians, their ratio
(default/keep: how much faster keeping makes it), the trials' ratios, and each variant's minor page
faults a round (from the cases' telemetry).
"""

from __future__ import annotations

import statistics
import sys

from bench.check.harness import alternated, arguments, paired, print_table, ratio_row
from bench.format import records as fmt

__all__ = ["compare", "main"]

VARIANTS = ("default", "keep")
# The training ladder's CPU steps at batch 1,000, a process each: the seed loop, the resident
# epoch and the two memory-format steps, whose buffers are the largest an epoch frees and takes.
DEFAULT_ARGS = [
    "--devices",
    "cpu",
    "--batch-sizes",
    "1000",
    "-k",
    "train and (seed or resident or channels_last)",
]


def _faults(bench: fmt.Benchmark) -> float | None:
    telemetry = bench.extra.telemetry or fmt.Telemetry()
    return (telemetry.host or fmt.HostTelemetry()).minor_faults_per_round


def compare(runs: dict[str, list[dict]]) -> list[dict]:
    """Per case: each variant's median of medians and of page faults a round, default/keep, and the trials' ratios."""
    rows = []
    for name, default, keep in paired(runs, "default", "keep"):
        cases = {"default": default, "keep": keep}
        faults = {v: [f for f in map(_faults, cases[v]) if f is not None] for v in VARIANTS}
        rows.append(
            {
                **ratio_row(name, cases),
                **{
                    f"{v}_faults": statistics.median(faults[v]) if faults[v] else None
                    for v in VARIANTS
                },
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = arguments("python -m bench check-allocator", __doc__, argv, DEFAULT_ARGS)
    runs = alternated(
        {v: [f"--host-allocator={v}"] for v in VARIANTS}, args.trials, args.pytest_args
    )
    rows = compare(runs)
    count = lambda f: "-" if f is None else f"{f:,.0f}"  # noqa: E731
    print_table(
        rows,
        [
            ("case", 46, lambda r: r["name"]),
            ("default (s)", 11, lambda r: f"{r['default']:.4g}"),
            ("keep (s)", 9, lambda r: f"{r['keep']:.4g}"),
            ("default/keep", 12, lambda r: f"{r['ratio']:.2f}"),
            ("trials", 20, lambda r: " ".join(f"{x:.2f}" for x in r["trial_ratios"])),
            ("faults a round: default", 24, lambda r: count(r["default_faults"])),
            ("keep", 8, lambda r: count(r["keep_faults"])),
        ],
    )
    if rows:
        print(
            f"Medians of each variant's medians over {args.trials} alternated trial(s), each run a fresh process "
            "running these cases in order (with default, a case's faults depend on the cases before it)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
