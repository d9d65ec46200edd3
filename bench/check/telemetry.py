"""Does the telemetry sampler move the timings it observes? python -m bench check-telemetry [--trials N] [-- PYTEST ARGS].

Runs the same cases in fresh processes, alternating --telemetry on and off (the order swapped
every trial, so drift on a shared machine falls on both), then per case the median of each
variant's medians, their ratio (on/off) and the spread of the trials' ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.check.harness import alternated, paired

__all__ = ["compare", "main"]

VARIANTS = ("on", "off")
# Long enough for the sampler to wake many times (a resident epoch of 60,000 images is about
# a second on the 2-core VM), cheap enough to repeat: the resident epoch at batch size 1,000.
DEFAULT_ARGS = ["--devices", "cpu", "--batch-sizes", "1000", "-k", "train and resident"]


def compare(runs: dict[str, list[dict]]) -> list[dict]:
    """Per case: each variant's median of medians, on/off, the trials' on/off ratios, the IQR share and the samples."""
    rows = []
    for name, on, off in paired(runs, "on", "off"):
        medians = {"on": [b["stats"]["median"] for b in on], "off": [b["stats"]["median"] for b in off]}
        rows.append({
            "name": name,
            "on": statistics.median(medians["on"]),
            "off": statistics.median(medians["off"]),
            "ratio": statistics.median(medians["on"]) / statistics.median(medians["off"]),
            "trial_ratios": [x / y for x, y in zip(medians["on"], medians["off"], strict=True)],
            "iqr": max(b["stats"]["iqr"] / b["stats"]["median"] for b in on + off),
            "samples": statistics.median(b["extra_info"]["telemetry"].get("samples", 0) for b in on),
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench check-telemetry", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="runs of each variant, alternated (default: 3)")
    parser.add_argument("pytest_args", nargs="*", help=f"passed to pytest bench (default: {' '.join(DEFAULT_ARGS)})")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    pytest_args = args.pytest_args or DEFAULT_ARGS
    runs = alternated({v: [f"--telemetry={v}"] for v in VARIANTS}, args.trials, pytest_args)
    rows = compare(runs)
    print(
        f"{'case':<44} {'on (s)':>9} {'off (s)':>9} {'on/off':>7} {'trials on/off':>22} {'IQR/med':>8} {'samples':>8}"
    )
    for r in rows:
        trials = " ".join(f"{x:.3f}" for x in r["trial_ratios"])
        print(
            f"{r['name']:<44} {r['on']:>9.4g} {r['off']:>9.4g} {r['ratio']:>7.3f} {trials:>22} "
            f"{r['iqr']:>8.0%} {r['samples']:>8.0f}"
        )
    if rows:
        worst = max(rows, key=lambda r: abs(r["ratio"] - 1))
        print(
            f"With the sampler on, medians differ from off by {worst['ratio'] - 1:+.1%} at most ({worst['name']}); "
            f"median of each variant's medians over {args.trials} alternated trial(s). Within noise when that is "
            "inside the trials' own spread of on/off and the cases' IQR/median."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
