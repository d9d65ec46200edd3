"""The saved-run format as JSON Schema: what the report needs of a run and of each benchmark, checked in one place."""

from __future__ import annotations

import math
import reprlib

from jsonschema import Draft202012Validator, validators

from bench.format.names import FLOORS, LIMITS

__all__ = ["benchmark_errors", "run_errors"]

# Checked with jsonschema (a well-kept validator with field paths in its errors) rather than by
# hand: the report must survive any file, and one declaration says what any file must hold.
# Only what the report reads is constrained; everything else a run carries passes through.

_TEXT = {"type": "string", "maxLength": 500}
_OPTIONAL_TEXT = {"type": ["string", "null"], "maxLength": 500}
# A time in seconds: finite and positive. A nanosecond and a week bound it: no case of this suite
# (a one-image copy, a 60,000-image epoch) takes less or more, and a figure beyond them
# (5e-324, 1e308: what JSON can carry) is a broken file, not a fast or a slow machine.
_SECONDS = {"type": "number", "minimum": 1e-9, "maximum": 7 * 86400}
# bench/measure/plan.py MAX_BATCH_SIZE
_BATCH = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
_COUNT = {"type": "integer", "minimum": 1, "maximum": 2**53}
_OPTIONAL_COUNT = {"type": ["integer", "null"], "minimum": 0, "maximum": 2**53}
# Energy and power bounds: a node of eight 1 kW GPUs for a day is under 10^9 J; anything beyond is a
# broken file. 0 is "no reading" (a counter that did not move); a microjoule is below any counter's
# resolution.
_JOULES = {
    "anyOf": [{"const": 0}, {"type": "null"}, {"type": "number", "minimum": 1e-6, "maximum": 1e9}]
}
_WATTS = {"type": ["number", "null"], "minimum": 0, "maximum": 100_000}
# seconds of a profiled epoch's phase
_PHASE = {"type": ["number", "null"], "minimum": 0, "maximum": 7 * 86400}
# How busy the machine was with other work (format 5: the whole run's, and each case's around it).
_LOAD = {
    "type": "object",
    "properties": {
        "available": {"type": "boolean"},
        "outside_share": {"type": "number", "minimum": 0, "maximum": 1},
        "busy": {"type": "boolean"},
    },
}

_MACHINE_INFO = {
    "type": "object",
    "properties": {
        "node": _OPTIONAL_TEXT,
        "processor": _OPTIONAL_TEXT,
        "machine": _OPTIONAL_TEXT,
        "cpu": {"type": "object", "properties": {"brand_raw": _OPTIONAL_TEXT}},
        "constructed": {"type": ["string", "boolean", "null"]},
        "torch": {
            "type": "object",
            "properties": {
                "version": _OPTIONAL_TEXT,
                "threads": {**_OPTIONAL_COUNT, "minimum": 1},
                "cuda_devices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"device": _OPTIONAL_TEXT, "name": _OPTIONAL_TEXT},
                    },
                },
            },
        },
        "gpus": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "properties": {
                    "name": _OPTIONAL_TEXT,
                    "cuda_device": _OPTIONAL_TEXT,
                    "driver_version": _OPTIONAL_TEXT,
                    # A link's theoretical GB/s: the share of it a copy reached is printed, so never
                    # 0.
                    "pcie_gbps_max": {
                        "type": ["number", "null"],
                        "minimum": 0.1,
                        "maximum": 10_000,
                    },
                },
            },
        },
        "dataset": {"type": ["object", "null"], "properties": {"name": _OPTIONAL_TEXT}},
        "fmnist_bench": {
            "type": "object",
            "properties": {
                "format": {"type": "integer", "minimum": 1},
                "machine_key": _OPTIONAL_TEXT,
                "machine_name": _OPTIONAL_TEXT,
                "machine_id": {"type": ["string", "null"], "pattern": "^[0-9a-f]{8,64}$"},
                "load": _LOAD,
                "plan": {
                    "type": "object",
                    "properties": {
                        "quick": {"type": "boolean"},
                        "default_threads": {**_OPTIONAL_COUNT, "minimum": 1},
                        "train_images": _OPTIONAL_COUNT,
                        "test_images": _OPTIONAL_COUNT,
                    },
                },
                "host_allocator": {
                    "type": "object",
                    "properties": {"mode": {"enum": ["keep", "default"]}},
                },
                "run": {
                    "type": "object",
                    "properties": {
                        "complete": {"type": "boolean"},
                        "ended": _OPTIONAL_TEXT,
                        "planned_cases": _OPTIONAL_COUNT,
                        "finished_cases": _OPTIONAL_COUNT,
                        "failed": {"type": "array"},
                    },
                },
            },
        },
    },
}

