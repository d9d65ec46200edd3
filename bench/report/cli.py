"""python -m bench report: every saved run under the paths given to one report folder."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from bench.analysis.rows import RunFileWarning, load_frame
from bench.format.journal import find_journals, journal_state  # pure Python, no torch
from bench.report.cache import CACHE_FOLDER, RowCache
from bench.report.page import OutputError, check_out, write_report

__all__ = ["main"]

DEFAULT_RUNS = Path("results")
DEFAULT_OUT = Path("results/report")


def _cache(args) -> RowCache | None:
    """The cache the report reads and keeps: --cache, else inside the first folder given (a file's own folder)."""
    if args.no_cache:
        return None
    if args.cache is not None:
        return RowCache(args.cache)
    first = args.paths[0]
    folder = (first if first.is_dir() else first.parent) / CACHE_FOLDER
    # a results tree from elsewhere may point it anywhere: nothing is written through it
    if folder.is_symlink():
        said = "a link, not a folder of the results' own: the report keeps nothing (--cache DIR keeps it elsewhere)"
        print(f"warning: {folder}: {said}", file=sys.stderr)
        return None
    return RowCache(folder)


class _Stopped(KeyboardInterrupt):
    """A stop signal made what Ctrl-C raises, so that every `finally` runs: the report's new folder is removed
    and its drawing processes are ended with it (by default SIGTERM ends Python at once, and leaves
    both)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, _frame):
    raise _Stopped(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The command; a stop signal (Ctrl-C, SIGTERM, SIGHUP) ends it with nothing written, 128 + the signal."""
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[signum] = signal.signal(signum, _stop)
        # not the main thread (the report called from something else): signals left alone
        except ValueError:
            break
    try:
        return _report(argv)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
        said = f"report: stopped by {signal.Signals(signum).name}: nothing written, an earlier report is as it was"
        print(said, file=sys.stderr)
        return 128 + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _report(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench report",
        description="Saved runs to a report: summary.csv, report.md, PNG plots (each with its data) and index.html.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[DEFAULT_RUNS],
        help="saved runs: files or folders (default: results)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="the report folder, replaced whole (default: results/report)",
    )
    parser.add_argument(
        "--all-runs", action="store_true", help="summary.csv keeps every run, not only the newest"
    )
    parser.add_argument(
        "--cross-machine",
        action="store_true",
        help="add each GPU's speedup over every other machine's CPU",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"where the report keeps what it read of each run file (default: {CACHE_FOLDER} in the first folder given)",
    )
    parser.add_argument("--no-cache", action="store_true", help="read every run file, keep nothing")
    args = parser.parse_args(argv)
    if args.no_cache and args.cache is not None:
        parser.error("--cache and --no-cache: choose one")
    if args.cache is not None and args.cache.exists() and not args.cache.is_dir():
        parser.error(f"--cache {args.cache}: exists and is not a folder")
    if args.cache is not None and args.cache.resolve().is_relative_to(args.out.resolve()):
        parser.error(
            f"--cache {args.cache}: inside --out {args.out}, which the report replaces whole"
        )
    try:
        check_out(args.out)  # before any work: a report that can't be written is not computed
    except OutputError as exc:
        parser.error(str(exc))
    cache = _cache(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        try:
            frame = load_frame(args.paths, all_runs=args.all_runs, cache=cache)
        except FileNotFoundError as exc:
            parser.error(str(exc))
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    # Recovery writes into the runs' folders and takes a dead run's lock: its own command, never a
    # side effect.
    for journal in find_journals(args.paths):
        state = journal_state(journal)
        if state == "live":
            said = (
                "the journal of a run still going: its cases come into the report once it has saved"
            )
        elif state != "dead":
            said = f"a journal that {state}: left alone"
        else:
            said = (
                "the journal of a run that was killed before it saved: its finished cases are not in this report; "
                f"`python -m bench recover {journal.parent}` turns it into a saved run"
            )
        print(f"warning: {journal}: {said}.", file=sys.stderr)
    if frame.empty:
        print(
            f"error: no fmnist-bench runs found under {', '.join(map(str, args.paths))}",
            file=sys.stderr,
        )
        return 1
    try:
        with warnings.catch_warnings(record=True) as caught:
            # the cache's, said as every warning here is
            warnings.simplefilter("always", RunFileWarning)
            written = write_report(
                frame,
                args.out,
                cross_machine=args.cross_machine,
                cache=None if cache is None else cache.folder,
            )
    except OSError as exc:
        print(f"error: could not write the report to {args.out}: {exc}", file=sys.stderr)
        return 1
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for path in written:
        print(path)
    return 0
