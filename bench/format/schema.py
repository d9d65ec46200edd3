"""The saved-run format as JSON Schema, made from its typed records (bench/format/records.py): what any file must
hold for a reader to rely on it, checked in one place."""

from __future__ import annotations

import math
import reprlib

from jsonschema import Draft202012Validator, validators

from bench.format.records import EXTRA, REQUIRED_AXES, Benchmark, Run

__all__ = [
    "BENCHMARK_SCHEMA",
    "RUN_SCHEMA",
    "benchmark_errors",
    "readable_benchmark",
    "record_errors",
    "run_errors",
]

# Checked with jsonschema (a well-kept validator with field paths in its errors) rather than by hand: the report
# must survive any file. The schema is made from the same declarations the readers read through, so what it
# lets pass is what they can read; everything else a run carries passes through unconstrained.
RUN_SCHEMA = Run.schema()


def _benchmark_schema() -> dict:
    """A benchmark's schema: pytest-benchmark's parts, and its family's extra_info with the axes it must name."""
    out = Benchmark.schema()
    out["allOf"] = [
        {
            "if": {"properties": {"group": {"const": family}}},
            "then": {
                "properties": {
                    "params": {"required": list(axes)},
                    "extra_info": EXTRA[family].schema(),
                },
                "required": ["extra_info"],
            },
        }
        for family, axes in REQUIRED_AXES.items()
    ]
    return out


BENCHMARK_SCHEMA = _benchmark_schema()


def _finite_number(_checker, value) -> bool:
    # Python's json reads NaN and Infinity; a bound is never violated by NaN, so the type says no.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_integer(checker, value) -> bool:
    return _finite_number(checker, value) and float(value).is_integer()


_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _finite_number, "integer": _finite_integer}
    ),
)
_RUN = _Validator(RUN_SCHEMA)
_BENCHMARK = _Validator(BENCHMARK_SCHEMA)


def _field(path) -> str:
    """A JSON path as a reader writes it: machine_info.gpus[0].name."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the whole file)"


# How an offending value is shown in its message: its start, never its whole (a 600-character name
# would push "is too long" out of any line cut to length).
_SHOWN = reprlib.Repr()  # (its limits are attributes: Python 3.11's takes no arguments)
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong, _SHOWN.maxlist, _SHOWN.maxdict = 60, 60, 40, 4, 4


def _message(error) -> str:
    """jsonschema's message with the value it quotes cut (the value, not the reason); at most 300 characters."""
    whole = repr(error.instance)
    message = error.message
    if len(whole) > 60 and whole in message:
        cut = _SHOWN.repr(error.instance)
        if isinstance(error.instance, str):
            cut += f" ({len(error.instance):,} characters)"
        message = message.replace(whole, cut)
    return message if len(message) <= 300 else message[:300] + "..."


def _say(errors, prefix: str = "") -> list[str]:
    said = []
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        where = _field([*([prefix] if prefix else []), *error.absolute_path])
        said.append(f"{where}: {_message(error)}")
    return said


def run_errors(run) -> list[str]:
    """What is wrong with a run's top level (machine_info and the list of benchmarks), one line per field."""
    return _say(_RUN.iter_errors(run))


def benchmark_errors(bench, index: int) -> list[str]:
    """What is wrong with benchmarks[index], one line per field; [] for a benchmark the report can read."""
    return _say(_BENCHMARK.iter_errors(bench), f"benchmarks[{index}]")


def _explanations(family) -> set[str]:
    """The extra_info fields of a family that explain a measurement rather than hold it."""
    record = EXTRA.get(family) if isinstance(family, str) else None
    if record is None:
        return set()
    return {spec.name or name for name, spec in record.specs().items() if spec.explains}


def readable_benchmark(bench, index: int) -> tuple[dict, list[str], list[str]]:
    """benchmarks[index] as a reader can take it: (the benchmark, what is wrong, what was left out).

    A malformed explanation (a profile beside the time) is left out of a copy, with the fields that
    were wrong with it: the measurement stays. Anything else wrong is an error, and the benchmark is
    not one a reader can take.
    """
    errors = list(
        _BENCHMARK.iter_errors(bench)
    )  # (one pass: a valid benchmark, the common case, costs one)
    if not errors:
        return bench, [], []
    explanations = _explanations(bench.get("group") if isinstance(bench, dict) else None)
    left = {
        error.absolute_path[1]
        for error in errors
        if len(error.absolute_path) >= 2
        and error.absolute_path[0] == "extra_info"
        and error.absolute_path[1] in explanations
    }
    if not left:
        return bench, _say(errors, f"benchmarks[{index}]"), []
    said = [
        line
        for line in _say(errors, f"benchmarks[{index}]")
        if any(line.startswith(f"benchmarks[{index}].extra_info.{key}") for key in left)
    ]
    extra = {key: value for key, value in bench["extra_info"].items() if key not in left}
    kept = {**bench, "extra_info": extra}
    return kept, benchmark_errors(kept, index), said


def record_errors(record: type, value) -> list[str]:
    """What is wrong with `value` as `record` (a bench/format/records.py type) says it must be, one line per field."""
    return _say(_Validator(record.schema()).iter_errors(value))
