"""The saved-run format's field reference, written from its records (bench/format/records.py).

docs/saved-runs.md holds it between two markers; `python -m bench.format.reference` writes it there
again, and tests/test_docs.py fails when the two differ: a field is declared once, in its record, and
the reference follows.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.format.fields import Record, Spec
from bench.format.records import EXTRA, Benchmark, JournalHeader, JournalNotes, Run

__all__ = ["BEGIN", "END", "markdown", "rewrite"]

BEGIN = "<!-- field reference: written by python -m bench.format.reference; do not edit -->"
END = "<!-- end of the field reference -->"
_DOC = Path(__file__).resolve().parents[2] / "docs" / "saved-runs.md"


def _number(value) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) < 1e13:
        return f"{int(value):,}"
    return f"{value:g}"


def _type(spec: Spec | type, where: dict[type, str], *, field: bool = True) -> str:
    """A field's type in words: 'number 0 to 1', 'list of [Op](#op)'."""
    if isinstance(spec, type):
        return f"[{spec.__name__}](#{where[spec].replace('.', '').lower()})"
    kind = spec.kind
    if kind in ("number", "integer"):
        said = kind
        if spec.high is not None and spec.high < 2**53:
            said += f" {_number(spec.low) or '-inf'} to {_number(spec.high)}"
        elif spec.low is not None:
            said += f" from {_number(spec.low)}"
        if spec.zero:
            said += ", or 0"
    elif kind == "text":
        said = "text"
        if spec.choices:
            said = "one of " + ", ".join(f"`{c}`" for c in spec.choices)
        elif spec.pattern and spec.pattern != r"[\s\S]":
            said += f" matching `{spec.pattern}`"
        if spec.length and not spec.choices:
            said += f", at most {spec.length:,} characters"
    elif kind == "flag":
        said = "true or false"
    elif kind == "record":
        said = _type(spec.item, where)
    elif kind == "list":
        said = f"list of {_type(spec.item, where, field=False)}"
        if spec.length:
            said += f", at most {spec.length}"
    elif kind == "map":
        said = f"map to {_type(spec.item, where, field=False)}"
        if spec.keys:
            said += " (keys " + ", ".join(f"`{k}`" for k in spec.keys) + ")"
    else:
        said = "any JSON" if not spec.kinds else " or ".join(spec.kinds)
    if not field:
        return said
    if spec.required:
        said += "; required"
    elif not spec.null and kind != "raw":
        said += "; never null"
    return said


def _records() -> list[tuple[str, type]]:
    """Every record of the format with the path it sits at, the run's first, then each family's extra_info and
    the journal's lines; a record that sits at several paths is listed once, at the first."""
    found: list[tuple[str, type]] = []
    seen: set[type] = set()

    def walk(path: str, record: type) -> None:
        if record in seen:
            return
        seen.add(record)
        found.append((path, record))
        for name, spec in record.specs().items():
            inner = spec.item if spec.kind in ("record", "list", "map") else None
            if isinstance(inner, type) and issubclass(inner, Record):
                walk(f"{path}.{spec.name or name}" + ("[]" if spec.kind == "list" else ""), inner)

    walk("run", Run)
    walk("benchmarks[]", Benchmark)
    for family, record in EXTRA.items():
        walk(f"benchmarks[].extra_info ({family})", record)
    walk("journal header", JournalHeader)
    walk("journal notes", JournalNotes)
    return found


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def markdown() -> str:
    """The reference: one table per record, each field's key, type and meaning."""
    records = _records()
    where = {record: record.__name__ for _path, record in records}
    out = [BEGIN, ""]
    for path, record in records:
        out += [f"#### {record.__name__}", ""]
        doc = (record.__doc__ or "").strip()
        if doc.startswith(f"{record.__name__}("):  # the dataclass's own: no docstring of its own
            doc = ""
        named, _, rest = doc.partition(": ")
        if rest and " " not in named:  # "machine_info.torch: the build ...": the path says it
            doc = rest[:1].upper() + rest[1:]
        head = f"`{path}`"
        out += [f"{head}: {_cell(doc)}" if doc and not doc.startswith(record.__name__) else head]
        out += ["", "| field | type | meaning |", "| --- | --- | --- |"]
        for name, spec in record.specs().items():
            key = "(any other key)" if spec.kind == "rest" else f"`{spec.name or name}`"
            kind = "kept as saved" if spec.kind == "rest" else _type(spec, where)
            out.append(f"| {key} | {_cell(kind)} | {_cell(spec.doc)} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def rewrite(path: Path = _DOC) -> bool:
    """Write the reference into `path` between its markers; whether it changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + markdown() + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main() -> int:
    changed = rewrite()
    print(f"{_DOC}: {'written' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
