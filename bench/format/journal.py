"""Nothing finished is lost: a journal of finished cases, and recovery (python -m bench recover).

A run that saves keeps a journal beside its saved runs: one JSON line per finished case,
written as the case finishes. When pytest-benchmark saves the run, the journal is removed.
A run killed outright (SIGKILL, the out-of-memory killer, a power cut of the process) leaves
its journal, and `recover` turns it into a numbered saved run marked incomplete. The running
process holds a lock on its journal, so recovery never takes a live run's.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from bench.format import records as fmt
from bench.format.journal_read import read_journal, read_lines
from bench.format.records import FORMAT_VERSION, run_record
from bench.format.schema import run_errors
from bench.format.store import (
    RUN_GLOB,
    NotARunFile,
    alive,
    dumps,
    machine_runs,
    read_json,
    rename_new,
    save_whole,
    shown,
)

try:  # the lock that tells a live run's journal from a dead one's; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "JOURNAL_GLOB",
    "Journal",
    "JournalError",
    "find_journals",
    "is_live",
    "journal_state",
    "main",
    "read_journal",
    "recover",
]

# not *.json: pytest-benchmark and the report never take it for a run
JOURNAL_GLOB = "journal_*.jsonl"
JOURNAL_FORMAT = 1
# A folder with less free space than this is refused before the run, not found full at its save:
# a default run's file is about 0.3 MB (2-core VM) to 1 MB (H100 host), journal included.
MIN_FREE_BYTES = 16 * 2**20
# the saved file's name after its number: never a path
_SAVE_NAME = re.compile("[A-Za-z0-9._+-]{1,200}")


class JournalError(OSError):
    """A journal that cannot be written (the folder is missing, read-only, full, or a file)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Journal:
    """The journal of one running session, in `folder` (a saved-run folder); locked while it lives."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            # The time, the process and a random part: a name never used twice, so a dead journal's
            # recovery, which removes its file by name, can never remove a newer journal that took
            # the same name.
            self.path = self.folder / f"journal_{stamp}_{os.getpid()}_{uuid.uuid4().hex[:8]}.jsonl"
            # Made, locked and given its first line under a name no recovery looks at, then renamed
            # (the lock goes with the file): a recovery never meets this journal unlocked, so never
            # takes it.
            opening = self.folder / f".opening-{self.path.name}"
            fd = os.open(opening, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot write to {self.folder}: {exc.strerror or exc}") from exc
        # Unbuffered, at offsets this object keeps: a write that fails leaves nothing in a buffer
        # for a later write or the close to fail on again, and the part of a line that did reach the
        # disk is cut off. (Not O_APPEND: with it Linux's pwrite appends wherever it is asked to
        # write, and the line saying how the run ended could not be written over in place.)
        self._fd, self._size, self._ended_at = fd, 0, None
        self.failed: str | None = None  # why a write failed: the journal takes nothing more
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free = _free_bytes(self.folder)
            if free is not None and free < MIN_FREE_BYTES:
                raise OSError(
                    28,
                    f"only {free / 2**20:.1f} MiB free, a saved run needs up to {MIN_FREE_BYTES // 2**20}",
                )
            # The first write proves the folder takes data (a full disk fails here, not after the
            # run).
            self._append(
                (
                    dumps({"journal": JOURNAL_FORMAT, "opened": _now(), "pid": os.getpid()}) + "\n"
                ).encode()
            )
            # Room, taken now, to say later how the run ended, written over in place: on a full disk
            # a new line could not be added, and recovery would call the run killed.
            self._ended_at = self._size
            self._append(_ended_line(None))
            rename_new(opening, self.path)
        except OSError as exc:
            os.close(fd)
            opening.unlink(missing_ok=True)
            raise JournalError(f"cannot write to {self.folder}: {exc.strerror or exc}") from exc
        self.cases = 0

    def _append(self, data: bytes) -> None:
        """`data` after the journal's last whole line, or none of it: a write the disk cannot take (full, or past
        `ulimit -f`) is cut off again, so no torn line is left for the next line to be glued onto.
        """
        written = 0
        try:
            while written < len(data):
                written += os.pwrite(self._fd, data[written:], self._size + written)
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)  # (shrinking takes no space)
            except OSError:
                pass
            raise
        self._size += written  # in the kernel's hands now: a SIGKILL of this process cannot lose it

    def _write(self, record: dict) -> None:
        if self.failed is not None:  # one write failed: no later line may follow a missing one
            raise JournalError(errno.EIO, self.failed, str(self.path))
        try:
            self._append((dumps(record, ensure_ascii=True) + "\n").encode())
        except OSError as exc:
            self.failed = exc.strerror or str(exc)
            raise JournalError(exc.errno or errno.EIO, self.failed, str(self.path)) from exc

    def ended(self, how: str) -> None:
        """How the run ended, where recovery will read it (the journal is kept: its run was not saved). Written
        over the room taken at the start, so a full disk cannot stop it; never raises."""
        if self._ended_at is None or self._fd is None:
            return
        try:
            os.pwrite(self._fd, _ended_line(how), self._ended_at)
        except OSError:
            pass

    def start(self, header: dict) -> None:
        """What a saved run needs besides its benchmarks: machine_info, commit_info, the save name."""
        self._write({"header": {**header, "started": _now()}})

    def add(self, benchmark: dict) -> None:
        """One finished case, as pytest-benchmark writes it in a saved run."""
        self._write({"case": benchmark, "finished": _now()})
        self.cases += 1

    def note(self, record: dict) -> None:
        """What else a recovered run should say: {"planned_cases": N}, {"skipped": {...}}, {"failed": {...}},
        {"data_used": {"train": N, "test": N}}."""
        self._write(record)

    def saved_as(self, path: Path) -> None:
        """The run is saved: if this journal outlives its process, recovery must not save it twice."""
        self._write({"saved": str(path)})

    def close(self, *, keep: bool) -> None:
        """Release the journal; remove it unless `keep` (its run was not saved)."""
        if self._fd is None:
            return
        # removed while still locked: no recovery ever meets it unlocked and takes it for dead
        if not keep:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing drops the lock
        self._fd = None


_ENDED_ROOM = 300  # bytes: how a run ended, in words, cut to fit


def _ended_line(how: str | None) -> bytes:
    """The journal's line saying how its run ended (null: not said yet), padded to _ENDED_ROOM bytes."""
    line = dumps({"ended": how}, ensure_ascii=True)
    while len(line) > _ENDED_ROOM - 1:  # cut by characters; each escaped one may take several bytes
        how = how[: max(len(how) - (len(line) - _ENDED_ROOM + 1) - 4, 0)] + "..."
        line = dumps({"ended": how}, ensure_ascii=True)
    return (line + " " * (_ENDED_ROOM - 1 - len(line)) + "\n").encode()


