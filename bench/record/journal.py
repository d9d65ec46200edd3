"""Nothing finished is lost: a journal of finished cases, and recovery (python -m bench recover).

A run that saves keeps a journal beside its saved runs: one JSON line per finished case,
written as the case finishes. When pytest-benchmark saves the run, the journal is removed.
A run killed outright (SIGKILL, the out-of-memory killer, a power cut of the process) leaves
its journal, and `recover` turns it into a numbered saved run marked incomplete. The running
process holds a lock on its journal, so recovery never takes a live run's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from bench.record.format import run_record
from bench.record.store import dumps, save_whole

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
    "main",
    "read_journal",
    "recover",
]

JOURNAL_GLOB = "journal_*.jsonl"  # not *.json: pytest-benchmark and the report never take it for a run
JOURNAL_FORMAT = 1
# A folder with less free space than this is refused before the run, not found full at its save:
# a default run's file is about 0.3 MB (2-core VM) to 1 MB (H100 host), journal included.
MIN_FREE_BYTES = 16 * 2**20


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
            self.path = self.folder / f"journal_{stamp}_{os.getpid()}.jsonl"
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot write to {self.folder}: {exc.strerror or exc}") from exc
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        if fcntl is not None:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            free = _free_bytes(self.folder)
            if free is not None and free < MIN_FREE_BYTES:
                raise OSError(
                    28, f"only {free / 2**20:.1f} MiB free, a saved run needs up to {MIN_FREE_BYTES // 2**20}"
                )
            # The first write proves the folder takes data (a full disk fails here, not after the run).
            self._write({"journal": JOURNAL_FORMAT, "opened": _now(), "pid": os.getpid()})
        except OSError as exc:
            self.close(keep=False)
            raise JournalError(f"cannot write to {self.folder}: {exc.strerror or exc}") from exc
        self.cases = 0

    def _write(self, record: dict) -> None:
        self._file.write(dumps(record, ensure_ascii=True) + "\n")
        self._file.flush()  # in the kernel's hands now: a SIGKILL of this process cannot lose it

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
        if self._file.closed:
            return
        self._file.close()  # closing drops the lock
        if not keep:
            self.path.unlink(missing_ok=True)


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


def is_live(path: Path) -> bool:
    """True while the run that writes `path` holds its lock (it is running, here)."""
    if fcntl is None:  # pragma: no cover - Windows: no lock to ask, so never take a journal
        return True
    try:
        with path.open("rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except FileNotFoundError:
        return True  # its run just saved and removed it
    return False


def read_journal(path: Path) -> tuple[dict | None, list[dict], dict, list[str]]:
    """(header, finished cases with their finish times, the rest it noted, problems).

    The rest: the process id, the cases planned, skipped and failed, and where the run was
    saved if it was. A torn last line (the process died while writing it) is a problem, not an error.
    """
    header, cases, problems = None, [], []
    noted: dict = {"skipped": [], "failed": []}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number} is not complete JSON (the process died while writing it): skipped")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number} is not a record: skipped")
        elif isinstance(record.get("header"), dict):
            header = record["header"]
        elif isinstance(record.get("case"), dict):
            cases.append(record)
        elif isinstance(record.get("skipped"), dict) or isinstance(record.get("failed"), dict):
            kind = "skipped" if "skipped" in record else "failed"
            noted[kind].append(record[kind])
        else:
            for key in ("pid", "planned_cases", "saved", "data_used"):
                if key in record:
                    noted[key] = record[key]
    return header, cases, noted, problems


def recover(path: Path) -> tuple[Path | None, str]:
    """Turn one dead run's journal into a saved run marked incomplete; (saved path or None, what happened)."""
    if is_live(path):
        return None, f"{path}: its run is still going (the journal is locked): left alone"
    header, cases, noted, problems = read_journal(path)
    note = "".join(f"; {p}" for p in problems)
    _remove_temporaries(path.parent, noted.get("pid"))
    if noted.get("saved"):
        path.unlink(missing_ok=True)
        return None, f"{path}: its run was saved as {noted['saved']} before the process ended: removed{note}"
    if header is None or not cases:
        path.unlink(missing_ok=True)
        why = "no finished case" if header is not None else "the run ended before it started measuring"
        return None, f"{path}: {why}, nothing to recover: removed{note}"
    machine_info = dict(header.get("machine_info") or {})
    ours = dict(machine_info.get("fmnist_bench") or {})
    # The header's run record is from the session's start: the journal's own records replace it.
    ours["run"] = run_record(
        complete=False,
        planned_cases=noted.get("planned_cases"),
        finished_cases=len(cases),
        skipped=noted["skipped"],
        failed=noted["failed"],
        ended="killed: the process ended without saving; recovered from its journal",
        journal=path.name,
        recovered=_now(),
    )
    machine_info["fmnist_bench"] = ours
    if isinstance(noted.get("data_used"), dict) and isinstance(machine_info.get("dataset"), dict):
        # The header is from before the data was loaded: the journal says what the cases had.
        used = noted["data_used"]
        machine_info["dataset"] = {
            **machine_info["dataset"],
            "train_images": used.get("train"),
            "test_images": used.get("test"),
        }
    output = {
        "machine_info": machine_info,
        "commit_info": header.get("commit_info") or {},
        "benchmarks": [record["case"] for record in cases],
        # pytest-benchmark dates a run when it is saved: here, when its last case finished.
        "datetime": cases[-1].get("finished") or header.get("started") or _now(),
        "version": header.get("version"),
    }
    saved = save_whole(path.parent, f"{header.get('save_name') or 'recovered'}_partial", output)
    path.unlink()
    return saved, f"{path}: {len(cases)} finished case{'s' if len(cases) != 1 else ''} saved as {saved}{note}"


def _remove_temporaries(folder: Path, pid) -> None:
    """A save cut short by SIGKILL leaves its temporary file: the dead process's ones go with its journal."""
    if isinstance(pid, int):
        for tmp in folder.glob(f".saving-{pid}-*.tmp"):
            tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench recover",
        description="Turn the journals of killed runs into saved runs marked incomplete "
        "(a run stopped by Ctrl-C or SIGTERM saves itself; this is for SIGKILL and crashes).",
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, default=[Path("results")], help="folders or journal files (default: results)"
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
        except OSError as exc:
            said, failed = f"{journal}: could not recover: {exc}", True
        print(said)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
