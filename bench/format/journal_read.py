"""A journal's lines read back, each checked on its own: a line that is torn, garbage, out of range or refused
by the format is that line's problem, never the journal's (bench/format/journal.py writes and
recovers them)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.format.records import JournalHeader, JournalNotes
from bench.format.schema import benchmark_errors, record_errors, run_errors

__all__ = ["MAX_JOURNAL_BYTES", "read_journal", "read_lines"]

# What a journal line may hold is declared by its record (bench/format/records.py: JournalHeader,
# JournalNotes): a value out of it is that line's problem, never the run's.
MAX_JOURNAL_BYTES = 256 * 2**20  # a default run's journal is under 1 MB
# What a noted value that the record refuses is said to be not.
_NOT = {
    "pid": "is not a process id",
    "planned_cases": "is not a count of cases (0 to {most:,})",
    "data_used": "is not a count of images per split",
    "saved": "is not a file name",
    "ended": "is not words",
}
_NOTED = tuple(_NOT)


def _check_header(header) -> str | None:
    if not isinstance(header.get("machine_info"), dict):
        return "has no machine_info"
    errors = record_errors(JournalHeader, header) or run_errors(
        {"machine_info": header["machine_info"], "benchmarks": []}
    )
    return "; ".join(errors[:2]) if errors else None


def _check_noted(key: str, value) -> str | None:
    if not record_errors(JournalNotes, {key: value}):
        return None
    return _NOT[key].format(most=JournalNotes.specs()[key].high)


# How each record the journal writes begins: where a line is torn (its process died, or its disk
# filled, while writing it) and a whole record follows on the same line, the record is read from
# there.
_RECORD_STARTS = tuple(
    f'{{"{key}": '
    for key in ("case", "header", "skipped", "failed", "planned_cases", "data_used", "saved")
)


def _glued(line: str):
    """The whole record glued after a torn one on `line`, or None."""
    for start in _RECORD_STARTS:
        at = line.find(start, 1)
        while at > 0:
            try:
                return json.loads(line[at:])
            except (ValueError, RecursionError):
                at = line.find(start, at + 1)
    return None


def read_journal(path: Path) -> tuple[JournalHeader | None, list[dict], JournalNotes, list[str]]:
    """(header, finished cases with their finish times, the rest it noted, problems).

    The rest: the process id, the cases planned, skipped and failed, and where the run was saved if
    it was. Every line that parses and validates is kept; any other (torn by the process's death,
    garbage, a number beyond reason, a case the format refuses, a case twice) is a problem, skipped.
    """
    with path.open("rb") as fh:
        return read_lines(fh, path)


def read_lines(fh, path: Path) -> tuple[JournalHeader | None, list[dict], JournalNotes, list[str]]:
    header, cases, problems = None, [], []
    noted: dict = {"skipped": [], "failed": []}
    seen: set[str] = set()
    raw = fh.read(MAX_JOURNAL_BYTES + 1)
    if len(raw) > MAX_JOURNAL_BYTES:
        problems.append(
            f"larger than {MAX_JOURNAL_BYTES // 2**20} MiB: only its first {MAX_JOURNAL_BYTES // 2**20} MiB read"
        )
        raw = raw[:MAX_JOURNAL_BYTES]
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = _glued(line)
            if record is None:
                problems.append(
                    f"line {number} is not complete JSON (the process died while writing it): skipped"
                )
                continue
            problems.append(
                f"line {number} begins with a torn record (skipped), then a whole one (read)"
            )
        # a 5,000-digit number; brackets nested past the parser's depth
        except (ValueError, RecursionError) as exc:
            problems.append(
                f"line {number} cannot be read ({str(exc)[:80] or type(exc).__name__}): skipped"
            )
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number} is not a record: skipped")
        elif "header" in record:
            why = (
                "is not a record"
                if not isinstance(record["header"], dict)
                else _check_header(record["header"])
            )
            if why:
                problems.append(f"line {number} (the header) {why}: skipped")
            else:
                header = JournalHeader.read(record["header"])
        elif "case" in record:
            errors = (
                benchmark_errors(record["case"], len(cases))
                if isinstance(record["case"], dict)
                else ["not a record"]
            )
            names = [] if errors else [record["case"].get("fullname"), record["case"].get("name")]
            name = next((n for n in names if isinstance(n, str) and n), None)
            if errors:
                problems.append(
                    f"line {number} (a case) is not one the format takes ({errors[0]}): skipped"
                )
            elif name is not None and name in seen:
                problems.append(f"line {number} holds case {name} a second time: skipped")
            else:
                seen.add(name)  # None too: harmless, never compared
                cases.append(record)
        elif isinstance(record.get("skipped"), dict) or isinstance(record.get("failed"), dict):
            kind = "skipped" if isinstance(record.get("skipped"), dict) else "failed"
            noted[kind].append(record[kind])
        else:
            for key in _NOTED:
                if key in record:
                    why = _check_noted(key, record[key])
                    if why:
                        problems.append(f"line {number}: {key} {why}: skipped")
                    else:
                        noted[key] = record[key]
    return header, cases, JournalNotes.read(noted), problems