def _free_bytes(folder: Path) -> int | None:
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return stats.f_bavail * stats.f_frsize


def find_journals(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every journal under `paths` (folders searched recursively; journal files as given)."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update(p for p in path.rglob(JOURNAL_GLOB) if p.is_file())
        elif path.is_file() and path.match(JOURNAL_GLOB):
            found.add(path)
    return sorted(found)


def journal_state(path: Path) -> str:
    """What a journal's lock says: "live" while a run (or a recovery) holds it, "dead" when it is free to
    recover, else why it cannot be asked (no permission, removed meanwhile)."""
    if fcntl is None:  # pragma: no cover - Windows: no lock to ask, so never take a journal
        return "live"
    try:
        with path.open("rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "live"
            fcntl.flock(fh, fcntl.LOCK_UN)
    except FileNotFoundError:
        return "removed meanwhile (its run saved, or another recovery took it)"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return "dead"


def is_live(path: Path) -> bool:
    """True unless `path` is a dead run's journal that this process may recover (see journal_state)."""
    return journal_state(path) != "dead"


def recover(path: Path, *, machine_key: str | None = None) -> tuple[Path | None, str]:
    """Turn one dead run's journal into a saved run marked incomplete; (saved path or None, what happened).

    Exactly once: the journal's lock is taken before it is read and held until it is removed, so a
    second recovery (or a run starting meanwhile) leaves it alone; a run already saved from it (its
    record names this journal) is recognised, so it is never saved twice. `machine_key`: the machine
    this folder is for (a run recovering its folder's journals); another machine's journal is left
    alone.
    """
    if fcntl is None:  # pragma: no cover - Windows: no lock to ask, so never take a journal
        return None, f"{path}: no file locks here to tell a dead run from a live one: left alone"
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return (
            None,
            f"{path}: removed meanwhile (its run saved, or another recovery took it): nothing to do",
        )
    with fh:  # closing drops the lock, after the journal is removed
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return (
                None,
                f"{path}: its run is still going, or another recovery has it (the journal is locked): left alone",
            )
        try:
            if not os.path.samestat(os.fstat(fh.fileno()), os.stat(path)):
                raise FileNotFoundError
        except FileNotFoundError:
            return None, f"{path}: recovered meanwhile by another process: nothing to do"
        return _recover_locked(fh, path, machine_key)


def _recover_locked(fh, path: Path, machine_key: str | None) -> tuple[Path | None, str]:
    header, cases, noted, problems = read_lines(fh, path)
    note = "".join(f"; {p}" for p in problems)
    folder = path.parent
    theirs = (
        (fmt.MachineInfo.read(header.machine_info).fmnist_bench or fmt.FmnistBench()).machine_key
        if header
        else None
    )
    foreign = _foreign(folder, theirs, machine_key)
    if foreign:
        return (
            None,
            f"{path}: the journal of another machine ({theirs}), not {foreign}'s: left where it is{note}",
        )
    _remove_temporaries(folder, noted.pid)
    already = _saved_copy(folder, path.name, noted.saved)
    if already is not None:
        path.unlink(missing_ok=True)
        return (
            None,
            f"{path}: its run was saved as {already} before the process ended: removed{note}",
        )
    if noted.saved:
        note += f"; it says its run was saved as {noted.saved}, and no such run of it is there: its cases are recovered"
    if not cases:
        path.unlink(missing_ok=True)
        why = (
            "no finished case"
            if header is not None
            else "the run ended before it started measuring"
        )
        return None, f"{path}: {why}, nothing to recover: removed{note}"
    lost = header is None
    if lost:  # torn or refused: the cases are kept, the machine's facts are not known
        header = fmt.JournalHeader(
            machine_info={"fmnist_bench": {"format": FORMAT_VERSION}}, save_name="recovered"
        )
        note += "; its header was lost: the cases are saved with the machine's facts unknown"
    machine_info = dict(header.machine_info or {})
    ours = dict(machine_info.get("fmnist_bench") or {})
    if lost:  # the folder it was found in is the machine's (results/<machine key>/<interpreter>/)
        ours["machine_key"] = machine_key or folder.parent.name or folder.name
    # The header's run record is from the session's start: the journal's own records replace it. How
    # it ended, where the run said so before it ended (a full disk, a save that failed); else it was
    # killed.
    how = noted.ended or "killed: the process ended without saving"
    ours["run"] = run_record(
        complete=False,
        planned_cases=noted.planned_cases,
        finished_cases=len(cases),
        skipped=noted.skipped or [],
        failed=noted.failed or [],
        ended=f"{how}; recovered from its journal"
        + ("; its header was lost: the machine's facts are unknown" if lost else ""),
        journal=path.name,
        recovered=_now(),
    )
    if lost:
        ours["run"]["header_lost"] = True
    machine_info["fmnist_bench"] = ours
    if noted.data_used is not None and isinstance(machine_info.get("dataset"), dict):
        # The header is from before the data was loaded: the journal says what the cases had.
        machine_info["dataset"] = {
            **machine_info["dataset"],
            "train_images": noted.data_used.train,
            "test_images": noted.data_used.test,
        }
    output = {
        "machine_info": machine_info,
        "commit_info": header.commit_info or {},
        "benchmarks": [record["case"] for record in cases],
        # pytest-benchmark dates a run when it is saved: here, when its last case finished.
        "datetime": cases[-1].get("finished") or header.started or _now(),
        "version": header.version,
    }
    if not isinstance(output["commit_info"], dict):
        output["commit_info"] = {}
    if not isinstance(output["datetime"], str) or len(output["datetime"]) > 100:
        output["datetime"] = _now()
    errors = run_errors(output)
    if errors:  # never a run the report would refuse, with the journal gone
        return (
            None,
            f"{path}: its cases do not make a run the report reads ({errors[0]}): left where it is{note}",
        )
    save_name = header.save_name
    save_name = (
        save_name if isinstance(save_name, str) and _SAVE_NAME.fullmatch(save_name) else "recovered"
    )
    saved = save_whole(folder, f"{save_name}_partial", output)
    path.unlink()
    return (
        saved,
        f"{path}: {len(cases)} finished case{'s' if len(cases) != 1 else ''} saved as {saved}{note}",
    )


def _foreign(folder: Path, theirs, machine_key: str | None) -> str | None:
    """The machine a journal is foreign to (its header names another), or None: it is this folder's."""
    if not isinstance(theirs, str):
        return None  # header lost, or a suite older than machine keys: the folder it is in is all there is
    if machine_key is not None:
        return machine_key if theirs != machine_key else None
    if folder.parent.name == theirs or folder.name == theirs:
        return None
    # Saved elsewhere than results/<key>/ (--benchmark-storage): the folder's own runs say whose it
    # is.
    keys = {fmt.read_run(run).ours.machine_key for _, run in machine_runs(folder)}
    keys.discard(None)
    return None if not keys or theirs in keys else " or ".join(sorted(map(str, keys)))


def _saved_copy(folder: Path, journal: str, said) -> Path | None:
    """A run in `folder` saved from this journal (its run record names it), the one a "saved" line names first."""
    named = folder / Path(said).name if isinstance(said, str) else None
    # the newest first: a run is saved after its journal
    candidates = sorted(folder.glob(RUN_GLOB), reverse=True)
    if named is not None and named in candidates:
        candidates.remove(named)
        candidates.insert(0, named)
    for candidate in candidates:
        try:
            run, _ = read_json(candidate)  # a FIFO or a device named like a run is refused unread
        except NotARunFile:
            continue
        state = fmt.read_run(run).ours.run if isinstance(run, dict) else None
        named_by = state.journal if state else None
        # Before whole runs named their journal too (format 5's first runs), the "saved" line is all
        # there is: the run it names is trusted when it reads as a run and names no other journal.
        readable = isinstance(run, dict) and isinstance(run.get("benchmarks"), list)
        if named_by == journal or (candidate == named and named_by is None and readable):
            return candidate
    return None


def _remove_temporaries(folder: Path, pid) -> None:
    """A save cut short by SIGKILL leaves its temporary file: the dead process's ones go with its journal.
    Never a live process's (the journal's pid taken again, or its run between saving and removing
    it)."""
    if isinstance(pid, int) and not alive(pid):
        for tmp in [
            *folder.glob(f".saving-{pid}-*.tmp"),
            *folder.glob(f".opening-journal_*_{pid}_*.jsonl"),
        ]:
            tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench recover",
        description="Turn the journals of killed runs into saved runs marked incomplete "
        "(a run stopped by Ctrl-C or SIGTERM saves itself; this is for SIGKILL and crashes).",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[Path("results")],
        help="folders or journal files (default: results)",
    )
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    journals = find_journals(args.paths)
    if not journals:
        print(f"no journals under {', '.join(map(str, args.paths))}: nothing to recover")
        return 0
    failed = False
    for journal in journals:
        try:
            _saved, said = recover(journal)
        except Exception as exc:  # noqa: BLE001 - one journal's problem, named; the others are still recovered
            said, failed = f"{journal}: could not recover: {type(exc).__name__}: {exc}", True
        print(shown(said))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
