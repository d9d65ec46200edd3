"""The checks' shared harness: variants of a `pytest bench` run in fresh processes, alternated, paired case by case."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.format import records as fmt
from bench.format.schema import run_errors
from bench.format.store import NotARunFile, read_json, write_whole

__all__ = [
    "alternated",
    "arguments",
    "busy_loops",
    "cases_of",
    "largest_change",
    "paired",
    "print_table",
    "ratio_row",
    "run_variant",
    "write_figures",
]


def run_variant(options: list[str], out: Path, pytest_args: list[str]) -> dict:
    """`pytest bench` with `options` in a fresh process (as cold as a real run), its --benchmark-json read back.

    Each check compares two variants of a run case by case. Exits naming the
    command and its output when the run fails.
    """
    command = [
        sys.executable,
        "-m",
        "pytest",
        "bench",
        "-p",
        "no:cacheprovider",
        "-q",
        *options,
        f"--benchmark-json={out}",
        *pytest_args,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return json.loads(out.read_text())


def alternated(
    options: dict[str, list[str]],
    trials: int,
    pytest_args: list[str],
    around: dict[str, Callable[[], contextlib.AbstractContextManager]] | None = None,
) -> dict[str, list[dict]]:
    """`trials` runs of each variant (its name -> its options), alternated, the order swapped every
    trial so that drift on a shared machine falls on all of them; each variant's runs, in order.
    `around`: a variant's context (busy_loops, say) that each of its runs is made inside.

    Shared by the checks: each then compares its variants case by case."""
    runs: dict[str, list[dict]] = {variant: [] for variant in options}
    with tempfile.TemporaryDirectory() as folder:
        for trial in range(trials):
            order = list(options) if trial % 2 == 0 else list(reversed(options))
            for variant in order:
                said = " ".join(options[variant]) or variant
                print(f"trial {trial + 1}/{trials}: {said}", file=sys.stderr, flush=True)
                out = Path(folder) / f"{variant}-{trial}.json"
                with (around or {}).get(variant, contextlib.nullcontext)():
                    runs[variant].append(run_variant(options[variant], out, pytest_args))
    return runs


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[list[subprocess.Popen]]:
    """`count` processes that spin on a core each while the block runs, ended with it: other work, as a shared
    machine has it (each is a plain Python loop, no I/O; they are stopped, then killed, and reaped).
    """
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield loops
    finally:
        for loop in loops:
            loop.terminate()
        for loop in loops:
            try:
                loop.wait(timeout=5)
            except subprocess.TimeoutExpired:
                loop.kill()
                loop.wait()


def cases_of(run: dict) -> list[fmt.Benchmark]:
    """A run's cases as records: what a check reads of the runs it made."""
    return fmt.read_run(run).cases()


def paired(
    runs: dict[str, list[dict]], a: str, b: str
) -> Iterator[tuple[str, list[fmt.Benchmark], list[fmt.Benchmark]]]:
    """Per case that variants `a` and `b` both ran, as often in each: its name and each variant's
    benchmarks of it, trial by trial. The pairs check_telemetry and check_allocator compare."""
    read = {v: [cases_of(run) for run in runs[v]] for v in (a, b)}
    names = sorted({case.name for v in (a, b) for cases in read[v] for case in cases})
    for name in names:
        found = [[case for cases in read[v] for case in cases if case.name == name] for v in (a, b)]
        if found[0] and len(found[0]) == len(found[1]):
            yield name, found[0], found[1]


MAX_TRIALS = 100


def arguments(
    prog: str, doc: str, argv: list[str] | None, default_args: list[str] | None = None, **more: dict
):
    """The checks' command line: --trials, the pytest arguments after them (default_args when none), and `more`
    options (name -> argparse keywords). --trials under 1 or over MAX_TRIALS is a usage error."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, default=3, help="runs of each variant, alternated (default: 3)"
    )
    for name, keywords in more.items():
        parser.add_argument(name, **keywords)
    said = (
        f"(default: {' '.join(default_args)})"
        if default_args
        else "e.g. --devices cuda:0 -k 'resident'"
    )
    parser.add_argument("pytest_args", nargs="*", help=f"passed to pytest bench, {said}")
    args = parser.parse_args(argv)
    if not 1 <= args.trials <= MAX_TRIALS:  # each trial is two whole runs of the suite
        parser.error(f"--trials {args.trials:,}: from 1 to {MAX_TRIALS}")
    args.pytest_args = args.pytest_args or list(default_args or [])
    return args


def ratio_row(name: str, cases: dict[str, list[fmt.Benchmark]]) -> dict:
    """One case of two variants (their name -> its benchmarks, trial by trial): each variant's median of medians,
    the first over the second, and each trial's ratio."""
    (a, first), (b, second) = cases.items()
    medians = {a: [x.stats.median for x in first], b: [x.stats.median for x in second]}
    return {
        "name": name,
        a: statistics.median(medians[a]),
        b: statistics.median(medians[b]),
        "ratio": statistics.median(medians[a]) / statistics.median(medians[b]),
        "trial_ratios": [x / y for x, y in zip(medians[a], medians[b], strict=True)],
    }


def largest_change(rows: list[dict]) -> dict:
    """The row whose ratio is furthest from 1: what a check's closing line names."""
    return max(rows, key=lambda r: abs(r["ratio"] - 1))


def print_table(rows: list[dict], columns: list[tuple[str, int, Callable[[dict], str]]]) -> None:
    """A check's table: a header, then a line per row, each column (header, width, its text) right-aligned
    but the first (the case)."""
    print(" ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w, _) in enumerate(columns)))
    for r in rows:
        print(
            " ".join(
                f"{f(r):<{w}}" if i == 0 else f"{f(r):>{w}}" for i, (_, w, f) in enumerate(columns)
            )
        )


def write_figures(path: Path, figures, *, keep: bool = True) -> str | None:
    """`figures` as JSON into `path`, whole (a temporary file, then a rename: never a file cut short or left
    empty by a full disk); None, or why it could not be written, in words. `keep`: False to only
    prove that it can be (the temporary removed)."""
    data = json.dumps(figures, indent=1, default=str).encode()
    try:
        write_whole(path, data)
        if not keep:
            path.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def checked_inputs(
    parser, *, bounds: dict, json_path: Path | None, run_path: Path | None
) -> dict | None:
    """Before any measuring, a usage error (exit 2) for a count past its bound ({flag: (value, most)}), a --json
    that cannot be written, or a --run that is not a saved run (a FIFO or a device refused unread);
    the run."""
    for flag, (value, most) in bounds.items():  # a typo is an error now, not hours of epochs
        if value is not None and value > most:
            parser.error(f"{flag} {value:,}: at most {most:,}")
    if json_path is not None:  # figures with nowhere to go are not measured
        parent = json_path.resolve().parent
        if json_path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
            parser.error(
                f"--json {json_path}: cannot write it ({parent} is not a writable folder, or it is one)"
            )
        why = write_figures(json_path.with_name(f".{json_path.name}.probe"), {}, keep=False)
        # (a folder that says it is writable and takes no file: /proc, a full disk)
        if why is not None:
            parser.error(f"--json {json_path}: cannot write it ({why})")
    if run_path is None:
        return None
    try:
        run, _replaced = read_json(run_path)
    except NotARunFile as exc:
        parser.error(f"--run {run_path}: {exc}")
    errors = run_errors(run)
    if errors:
        parser.error(f"--run {run_path}: not a saved run: {'; '.join(errors[:2])}")
    return run
