"""Does the telemetry sampler move the timings it observes? python -m bench check-telemetry [--trials N] [-- PYTEST ARGS].

Runs the same cases in fresh processes, alternating --telemetry on and off (the order swapped
every trial, so drift on a shared machine falls on both), then per case the median of each
variant's medians, their ratio (on/off) and the spread of the trials' ratios.
"""

from __future__ import annotations

import statistics
import sys

from bench.check.harness import (
    alternated,
    arguments,
    largest_change,
    paired,
    print_table,
    ratio_row,
)
from bench.format import records as fmt

__all__ = ["compare", "main"]

VARIANTS = ("on", "off")
# Long enough for the sampler to wake many times (a resident epoch of 60,000 images is about
# a second on the 2-core VM), cheap enough to repeat: the resident epoch at batch size 1,000.
DEFAULT_ARGS = ["--devices", "cpu", "--batch-sizes", "1000", "-k", "train and resident"]


def _samples(bench: fmt.Benchmark) -> int:
    """How many times the sampler woke during the case's rounds (0 where it did not run)."""
    telemetry = bench.extra.telemetry or fmt.Telemetry()
    return telemetry.samples or 0


def compare(runs: dict[str, list[dict]]) -> list[dict]:
    """Per case: each variant's median of medians, on/off, the trials' on/off ratios, the IQR share and the samples."""
    rows = []
    for name, on, off in paired(runs, "on", "off"):
        rows.append(
            {
                **ratio_row(name, {"on": on, "off": off}),
                "iqr": max(b.stats.iqr / b.stats.median for b in on + off),
                "samples": statistics.median(_samples(b) for b in on),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = arguments("python -m bench check-telemetry", __doc__, argv, DEFAULT_ARGS)
    runs = alternated({v: [f"--telemetry={v}"] for v in VARIANTS}, args.trials, args.pytest_args)
    rows = compare(runs)
    print_table(
        rows,
        [
            ("case", 44, lambda r: r["name"]),
            ("on (s)", 9, lambda r: f"{r['on']:.4g}"),
            ("off (s)", 9, lambda r: f"{r['off']:.4g}"),
            ("on/off", 7, lambda r: f"{r['ratio']:.3f}"),
            ("trials on/off", 22, lambda r: " ".join(f"{x:.3f}" for x in r["trial_ratios"])),
            ("IQR/med", 8, lambda r: f"{r['iqr']:.0%}"),
            ("samples", 8, lambda r: f"{r['samples']:.0f}"),
        ],
    )
    if rows:
        worst = largest_change(rows)
        print(
            f"With the sampler on, medians differ from off by {worst['ratio'] - 1:+.1%} at most ({worst['name']}); "
            f"median of each variant's medians over {args.trials} alternated trial(s). Within noise when that is "
            "inside the trials' own spread of on/off and the cases' IQR/median."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