RUN_SCHEMA = {
    "type": "object",
    "required": ["machine_info", "benchmarks"],
    "properties": {
        "machine_info": _MACHINE_INFO,
        "benchmarks": {"type": "array", "items": {"type": "object"}},
        "datetime": _OPTIONAL_TEXT,
        "commit_info": {"type": ["object", "null"], "properties": {"id": _OPTIONAL_TEXT}},
    },
}

_AXIS_TEXT = {"type": "string", "maxLength": 100}
# Bounds of what a real machine's figures can be: a limits round's or an epoch's FLOPs and bytes (a
# zettaFLOP), operations, FLOP/s (an exaFLOP/s is beyond any device), an operation's cost (a
# nanosecond to an hour).


def _up_to(most: float) -> dict:
    return {"type": ["number", "null"], "minimum": 0, "maximum": most}


_WORK = {
    "ops": _up_to(1e15),
    "flops": _up_to(1e21),
    "bytes": _up_to(1e15),
    "flops_per_image": _up_to(1e15),
    "ops_per_step": _up_to(1e12),
    "ops_fixed": _up_to(1e12),
    "ops_per_image": _up_to(1e9),
    "ops_per_epoch": _up_to(1e12),
}
_HELD = {
    "flops": _up_to(1e21),
    "ops": _up_to(1e15),
    "achieved_flops_s": _up_to(1e18),
    "peak_flops_s": _up_to(1e18),
    "peak_share": _up_to(1e6),
    "operation_s": _up_to(3600),
    "multiple": _up_to(1e9),
}
BENCHMARK_SCHEMA = {
    "type": "object",
    "required": ["group", "name", "params", "stats"],
    "properties": {
        "group": {"enum": ["limits", "transfer", "train", "inference"]},
        "name": _TEXT,
        "params": {
            "type": "object",
            "required": ["device"],
            "properties": {
                # The devices the suite measures (bench/measure/plan.py parse_devices): anything
                # else is not ours.
                "device": {"type": "string", "pattern": "^(cpu|cuda(:[0-9]{1,3})?|mps)$"},
                "cpu_threads": {"type": ["integer", "null"], "minimum": 1, "maximum": 1024},
                "batch_size": _BATCH,
                "size": _BATCH,
                **{
                    axis: _AXIS_TEXT
                    for axis in ("pipeline", "direction", "memory", "dtype", "mode")
                },
                "limit": {"enum": list(LIMITS)},
            },
        },
        "stats": {
            "type": "object",
            "required": ["median", "rounds"],
            "properties": {
                "median": _SECONDS,
                "rounds": _COUNT,
                **{
                    s: {"type": "number", "minimum": 0, "maximum": 7 * 86400}
                    for s in ("min", "mean", "stddev", "iqr")
                },
                **{s: {"type": "number", "minimum": 0, "maximum": 7 * 86400} for s in ("q1", "q3")},
                "data": {
                    "type": "array",
                    "items": {"type": "number", "minimum": 0, "maximum": 7 * 86400},
                },
            },
        },
        "extra_info": {
            "type": "object",
            "properties": {
                "images": _COUNT,
                "batches": _COUNT,
                "bytes": _COUNT,
                "dataset": _OPTIONAL_TEXT,
                "loss": {"type": ["number", "null"], "minimum": 0, "maximum": 1e6},
                "accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "latency": {
                    "type": "object",
                    "properties": {
                        **{f"{q}_s": _SECONDS for q in ("p50", "p90", "p99")},
                        "samples": _COUNT,
                    },
                },
                # The optimisation ladder (format 3): what the step ran, its compile or capture
                # time, the profiled epoch's phases, and inference's agreement with the CPU's
                # float32 labels.
                "pipeline_config": {
                    "type": "object",
                    "properties": {
                        "loss_tolerance": {"type": ["number", "null"], "minimum": 0, "maximum": 10}
                    },
                },
                "prepare": {
                    "type": "object",
                    "properties": {
                        "seconds": {"type": "number", "minimum": 0, "maximum": 7 * 86400}
                    },
                },
                "breakdown": {
                    "type": "object",
                    "properties": {
                        "epoch_s": {"type": ["number", "null"], "minimum": 0, "maximum": 7 * 86400},
                        "images": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**31 - 1},
                        "host_s": {"type": ["object", "null"], "additionalProperties": _PHASE},
                        "device_s": {"type": ["object", "null"], "additionalProperties": _PHASE},
                    },
                },
                "agreement": {
                    "type": "object",
                    "properties": {"share": {"type": "number", "minimum": 0, "maximum": 1}},
                },
                "machine_load": _LOAD,
                # The work a round did (format 6): a limits case's ops, flops or bytes; a step's
                # counted FLOPs and operations (format 7: a step's at any size, per image and per
                # epoch, and its copies).
                "work": {
                    "type": "object",
                    "properties": {
                        **_WORK,
                        "n": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                        # Format 7: each copy between host and device a case makes.
                        "copies": {
                            "type": "array",
                            "maxItems": 64,
                            "items": {
                                "type": "object",
                                "required": ["direction", "memory", "bytes", "count"],
                                "properties": {
                                    "direction": {"enum": ["h2d", "d2h"]},
                                    "memory": {"enum": ["pageable", "pinned"]},
                                    "bytes": {"type": "integer", "minimum": 0, "maximum": 2**53},
                                    "count": {"type": "integer", "minimum": 0, "maximum": 2**53},
                                },
                            },
                        },
                    },
                },
                # What a case was held against (format 6, bench/analysis/limits.py); only what the
                # report reads.
                "limits": {
                    "type": "object",
                    "properties": {
                        **_HELD,
                        "floors_s": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "number",
                                "minimum": 0,
                                "maximum": 7 * 86400,
                            },
                        },
                        # Format 7: per floor, the limit it is built on and why the run does not
                        # trust it.
                        "distrusted": {
                            "type": "object",
                            "propertyNames": {"enum": list(FLOORS)},
                            "additionalProperties": {
                                "type": "object",
                                "properties": {
                                    "limit": _TEXT,
                                    "why": _TEXT,
                                    "contradicted": {"type": "boolean"},
                                },
                            },
                        },
                        "peak_dtype": _OPTIONAL_TEXT,
                        "operation_kind": {"enum": ["eager", "graph", None]},
                        "binding": {"enum": [*FLOORS, None]},
                    },
                },
                # What the hardware did while the case was timed (bench/measure/telemetry.py); only
                # what the report reads.
                "telemetry": {
                    "type": "object",
                    "properties": {
                        "state": _TEXT,
                        "flags": {"type": "array", "items": {"enum": ["throttled", "busy"]}},
                        "host": {
                            "type": "object",
                            "properties": {
                                "energy": {
                                    "type": "object",
                                    "properties": {
                                        "available": {"type": "boolean"},
                                        "reason": _OPTIONAL_TEXT,
                                        "energy_per_round_j": _JOULES,
                                        "mean_power_w": _WATTS,
                                    },
                                },
                                "minor_faults_per_round": {
                                    "type": ["number", "null"],
                                    "minimum": 0,
                                    "maximum": 1e15,
                                },
                            },
                        },
                        "gpu": {
                            "type": "object",
                            "properties": {
                                "available": {"type": "boolean"},
                                "reason": _OPTIONAL_TEXT,
                                "energy_per_round_j": _JOULES,
                                "energy_reliable": {"type": "boolean"},
                                "energy_source": _OPTIONAL_TEXT,
                                "mean_power_w": _WATTS,
                                "peak_power_w": _WATTS,
                            },
                        },
                    },
                },
            },
        },
    },
    # Every family needs its size axis and the units that turn a time into a rate.
    "allOf": [
        {
            "if": {"properties": {"group": {"const": "transfer"}}},
            "then": {
                "properties": {
                    "params": {"required": ["size", "direction", "memory", "dtype"]},
                    "extra_info": {"required": ["bytes"]},
                },
                "required": ["extra_info"],
            },
        },
        {
            "if": {"properties": {"group": {"const": "limits"}}},
            "then": {
                "properties": {
                    "params": {"required": ["limit", "dtype"]},
                    "extra_info": {"required": ["work"]},
                },
                "required": ["extra_info"],
            },
        },
        {
            "if": {"properties": {"group": {"enum": ["train", "inference"]}}},
            "then": {
                "properties": {
                    "params": {"required": ["batch_size"]},
                    "extra_info": {"required": ["images"]},
                },
                "required": ["extra_info"],
            },
        },
        {
            "if": {"properties": {"group": {"const": "train"}}},
            "then": {"properties": {"params": {"required": ["pipeline"]}}},
        },
        {
            "if": {"properties": {"group": {"const": "inference"}}},
            "then": {
                "properties": {
                    "params": {"required": ["mode"]},
                    "extra_info": {"required": ["batches"]},
                }
            },
        },
    ],
}


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
