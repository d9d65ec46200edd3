"""Where saved runs live and how they are read and written: finding run files, reading one, saving one whole.

pytest-benchmark files a run as `NNNN_<name>.json` in a machine's folder. The suite saves the
same names, but whole (a temporary file, then a link), so a full disk never leaves a truncated
run; readers find run files here and read each one through the format's schema.
"""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path

from pytest_benchmark.utils import safe_dumps

from bench.format.names import FAMILIES
from bench.format.schema import run_errors

try:  # the lock under which a run's number is taken; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "REFERENCE",
    "RUN_GLOB",
    "MAX_RUN_BYTES",
    "NotARunFile",
    "RunFileWarning",
    "alive",
    "dumps",
    "read_bounded",
    "read_json",
    "find_run_files",
    "is_reference",
    "load_run",
    "machine_runs",
    "reference_folder",
    "rename_new",
    "shown",
    "save_whole",
    "write_whole",
]

RUN_GLOB = "[0-9][0-9][0-9][0-9]_*.json"  # a saved run's name: its number, then pytest-benchmark's save name
_NUMBERED = re.compile(r"^(\d{4})_")
# The families of fmnist-bench: a run with none of them is another suite's.
_OURS = FAMILIES


# The folder of the runs the project ships (results/reference/<machine>/<interpreter>/NNNN_*.json):
# measured on the project's own machines, labelled reference wherever they are shown, never a user's
# machine.
REFERENCE = "reference"
# The folder the report keeps what it read and drew in (bench/report/cache.py), inside a results
# folder.
REPORT_CACHE = ".report-cache"


def is_reference(path: str | os.PathLike) -> bool:
    """Whether a path (a run file, a folder) lies in this checkout's reference runs, links and `..` resolved."""
    return Path(path).resolve().is_relative_to(reference_folder().resolve())


def reference_folder() -> Path:
    """The reference runs shipped with this checkout: results/reference/ beside bench/."""
    return Path(__file__).resolve().parents[2] / "results" / REFERENCE


# A default run's file is 0.3 MB (2-core VM) to 1 MB (H100 host); a hundred times that is not a run
# of this suite, and reading it whole could take the machine's memory (/dev/zero never ends).
MAX_RUN_BYTES = 128 * 2**20
# A lone surrogate escape ("\\ud800") is valid JSON and not encodable text: pandas' CSV, the page
# and a UTF-8 terminal would fail on it. A JSON text can only carry one through this escape.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"  # what a character that is not text becomes: visible, never a crash


class NotARunFile(ValueError):
    """A file that is not read as a run: not a regular file, too large, not UTF-8 JSON."""


def _kind(mode: int) -> str:
    """What a path that is not a regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file"


def read_bounded(
    path: str | os.PathLike, limit: int, error: type[ValueError] = NotARunFile, what: str = "run"
) -> bytes:
    """A regular file's bytes, `limit` at most, read as carefully as a run file: what is not a regular file (a
    folder, a FIFO, a device, a socket) is refused without being opened, so it cannot hang or flood
    the reader, and so is a file larger than `limit` (larger than any `what`); `error` (a
    ValueError) says why."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise error(f"cannot be read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{_kind(info.st_mode)}, not a file: never read")
    if info.st_size > limit:
        raise error(f"{_size(info.st_size)}, larger than any {what} ({_size(limit)} at most)")
    try:
        # O_NONBLOCK: should the path become a FIFO after the check, opening it does not wait for a
        # writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise error(f"{_kind(mode)}, not a file: never read")
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot be read: {exc.strerror or exc}") from exc
    if len(raw) > limit:
        raise error(f"larger than any {what} ({_size(limit)} at most)")
    return raw


def _size(count: int) -> str:
    return f"{count / 2**20:,.0f} MiB" if count >= 2**20 else f"{count:,} bytes"


