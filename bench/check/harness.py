"""The checks' shared harness: variants of a `pytest bench` run in fresh processes, alternated, paired case by case."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["alternated", "paired", "run_variant"]


def run_variant(options: list[str], out: Path, pytest_args: list[str]) -> dict:
    """`pytest bench` with `options` in a fresh process (as cold as a real run), its --benchmark-json read back.

    Each check compares two variants of a run case by case. Exits naming the
    command and its output when the run fails.
    """
    command = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "-q", *options,
               f"--benchmark-json={out}", *pytest_args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def alternated(options: dict[str, list[str]], trials: int, pytest_args: list[str]) -> dict[str, list[dict]]:
    """`trials` runs of each variant (its name -> its options), alternated, the order swapped every
    trial so that drift on a shared machine falls on all of them; each variant's runs, in order.

    Shared by the three checks: each then compares its variants case by case."""
    runs: dict[str, list[dict]] = {variant: [] for variant in options}
    with tempfile.TemporaryDirectory() as folder:
        for trial in range(trials):
            order = list(options) if trial % 2 == 0 else list(reversed(options))
            for variant in order:
                print(f"trial {trial + 1}/{trials}: {' '.join(options[variant])}", file=sys.stderr, flush=True)
                out = Path(folder) / f"{variant}-{trial}.json"
                runs[variant].append(run_variant(options[variant], out, pytest_args))
    return runs


def paired(runs: dict[str, list[dict]], a: str, b: str) -> Iterator[tuple[str, list[dict], list[dict]]]:
    """Per case that variants `a` and `b` both ran, as often in each: its name and each variant's
    benchmarks of it, trial by trial. The pairs check_telemetry and check_allocator compare."""
    names = sorted({bench["name"] for variant in (a, b) for run in runs[variant] for bench in run["benchmarks"]})
    for name in names:
        cases = [[bench for run in runs[v] for bench in run["benchmarks"] if bench["name"] == name] for v in (a, b)]
        if cases[0] and len(cases[0]) == len(cases[1]):
            yield name, cases[0], cases[1]
