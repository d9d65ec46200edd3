"""Where saved runs live and how they are read and written: finding run files, reading one, saving one whole.

pytest-benchmark files a run as `NNNN_<name>.json` in a machine's folder. The suite saves the
same names, but whole (a temporary file, then a link), so a full disk never leaves a truncated
run; readers find run files here and read each one through the format's schema.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path

from pytest_benchmark.utils import safe_dumps

from bench.record.schema import run_errors

try:  # the lock under which a run's number is taken; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "REFERENCE",
    "RUN_GLOB",
    "RunFileWarning",
    "dumps",
    "find_run_files",
    "is_reference",
    "load_run",
    "machine_runs",
    "reference_folder",
    "save_whole",
    "write_whole",
]

RUN_GLOB = "[0-9][0-9][0-9][0-9]_*.json"  # a saved run's name: its number, then pytest-benchmark's save name
_NUMBERED = re.compile(r"^(\d{4})_")
# The families of fmnist-bench: a run with none of them is another suite's.
_OURS = ("transfer", "inference", "train")


# The folder of the runs the project ships (results/reference/<machine>/<interpreter>/NNNN_*.json): measured on
# the project's own machines, labelled reference wherever they are shown, never a user's machine.
REFERENCE = "reference"


def is_reference(path: str | os.PathLike) -> bool:
    """Whether a path (a run file, a folder) lies in this checkout's reference runs, links and `..` resolved."""
    return Path(path).resolve().is_relative_to(reference_folder().resolve())


def reference_folder() -> Path:
    """The reference runs shipped with this checkout: results/reference/ beside bench/."""
    return Path(__file__).resolve().parents[2] / "results" / REFERENCE


class RunFileWarning(UserWarning):
    """A file, or a benchmark in one, that the report cannot read: named with the field, then passed over."""


def _warn(message: str) -> None:
    warnings.warn(message, RunFileWarning, stacklevel=3)


def find_run_files(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Every .json file under `paths`, as (file, the folder it was found under), sorted.

    Folders are searched recursively, following symbolic links (a machine's results folder
    linked in from elsewhere is still read), each real folder once, so a link loop ends.
    """
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            seen: set[str] = set()
            for folder, dirs, files in os.walk(path, followlinks=True):
                real = os.path.realpath(folder)
                if real in seen:
                    dirs[:] = []
                    continue
                seen.add(real)
                dirs.sort()
                for name in files:
                    file = Path(folder) / name
                    if name.endswith(".json") and file.is_file():
                        found.setdefault(file, path)
        elif path.is_file():
            found.setdefault(path, path.parent)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return sorted(found.items())


def load_run(path: str | os.PathLike) -> dict | None:
    """One saved run, or None (with a RunFileWarning naming the file and the field) when it is not one."""
    path = Path(path)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        _warn(f"{path}: not readable JSON, skipped ({exc})")
        return None
    errors = run_errors(run)
    if errors:
        _warn(f"{path}: not a saved run the report can read, skipped: {'; '.join(errors[:3])}")
        return None
    if not any(isinstance(b, dict) and b.get("group") in _OURS for b in run["benchmarks"]):
        _warn(f"{path}: a pytest-benchmark run with no fmnist-bench benchmarks, skipped")
        return None
    return run


def dumps(record, **kw) -> str:
    """JSON as pytest-benchmark writes a run (its public utils.safe_dumps: what the json module cannot write
    becomes text), so a run the suite saves reads back as pytest-benchmark's own."""
    return safe_dumps(record, **kw)


def _write_temporary(folder: Path, prefix: str, data: bytes) -> Path:
    """A complete temporary file in `folder` holding `data`, made as a plain open() makes files (the umask applies)."""
    tmp = folder / f"{prefix}{os.getpid()}-{uuid.uuid4().hex}.tmp"
    try:
        with tmp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_whole(path: Path, data: bytes) -> None:
    """Write `path` so that it is either complete or absent: a temporary file, then a rename."""
    tmp = _write_temporary(path.parent, f".{path.name}.", data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.glob(RUN_GLOB) if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


def save_whole(folder: Path, save_name: str, output_json: dict) -> Path:
    """Save a run as pytest-benchmark's storage does (`NNNN_<name>.json`, the next number), but whole.

    The data goes to a temporary file first and is then linked to its numbered name, so a
    failed write (a full disk) leaves no truncated run. The number is chosen and taken under
    a lock on the folder's `.save.lock`, so runs saving at the same moment never share one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _write_temporary(folder, ".saving-", dumps(output_json, ensure_ascii=True, indent=4).encode())
    try:
        with (folder / ".save.lock").open("a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            for _attempt in range(1000):
                target = folder / f"{_next_number(folder):04d}_{save_name}.json"
                try:
                    _take(tmp, target)
                    return target
                except FileExistsError:
                    continue
            raise OSError(f"no free run number in {folder}")
    finally:
        tmp.unlink(missing_ok=True)


def _take(tmp: Path, target: Path) -> None:
    """Give `tmp` the name `target`, failing with FileExistsError, never overwriting, if it is taken."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:
        # A filesystem without hard links (FAT, some network mounts): claim the name, then move
        # the whole file onto it. Under the folder's lock no other save can claim it meanwhile.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(tmp, target)


def machine_runs(folder: Path) -> list[tuple[str, dict]]:
    """(file name, run) of every saved run in one machine's folder that reads as JSON with benchmarks, oldest first.

    What a new run learns from (the estimate): a file that is not readable predicts nothing here,
    and the report names it.
    """
    runs = []
    for path in sorted(folder.glob(RUN_GLOB)):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(run, dict) and isinstance(run.get("benchmarks"), list):
            runs.append((path.name, run))
    return runs