def read_json(path: str | os.PathLike, limit: int = MAX_RUN_BYTES) -> tuple[object, int]:
    """A JSON file's value with every lone surrogate replaced by U+FFFD, and how many strings held one.

    Read by read_bounded: what is not a regular file, or is larger than `limit`, is refused unread.
    NotARunFile says why.
    """
    raw = read_bounded(path, limit)
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise NotARunFile(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    # a 5,000-digit number, 100,000 nested brackets: ValueError too
    except (ValueError, RecursionError) as exc:
        raise NotARunFile(f"not readable JSON ({str(exc)[:200] or type(exc).__name__})") from exc
    if not _SURROGATE_ESCAPE.search(raw):
        return value, 0
    return _text_only(value)


def shown(text: str) -> str:
    """A path or a name as text that every output can encode: a file name that is not UTF-8 (Python reads it
    with lone surrogates) shows U+FFFD where its bytes were."""
    return _LONE_SURROGATE.sub(REPLACEMENT, text)


def _text_only(value) -> tuple[object, int]:
    """`value` with each string's lone surrogates replaced (keys too), and how many strings were changed."""
    replaced = 0

    def clean(text: str) -> str:
        nonlocal replaced
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            replaced += 1
            return _LONE_SURROGATE.sub(REPLACEMENT, text)
        return text

    def walk(item):
        if isinstance(item, str):
            return clean(item)
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, dict):
            return {clean(k): walk(v) for k, v in item.items()}
        return item

    return walk(value), replaced


class RunFileWarning(UserWarning):
    """A file, or a benchmark in one, that the report cannot read: named with the field, then passed over."""


def _warn(message: str) -> None:
    warnings.warn(message, RunFileWarning, stacklevel=3)


def find_run_files(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Every .json file under `paths`, as (file, the folder it was found under), sorted.

    Folders are searched recursively, following symbolic links (a machine's results folder
    linked in from elsewhere is still read), each real folder once, so a link loop ends, and each
    real file once, under the first name it was found by; the report's cache folder (REPORT_CACHE)
    is passed over.
    """
    found: dict[Path, Path] = {}
    # a file under two names (a path given twice, a folder linked in twice) is read once
    real_files: set[str] = set()

    def add(file: Path, root: Path) -> None:
        real = os.path.realpath(file)
        if real not in real_files:
            real_files.add(real)
            found[file] = root

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
                # the report's own cache holds no runs
                dirs[:] = sorted(d for d in dirs if d != REPORT_CACHE)
                for name in files:
                    file = Path(folder) / name
                    if name.endswith(".json") and file.is_file():
                        add(file, path)
        elif path.is_file():
            add(path, path.parent)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return sorted(found.items())


def load_run(path: str | os.PathLike) -> dict | None:
    """One saved run, or None (with a RunFileWarning naming the file and the field) when it is not one."""
    path = Path(path)
    try:
        run, replaced = read_json(path)
    except NotARunFile as exc:
        _warn(f"{path}: {exc}, skipped")
        return None
    if replaced:
        _warn(
            f"{path}: {replaced} string{'s' if replaced != 1 else ''} held a character that is not text "
            f"(a lone surrogate escape): shown as {REPLACEMENT}"
        )
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
    tmp = _write_temporary(
        folder, ".saving-", dumps(output_json, ensure_ascii=True, indent=4).encode()
    )
    try:
        with (folder / ".save.lock").open("a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            for _attempt in range(1000):
                target = folder / f"{_next_number(folder):04d}_{save_name}.json"
                try:
                    rename_new(tmp, target)
                    return target
                except FileExistsError:
                    continue
            raise OSError(f"no free run number in {folder}")
    finally:
        tmp.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether a process of this id runs here (signal 0 asks without sending anything): a temporary named
    by its process's id (a save's, a journal's, a report's) is left behind once that process is gone."""
    if pid <= 0:  # 0 and below name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):  # an id no process can have
        return False
    return True


def rename_new(source: Path, target: Path) -> None:
    """Give `source` the name `target`, failing with FileExistsError, never overwriting, if it is taken.

    The file keeps its inode (a lock held on it goes with it)."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        # A filesystem without hard links (FAT, some network mounts): claim the name, then move
        # the whole file onto it. A name claimed this way is never taken by another claim meanwhile.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(source, target)
        return
    source.unlink()


def machine_runs(folder: Path) -> list[tuple[str, dict]]:
    """(file name, run) of every saved run in one machine's folder that reads as JSON with benchmarks, oldest first.

    What a new run learns from (the estimate): a file that is not readable predicts nothing here,
    and the report names it.
    """
    runs = []
    for path in sorted(folder.glob(RUN_GLOB)):
        try:
            run, _replaced = read_json(path)
        except NotARunFile:
            continue
        if isinstance(run, dict) and isinstance(run.get("benchmarks"), list):
            runs.append((path.name, run))
    return runs
