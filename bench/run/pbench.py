"""Every touch of pytest-benchmark's internals, in one place: where the suite reaches past its public API, and why.

The suite extends pytest-benchmark through its hooks and marks where it can. Where it cannot (saving
a run whole, saving only the cases that finished, knowing which case was cut short, leaving its wide
tables out and rewording its header line), it reaches into the objects below. (The one other use of pytest-benchmark, its public utils.safe_dumps, is
bench/format/store.py's: the record stage may not import this one.) Checked against pytest-benchmark
5.2.3 and 5.3.1; tests/test_pbench.py holds each touch to the installed version and fails, naming
it, when an internal moves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from bench.format import store

__all__ = [
    "CHECKED_WITH",
    "DEFAULT_STORAGE",
    "as_record",
    "drop_unstarted",
    "dumps",
    "finished_stats",
    "header_said",
    "hide_tables",
    "is_its_header",
    "keep_benchmarks",
    "machine_folder",
    "median_and_min",
    "node_id",
    "round_times",
    "run_header",
    "save_through",
    "session_of",
    "storage_folder",
    "write_json_through",
]

CHECKED_WITH = ("5.2.3", "5.3.1")
# pytest-benchmark's own default for --benchmark-storage: the suite files runs per machine instead.
DEFAULT_STORAGE = "file://./.benchmarks"


def session_of(config: pytest.Config):
    """pytest-benchmark's BenchmarkSession (config._benchmarksession), or None when its plugin is not active."""
    return getattr(config, "_benchmarksession", None)


def storage_folder(storage: str) -> Path | None:
    """The folder of a file:// storage (or a bare path, as pytest-benchmark accepts); None for elasticsearch."""
    if "://" not in storage:
        return Path(storage).resolve()
    if storage.startswith("file://"):
        return Path(storage[len("file://") :]).resolve()
    return None


def machine_folder(storage: Path) -> Path:
    """Where pytest-benchmark files this interpreter's runs under a storage folder (utils.get_machine_id)."""
    from pytest_benchmark.utils import get_machine_id

    return storage / get_machine_id()


def dumps(record: dict, **kw) -> str:
    """JSON as pytest-benchmark writes it: bench/format/store.py's, the one use of pytest-benchmark's public
    utils.safe_dumps outside this module (the record stage may not import the run stage)."""
    return store.dumps(record, **kw)


def save_through(config: pytest.Config, save: Callable[[dict, str], None]) -> bool:
    """Make the session's storage save with `save(output_json, save_name)` (FileStorage.save, replaced).

    pytest-benchmark writes a run with open('w'), so a full disk leaves a truncated file; the
    suite's save writes it whole. False where the storage is not a file storage.
    """
    bs = session_of(config)
    if bs is None or not hasattr(bs.storage, "get"):
        return False
    bs.storage.save = save
    return True


def write_json_through(config: pytest.Config, write: Callable[[Path, dict], None]) -> Path | None:
    """Make --benchmark-json write with `write(path, output_json)` (BenchmarkSession.save_json, replaced)."""
    bs = session_of(config)
    if bs is None or not isinstance(bs.json, (str, os.PathLike)):
        return None
    path = Path(bs.json)
    bs.save_json = lambda output_json: write(path, output_json)
    return path


def say_saved(config: pytest.Config, text: str, **style) -> None:
    """The line pytest-benchmark prints when it saved (its logger, in its style), for a save the suite made."""
    bs = session_of(config)
    if bs is not None:
        bs.logger.info(text, **style)


def is_its_header(lines) -> bool:
    """Whether a pytest_report_header result is pytest-benchmark's: 'benchmark: <version> (defaults: ...)'."""
    from pytest_benchmark import __version__

    return isinstance(lines, str) and lines.startswith(f"benchmark: {__version__} (defaults:")


def header_said() -> str:
    """pytest-benchmark's header line, reworded: its defaults (min_rounds=5, warmup=False...) are not what the
    suite's cases run with, and listing them read as if they were."""
    from pytest_benchmark import __version__

    return f"benchmark: {__version__} (pytest-benchmark times, saves and compares; each case's settings below)"


def hide_tables(config: pytest.Config) -> None:
    """Leave out pytest-benchmark's tables at the end of the session (BenchmarkSession.quiet, which its display
    reads; its logger keeps its level, so the save's line is still said). The saved run keeps every
    figure; --benchmark-tables brings them back. Kept where pytest-benchmark was asked for what its tables
    draw (--benchmark-histogram's files, --benchmark-compare's columns, --benchmark-cprofile's
    lists): hidden, they would be left out with no word."""
    option = config.option
    if any(getattr(option, name, None) for name in _DRAWN_BY_ITS_TABLES):
        return
    bs = session_of(config)
    if bs is not None:
        bs.quiet = True


# pytest-benchmark's options whose output its tables' display makes (BenchmarkSession.display).
_DRAWN_BY_ITS_TABLES = ("benchmark_histogram", "benchmark_compare", "benchmark_cprofile")


def run_header(config: pytest.Config) -> dict:
    """What pytest-benchmark will save around the benchmarks, as the session's start knows it."""
    from pytest_benchmark import __version__

    bs = session_of(config)
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    return {
        "machine_info": bs.get_machine_info(),
        "commit_info": commit_info,
        "save_name": bs.save or bs.autosave,
        "version": __version__,
    }


def keep_benchmarks(
    config: pytest.Config, keep: Callable[[object], bool], ours: Iterable[str]
) -> None:
    """Save only the benchmarks of `ours` (node ids) that `keep` says finished (BenchmarkSession.benchmarks)."""
    bs = session_of(config)
    if bs is None:
        return
    ours = set(ours)
    bs.benchmarks[:] = [b for b in bs.benchmarks if b.fullname not in ours or keep(b)]


def drop_unstarted(fixture) -> None:
    """A case stopped in its warm-up never called pytest-benchmark: mark its fixture skipped (BenchmarkFixture.skipped)
    so that pytest-benchmark drops it instead of warning that it was unused."""
    if fixture is not None and fixture.stats is None:
        fixture.skipped = True


def finished_stats(fixture):
    """The Metadata of a case that timed its rounds (BenchmarkFixture.stats), or None (--benchmark-disable)."""
    return getattr(fixture, "stats", None) or None


def round_times(fixture) -> list[float]:
    """Each timed round's seconds, in order (Metadata.stats.data)."""
    return list(fixture.stats.stats.data)


def median_and_min(stats) -> tuple[float, float]:
    """A finished case's median and fastest round in seconds (Metadata.stats.median, .min)."""
    return stats.stats.median, stats.stats.min


def as_record(stats) -> dict:
    """A finished case as it is saved, every round's time included (Metadata.as_dict)."""
    return stats.as_dict(include_data=True)


def node_id(stats) -> str:
    """The pytest node id of a finished case (Metadata.fullname)."""
    return stats.fullname
