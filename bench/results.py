"""Saved runs to one tidy table: a row per benchmark per run, with throughput, noise flag and machine."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .derive import NOISY_IQR_SHARE

__all__ = [
    "FAMILIES",
    "NOISY_IQR_SHARE",
    "RunFileWarning",
    "find_run_files",
    "load_frame",
    "load_run",
    "runs_to_frame",
    "select_newest",
]

FAMILIES = ("transfer", "train", "inference")
# Every axis a benchmark can name; a family leaves the ones it has no use for empty.
AXES = ("device", "cpu_threads", "pipeline", "batch_size", "size", "direction", "memory", "dtype", "mode")
# The newest saved-run format this module reads (bench/conftest.py FORMAT_VERSION keeps the history).
_KNOWN_FORMAT = 2
_LATENCY = ("p50", "p90", "p99")
_LATENCY_COLUMNS = (*(f"latency_{q}_ms" for q in _LATENCY), "latency_samples")
_STATS = ("min", "median", "mean", "stddev", "iqr", "q1", "q3", "rounds")


class RunFileWarning(UserWarning):
    """A file among the runs that is not a readable pytest-benchmark run: named, then passed over."""


def find_run_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every .json file under `paths` (files as given, folders searched recursively), sorted."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update(p for p in path.rglob("*.json") if p.is_file())
        elif path.is_file():
            found.add(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return sorted(found)


def load_run(path: str | os.PathLike) -> dict | None:
    """One saved run, or None (with a RunFileWarning naming the file) when it is not one."""
    path = Path(path)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(f"{path}: not readable JSON, skipped ({exc})", RunFileWarning, stacklevel=2)
        return None
    if not (
        isinstance(run, dict)
        and isinstance(run.get("machine_info"), dict)
        and isinstance(run.get("benchmarks"), list)
        and all(isinstance(b, dict) and isinstance(b.get("stats"), dict) for b in run["benchmarks"])
    ):
        warnings.warn(
            f"{path}: not a pytest-benchmark run (needs machine_info and benchmarks with stats), skipped",
            RunFileWarning,
            stacklevel=2,
        )
        return None
    if not any(b.get("group") in FAMILIES for b in run["benchmarks"]):
        warnings.warn(
            f"{path}: a pytest-benchmark run with no fmnist-bench benchmarks, skipped", RunFileWarning, stacklevel=2
        )
        return None
    return run


def _text(value, default: str = "") -> str:
    return default if value is None else str(value)


def _count(path: Path, field: str, value, *, least: int = 1) -> int | None:
    """A whole number of at least `least`, or None: absent quietly, malformed with a warning naming file and field."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if number and value == int(value) and value >= least:
        return int(value)
    warnings.warn(f"{path}: {field} is {value!r}, not a whole number >= {least}: ignored", RunFileWarning, stacklevel=3)
    return None


