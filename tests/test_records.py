"""The saved run's typed records (bench/format/records.py): every committed run of every format reads through them
and writes back as it was; the JSON Schema is made from them; a field read wrong reads as None, never raises."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bench.format import records as rec
from bench.format.fields import Record, Spec, integer, items, mapping, nested, number, text
from bench.format.schema import BENCHMARK_SCHEMA, RUN_SCHEMA, benchmark_errors, run_errors

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(
    p
    for folder in ("results", "tests/fixtures", "docs")
    for p in (ROOT / folder).rglob("*.json")
    if "benchmarks" in p.read_text(errors="replace")[:100_000]
)


def _runs():
    for path in COMMITTED:
        run = json.loads(path.read_text())
        if isinstance(run, dict) and isinstance(run.get("benchmarks"), list):
            yield path, run


def test_committed_runs_of_every_format_are_here():
    formats = {rec.read_run(run).ours.format or 1 for _path, run in _runs()}
    assert set(range(1, 7)) <= formats, formats  # the newest is regenerated with each format bump


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_committed_run_reads_and_writes_back_as_it_was(path):
    run = json.loads(path.read_text())
    written = rec.read_run(run).write()
    assert json.dumps(written) == json.dumps(run)  # the same keys, values and order
    for bench in run["benchmarks"]:
        if bench.get("group") in rec.EXTRA:
            extra = bench.get("extra_info") or {}
            again = rec.EXTRA[bench["group"]].read(extra).write()
            assert json.dumps(again) == json.dumps(extra)


def test_the_schema_is_made_from_the_records():
    assert RUN_SCHEMA == rec.Run.schema()
    properties = BENCHMARK_SCHEMA["properties"]
    assert properties["stats"] == rec.Stats.schema()
    assert properties["params"] == rec.Params.schema()
    for rule in BENCHMARK_SCHEMA["allOf"]:
        family = rule["if"]["properties"]["group"]["const"]
        assert rule["then"]["properties"]["extra_info"] == rec.EXTRA[family].schema()
        assert rule["then"]["properties"]["params"]["required"] == list(rec.REQUIRED_AXES[family])
    # a bound declared once holds in the schema: a copy's direction, a time of 0
    copy = rec.Copy.schema()["properties"]["direction"]
    assert copy["enum"] == ["h2d", "d2h"]
    assert rec.Stats.schema()["properties"]["median"]["minimum"] == rec.SECONDS[0]


def _case(**extra):
    return {
        "group": "train",
        "name": "test_train_epoch[cpu-t2-b100-resident]",
        "params": {"device": "cpu", "cpu_threads": 2, "batch_size": 100, "pipeline": "resident"},
        "stats": {"median": 0.5, "rounds": 3},
        "extra_info": {"images": 2000, "batches": 20, **extra},
    }


def test_a_case_the_schema_passes_reads_as_its_family():
    case = _case(loss=0.7, work={"flops_per_image": 1e6, "copies": []})
    assert benchmark_errors(case, 0) == []
    read = rec.Benchmark.read(case)
    assert isinstance(read.extra, rec.TrainExtra)
    assert read.extra.work.copies == []  # present and empty stays empty
    assert read.extra.work.ops_fixed is None  # absent reads as None
    assert read.stats.median == 0.5 and read.params.batch_size == 100


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({"loss": "low"}, "extra_info.loss: 'low' is not of type"),
        ({"work": {"copies": [{"direction": "up"}]}}, "extra_info.work.copies[0]"),
        ({"limits": {"binding": "luck"}}, "extra_info.limits.binding: 'luck' is not one of"),
        ({"accuracy": float("nan")}, "extra_info.accuracy: nan is not of type"),
    ],
)
def test_a_field_read_wrong_reads_as_none_and_the_schema_says_where(extra, said):
    case = _case(**extra)
    assert any(line.startswith(f"benchmarks[0].{said}") for line in benchmark_errors(case, 0)), (
        benchmark_errors(case, 0)
    )
    read = rec.Benchmark.read(case).extra  # never raises
    assert read.loss is None or read.loss == case["extra_info"].get("loss")


def test_a_run_the_schema_refuses_says_which_field():
    assert run_errors({"benchmarks": []}) == [
        "(the whole file): 'machine_info' is a required property"
    ]
    said = run_errors({"machine_info": {"fmnist_bench": {"format": 0}}, "benchmarks": []})
    assert said == ["machine_info.fmnist_bench.format: 0 is less than the minimum of 1"]


def test_a_record_made_here_writes_what_the_format_says_unknown_as_null():
    ours = rec.FmnistBench(format=rec.FORMAT_VERSION).write()
    assert ours == {"format": rec.FORMAT_VERSION, "machine_id": None, "machine_name": None}
    assert run_errors({"machine_info": {"fmnist_bench": ours}, "benchmarks": []}) == []


def test_a_record_read_keeps_what_it_does_not_declare():
    saved = {"state": "on", "sampler": {"late": 2}, "flags": None}
    read = rec.Telemetry.read(saved)
    assert read.flags is None and read.state == "on"
    assert read.write() == saved  # null stays null, the unknown key stays
    plan = rec.SavedPlan.read({"quick": True, "batch_sizes": [100]})
    assert plan.knobs == {"batch_sizes": [100]}  # a declared rest() gives them to its readers


def test_the_field_declarations_make_their_schema():
    @dataclasses.dataclass(frozen=True)
    class Part(Record):
        n: int | None = integer(1, 10, null=False, required=True)

    @dataclasses.dataclass(frozen=True)
    class Whole(Record):
        name: str | None = text(5, choices=("a", "b"))
        share: float | None = number(0, 1, zero=True)
        parts: list | None = items(Part, length=2)
        by: dict | None = mapping(number(0), keys=("x",))
        one: Part | None = nested(Part, null=False)

    schema = Whole.schema()
    assert schema["properties"]["name"] == {
        "type": ["string", "null"],
        "maxLength": 5,
        "enum": ["a", "b", None],
    }
    assert schema["properties"]["parts"]["maxItems"] == 2
    assert schema["properties"]["parts"]["items"]["required"] == ["n"]
    assert schema["properties"]["by"]["propertyNames"] == {"enum": ["x"]}
    assert schema["properties"]["one"]["type"] == "object"
    assert isinstance(Whole.specs()["by"], Spec)
    read = Whole.read({"name": 3, "parts": [{"n": 2}, "x"], "by": {"x": 0.5, "y": "?"}})
    assert read == Whole(name=None, parts=[Part(2)], by={"x": 0.5})