def _seconds(path: Path, field: str, value) -> float | None:
    """A time in seconds (finite, not negative), or None: absent quietly, malformed with a warning."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    warnings.warn(f"{path}: {field} is {value!r}, not a time in seconds: ignored", RunFileWarning, stacklevel=3)
    return None


def _mapping(path: Path, field: str, value) -> dict:
    """A JSON object, or {}: absent quietly, anything else with a warning."""
    if value is None or isinstance(value, dict):
        return value or {}
    warnings.warn(f"{path}: {field} is {value!r}, not an object: ignored", RunFileWarning, stacklevel=3)
    return {}


def _run_state(path: Path, ours: dict) -> dict:
    """How the run ended, from machine_info.fmnist_bench.run (format 2); a run without one counts as whole."""
    field = "machine_info.fmnist_bench.run"
    run = _mapping(path, field, ours.get("run"))
    complete, ended = run.get("complete"), run.get("ended")
    if ended is not None and not isinstance(ended, str):
        warnings.warn(f"{path}: {field}.ended is {ended!r}, not text: ignored", RunFileWarning, stacklevel=2)
        ended = None
    if run and not isinstance(complete, bool):
        warnings.warn(
            f"{path}: {field}.complete is {complete!r}, not true or false: taken as "
            + ("partial, as it says how it ended" if ended else "complete"),
            RunFileWarning,
            stacklevel=2,
        )
        complete = not ended
    partial = run and complete is False
    failed = run.get("failed") if isinstance(run.get("failed"), list) else []
    if partial and not ended and failed:
        ended = f"{len(failed)} case{'s' if len(failed) != 1 else ''} failed"
    return {
        "partial": bool(partial),
        "run_ended": (ended or "") if partial else "",
        "run_planned_cases": _count(path, f"{field}.planned_cases", run.get("planned_cases"), least=0),
        "run_finished_cases": _count(path, f"{field}.finished_cases", run.get("finished_cases"), least=0),
    }


def _latency(path: Path, name: str, extra: dict) -> dict:
    """Single-batch latency percentiles in ms and the sample size (format 2 inference); NaN where not measured."""
    field = f"{name}: extra_info.latency"
    latency = _mapping(path, field, extra.get("latency"))
    out = {}
    for q in _LATENCY:
        seconds = _seconds(path, f"{field}.{q}_s", latency.get(f"{q}_s"))
        out[f"latency_{q}_ms"] = np.nan if seconds is None else seconds * 1e3
    out["latency_samples"] = _count(path, f"{field}.samples", latency.get("samples"))
    return out


def _machine(info: dict) -> dict:
    """Who ran it: a stable key and a readable label (host, CPU model, GPU models)."""
    cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
    cpu_name = _text(cpu.get("brand_raw") or info.get("processor") or info.get("machine"), "unknown CPU")
    gpus = [g for g in info.get("gpus") or [] if isinstance(g, dict)]
    gpu_names = [_text(g.get("name"), "GPU") for g in gpus] or [
        _text(d.get("name"), "GPU") for d in (info.get("torch") or {}).get("cuda_devices") or []
    ]
    host = _text(info.get("node"), "unknown host")
    key = (info.get("fmnist_bench") or {}).get("machine_key") or "_".join(
        [host, cpu_name, "+".join(gpu_names) or "no-gpu"]
    )
    label = f"{host} · {cpu_name} · {', '.join(gpu_names) if gpu_names else 'no GPU'}"
    if info.get("constructed"):  # test fixtures with chosen numbers say so wherever they are shown
        label += " (constructed, not measured)"
    return {"machine_key": _text(key), "machine": label, "host": host, "cpu": cpu_name, "gpus": ", ".join(gpu_names)}


def _device_facts(info: dict, device: str, cpu_name: str) -> tuple[str, float | None]:
    """(the device's model name, its PCIe link's theoretical GB/s per direction, when NVML gave it)."""
    if not device.startswith("cuda"):
        return (cpu_name if device == "cpu" else device), None
    for gpu in info.get("gpus") or []:
        if isinstance(gpu, dict) and gpu.get("cuda_device") == device:
            return _text(gpu.get("name"), device), gpu.get("pcie_gbps_max")
    for dev in (info.get("torch") or {}).get("cuda_devices") or []:
        if isinstance(dev, dict) and dev.get("device") == device:
            return _text(dev.get("name"), device), None
    return device, None


def _rows(path: Path, run: dict) -> list[dict]:
    info = run["machine_info"]
    machine = _machine(info)
    dataset = info.get("dataset") if isinstance(info.get("dataset"), dict) else {}
    commit = run.get("commit_info") if isinstance(run.get("commit_info"), dict) else {}
    torch_facts = info.get("torch") if isinstance(info.get("torch"), dict) else {}
    ours = info.get("fmnist_bench") if isinstance(info.get("fmnist_bench"), dict) else {}
    version = ours.get("format")
    if isinstance(version, int) and not isinstance(version, bool) and version > _KNOWN_FORMAT:
        warnings.warn(
            f"{path}: saved-run format {version} is newer than this report knows: "
            f"read as format {_KNOWN_FORMAT}, whatever the newer format added is left out",
            RunFileWarning,
            stacklevel=2,
        )
    # torch's own thread count on that machine: what every format-1 case ran at, and the CPU baseline.
    plan = ours.get("plan") if isinstance(ours.get("plan"), dict) else {}
    default_threads = _count(path, "machine_info.torch.threads", torch_facts.get("threads"))
    if default_threads is None:
        default_threads = _count(path, "machine_info.fmnist_bench.plan.default_threads", plan.get("default_threads"))
    base = {
        **machine,
        "run_file": str(path),
        "run_datetime": pd.to_datetime(run.get("datetime"), utc=True, errors="coerce"),
        "commit": _text(commit.get("id"))[:12],
        "torch": _text(torch_facts.get("version")),
        "nvml_driver": _text(
            next((g.get("driver_version") for g in info.get("gpus") or [] if isinstance(g, dict)), None)
        ),
        "quick": bool(plan.get("quick", False)),
        **_run_state(path, ours),
        "default_threads": default_threads,
    }
    rows = []
    for bench in run["benchmarks"]:
        family = bench.get("group")
        if family not in FAMILIES:
            continue
        params = bench.get("params") if isinstance(bench.get("params"), dict) else {}
        extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
        stats = bench["stats"]
        device = _text(params.get("device"), "cpu")
        device_name, link_gbps = _device_facts(info, device, machine["cpu"])
        name = _text(bench.get("name"))
        # Format 1 has no cpu_threads: its cases ran at torch's default.
        threads = (
            _count(path, f"{name}: params.cpu_threads", params["cpu_threads"])
            if "cpu_threads" in params
            else default_threads
        )
        row = {
            **base,
            "family": family,
            "name": name,
            **{axis: params.get(axis) for axis in AXES},
            "cpu_threads": threads,
            "device_name": device_name,
            **{stat: stats.get(stat) for stat in _STATS},
            "data": stats.get("data"),
            "images": extra.get("images"),
            "batches": extra.get("batches"),
            "bytes": extra.get("bytes"),
            "dataset": _text(extra.get("dataset") or dataset.get("name"), "unknown"),
            "loss": extra.get("loss"),
            "accuracy": extra.get("accuracy"),
            "link_gbps": link_gbps if family == "transfer" and params.get("direction") in ("h2d", "d2h") else None,
            **_latency(path, name, extra),
        }
        rows.append(row)
    return rows


def _round_p90(data) -> float:
    # The 90th percentile of a benchmark's round times (kept by --benchmark-save-data).
    values = pd.to_numeric(pd.Series(data if isinstance(data, list) else [], dtype="object"), errors="coerce").dropna()
    return float(np.percentile(values, 90)) if len(values) else np.nan


def _numbers(column: pd.Series) -> pd.Series:
    # Whole numbers as nullable integers (a batch size prints as 100, not 100.0); anything else as float.
    values = pd.to_numeric(column, errors="coerce")
    whole = values.dropna()
    return values.astype("Int64") if (whole == whole.round()).all() else values.astype("float64")


def runs_to_frame(runs: Iterable[tuple[Path, dict]], *, all_runs: bool = False) -> pd.DataFrame:
    """Rows from (path, run) pairs; by default only the newest figures of each machine (see select_newest)."""
    rows = [row for path, run in runs for row in _rows(path, run)]
    frame = pd.DataFrame(rows, columns=_COLUMNS_IN)
    for col in ("batch_size", "size", "images", "batches", "bytes", "rounds"):
        frame[col] = _numbers(frame[col])
    for col in ("cpu_threads", "default_threads", "run_planned_cases", "run_finished_cases", "latency_samples"):
        frame[col] = pd.to_numeric(frame[col]).astype("Int64")  # checked whole numbers, or missing
    frame["partial"] = frame["partial"].astype(bool)
    percentiles = [c for c in _LATENCY_COLUMNS if c.endswith("_ms")]
    for col in ("min", "median", "mean", "stddev", "iqr", "q1", "q3", "loss", "accuracy", "link_gbps", *percentiles):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    timed = frame["median"] > 0  # NaN or zero: no time to turn into a rate
    for r in frame[~timed].itertuples():
        warnings.warn(
            f"{r.run_file}: {r.name} has no usable median time ({r.median}), skipped", RunFileWarning, stacklevel=2
        )
    frame = frame[timed].copy()
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    if not all_runs:
        frame = select_newest(frame)
    median = frame["median"]
    counted = frame["family"].isin(["train", "inference"])
    frame["images_per_s"] = np.where(counted, frame["images"].astype("float64") / median, np.nan)
    frame["gbps"] = np.where(frame["family"] == "transfer", frame["bytes"].astype("float64") / median / 1e9, np.nan)
    frame["link_share"] = frame["gbps"] / frame["link_gbps"]
    frame["iqr_share"] = frame["iqr"] / median
    frame["noisy"] = frame["iqr_share"] > NOISY_IQR_SHARE
    batches = frame["batches"].astype("float64").where(lambda b: b > 0)
    # The mean time per batch of a pass (every format); format 2 adds percentiles of single batches.
    frame["latency_ms"] = np.where(frame["family"] == "inference", median / batches * 1e3, np.nan)
    frame["round_p90"] = [_round_p90(data) for data in frame["data"]]
    frame = frame.drop(columns=["data"])
    return frame[COLUMNS].sort_values(["machine_key", "family", "device", "name"], kind="stable").reset_index(drop=True)


def select_newest(frame: pd.DataFrame) -> pd.DataFrame:
    """Per machine, each benchmark from the newest run that has it.

    A benchmark is its family and axes, the CPU's thread count among them (not its pytest
    name, which gained the thread count in format 2: a format-2 run replaces a format-1 run's
    figure measured at the same count). A GPU case runs at whatever torch's default was, so
    its thread count does not tell two GPU cases apart.
    A run that measured only part of the suite (one device, one family) updates just those
    figures. Quick (smoke) runs count only for a machine with no full run: their subsets make
    an epoch incomparable with a full run's. A run with no date counts as the oldest.
    """
    has_full = frame.groupby("machine_key")["quick"].transform(lambda quick: (~quick.astype(bool)).any())
    eligible = frame[~frame["quick"].astype(bool) | ~has_full]
    eligible = eligible.sort_values("run_datetime", na_position="first", kind="stable")
    identity = eligible.assign(cpu_threads=eligible["cpu_threads"].where(eligible["device"] == "cpu"))
    keep = ~identity.duplicated(["machine_key", "family", *AXES], keep="last")
    return eligible[keep]


def load_frame(paths: Iterable[str | os.PathLike], *, all_runs: bool = False) -> pd.DataFrame:
    """Every saved run under `paths` to one DataFrame (see runs_to_frame); unreadable files are warned about."""
    runs = []
    for path in find_run_files(paths):
        run = load_run(path)
        if run is not None:
            runs.append((path, run))
    return runs_to_frame(runs, all_runs=all_runs)


_COLUMNS_IN = [
    "machine_key", "machine", "host", "cpu", "gpus", "run_file", "run_datetime", "commit", "torch", "nvml_driver",
    "quick", "partial", "run_ended", "run_planned_cases", "run_finished_cases", "default_threads",
    "family", "name", *AXES, "device_name", *_STATS, "data", "images", "batches", "bytes", "dataset",
    "loss", "accuracy", "link_gbps", *_LATENCY_COLUMNS,
]  # fmt: skip
# The tidy table's columns, in order: who, which run (and how it ended), what was measured, how long, how fast,
# how sure. default_threads is torch's own CPU thread count in that run; cpu_threads the count a case ran at.
COLUMNS = [c for c in _COLUMNS_IN if c not in ("data", *_LATENCY_COLUMNS)] + [
    "images_per_s", "gbps", "link_share", "iqr_share", "noisy", "latency_ms", *_LATENCY_COLUMNS, "round_p90",
]  # fmt: skip
