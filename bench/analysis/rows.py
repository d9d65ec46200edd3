"""Saved runs to one tidy table: a row per benchmark per run, each checked against the format, with its machine's label."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.columns import COLUMNS, CSV, FILE, IN, typed
from bench.analysis.derive import mostly_busy, suspect_copies, threads_waited
from bench.analysis.limits import (
    FLOOR_SAID,
    FLOORS,
    binding_of,
    limit_name,
    row_columns,
)
from bench.analysis.machines import device_facts, machine_labels, machine_of
from bench.analysis.words import fmt_time
from bench.format import records as fmt
from bench.format.devices import KINDS, device_kind
from bench.format.names import (
    AXES,
    CNN_MODEL,
    FAMILIES,
    NOISY_IQR_SHARE,
    PHASES,
    model_label,
    model_options,
    variant,
)
from bench.format.schema import readable_benchmark
from bench.format.store import RunFileWarning, find_run_files, is_reference, load_run, shown

__all__ = [
    "AXES",
    "COLUMNS",
    "CSV_COLUMNS",
    "FAMILIES",
    "RunFileWarning",
    "file_frame",
    "find_run_files",
    "frame_of",
    "load_frame",
    "load_run",
    "runs_to_frame",
    "select_newest",
]

_STATS = ("min", "median", "mean", "stddev", "iqr", "q1", "q3", "rounds")


def _warn(message: str) -> None:
    warnings.warn(message, RunFileWarning, stacklevel=3)


def _text(value, default: str = "") -> str:
    return default if value is None else str(value)


def _run_state(state: fmt.RunState | None) -> dict:
    """How the run ended, from machine_info.fmnist_bench.run (format 2); a run without one counts as whole."""
    partial = state is not None and state.complete is False
    ended = (state.ended if state else None) or ""
    failed = (state.failed if state else None) or []
    if partial and not ended and failed:
        ended = f"{len(failed)} case{'s' if len(failed) != 1 else ''} failed"
    return {
        "partial": partial,
        "run_ended": ended if partial else "",
        "run_planned_cases": state.planned_cases if state else None,
        "run_finished_cases": state.finished_cases if state else None,
    }


def _shown_as(path: Path, root: Path) -> str:
    """A run file as the report names it: relative to the folder it was found under (no local paths)."""
    try:
        return shown(path.relative_to(root).as_posix())
    except ValueError:
        return shown(path.name)


def _rows(path: Path, run: dict, shown_as: str) -> list[dict]:
    info = run["machine_info"]
    saved = fmt.read_run(run)
    ours = saved.ours
    machine = machine_of(info, reference=is_reference(path))
    version = ours.format
    if version is not None and version > fmt.FORMAT_VERSION:
        _warn(
            f"{path}: saved-run format {version} is newer than this report knows: "
            f"read as format {fmt.FORMAT_VERSION}, whatever the newer format added is left out"
        )
    facts = saved.machine_info
    torch_facts = facts.torch or fmt.TorchFacts()
    # torch's own thread count on that machine: what every format-1 case ran at, and the CPU
    # baseline.
    default_threads = torch_facts.threads or (ours.plan.default_threads if ours.plan else None)
    load = ours.load or fmt.Load()
    base = {
        **machine,
        "run_file": shown_as,
        "run_datetime": _when(path, run.get("datetime")),
        "commit": _text(saved.commit_info.id if saved.commit_info else None)[:12],
        "torch": _text(torch_facts.version),
        "nvml_driver": _text(next((g.driver_version for g in facts.gpus or []), None)),
        "quick": bool(ours.plan and ours.plan.quick),
        **_run_state(ours.run),
        "default_threads": default_threads,
        # The C library's allocator the run was held to (format 4): "keep" or "default"; before,
        # glibc as it was.
        "host_allocator": _text(ours.host_allocator and ours.host_allocator.mode, "default"),
        # How busy the whole machine was with other work across the run (format 5; NaN before, or
        # unknown).
        "run_outside_share": load.outside_share if load.available else None,
        # Other work held the machine for most of the run: its verdicts could be the load's
        # (analysis/derive.py).
        "run_busy": mostly_busy(load),
    }
    rows = []
    for index, bench in enumerate(run["benchmarks"]):
        if not isinstance(bench, dict) or bench.get("group") not in FAMILIES:
            continue  # another suite's benchmark in the same run: not ours to read
        bench, errors, left_out = readable_benchmark(bench, index)
        name = _text(bench.get("name"), "?")[:80]
        if errors:
            _warn(f"{path}: benchmark {name!r} passed over: {'; '.join(errors[:3])}")
            continue
        if left_out:
            _warn(
                f"{path}: benchmark {name!r} read without what explains it: {'; '.join(left_out[:3])}"
            )
        rows.append(_case_row(bench, base, saved, machine["cpu"], version, default_threads))
    return rows


def _case_row(bench: dict, base: dict, saved: fmt.Run, cpu: str, version, threads) -> dict:
    """One benchmark's row: the run's columns, then the case's (bench/analysis/columns.py)."""
    case = fmt.Benchmark.read(bench)
    params, stats, extra = case.params, case.stats, case.extra
    family = case.group
    device_name, link_gbps = device_facts(saved.machine_info, params.device, cpu)
    latency = getattr(extra, "latency", None) or fmt.Latency()
    dataset = saved.machine_info.dataset
    return {
        **base,
        "family": family,
        "name": case.name,
        "variant": variant(family, bench["params"]),
        **{axis: getattr(params, axis) for axis in AXES},
        # Before the ladder (format 3) inference ran under inference_mode: the same step.
        "pipeline": params.pipeline or ("inference_mode" if family == "inference" else None),
        # Format 1 has no cpu_threads: its cases ran at torch's default.
        "cpu_threads": threads if params.cpu_threads is None else params.cpu_threads,
        "device_name": device_name,
        **_model(extra, params, family),
        **{stat: getattr(stats, stat) for stat in _STATS},
        "round_times": stats.data,
        "images": getattr(extra, "images", None),
        "batches": getattr(extra, "batches", None),
        "bytes": getattr(extra, "bytes", None),
        "dataset": _text(getattr(extra, "dataset", None) or (dataset and dataset.name), "unknown"),
        "loss": getattr(extra, "loss", None),
        "accuracy": getattr(extra, "accuracy", None),
        "link_gbps": link_gbps
        if family == "transfer" and params.direction in ("h2d", "d2h")
        else None,
        **{
            f"latency_{q}_ms": np.nan if value is None else value * 1e3
            for q, value in (("p50", latency.p50_s), ("p90", latency.p90_s), ("p99", latency.p99_s))
        },
        "latency_samples": latency.samples,
        **_telemetry(params.device, extra.telemetry),
        # its telemetry's, or the run's load around it (format 5)
        "busy": "busy" in extra.marks(),
        **_ladder(extra),
        # Format 6 on: held against the limits (and judged again with what an older format lacks).
        **row_columns(extra, params, stats, version),
    }


def _model(extra: fmt.CaseExtra, params: fmt.Params, family: str) -> dict:
    """Which model a case ran (format 8; a case without one ran the notes' CNN), and its size: forward FLOPs an
    image from its model record, else as an inference case counted them (its step is one forward)."""
    if family == "limits":  # a device's limits belong to no model: every model is held against them
        return {"model": None, "model_parameters": None, "model_flops": None, "model_options": ""}
    info = extra.model or fmt.ModelInfo()
    name = info.name or params.model or CNN_MODEL
    flops = info.flops_per_image
    work = getattr(extra, "work", None)
    if flops is None and family == "inference" and work is not None:
        flops = work.flops_per_image
    return {
        "model": info.shown or model_label(name, None, None),
        "model_parameters": info.parameters,
        "model_flops": flops,
        "model_options": model_options(name, info.input_shape, info.classes),
    }


def _ladder(extra: fmt.CaseExtra) -> dict:
    """A ladder step's loss tolerance, compile or capture time, agreement and its profiled epoch's phases."""
    profile = getattr(extra, "breakdown", None) or fmt.Breakdown()
    # The device's own spans where the profiler had them (CUDA), else the host's.
    phases = profile.device_s or profile.host_s or {}
    work = profile.device_work or fmt.DeviceWork()
    costliest = _costliest((profile.host_work and profile.host_work.top) or [])
    prepare = getattr(extra, "prepare", None)
    agreement = getattr(extra, "agreement", None)
    config = getattr(extra, "pipeline_config", None)
    return {
        "loss_tolerance": config.loss_tolerance if config else None,
        "prepare_s": prepare.seconds if prepare else None,
        "agreement": agreement.share if agreement else None,
        "profiled_on": ("device" if profile.device_s else "host") if phases else "",
        "profiled_epoch_s": profile.epoch_s,
        # format 3 profiles an epoch's first 10,000 images
        "profiled_images": profile.images,
        # What the GPU ran in the profiled epoch (CUDA, bench/breakdown.device_work): operations,
        # busy share.
        "gpu_ops": work.ops,
        "gpu_busy_share": work.busy_share,
        # The CPU's costliest operation in the profiled epoch by its own time (CPU,
        # bench/breakdown.host_work).
        "cpu_top_op": costliest[0],
        "cpu_top_op_share": costliest[1],
        **{f"profiled_{phase}_s": phases.get(phase) for phase in PHASES},
    }


def _costliest(top: list[fmt.Op]) -> tuple[str, float | None]:
    """The costliest of a profiled epoch's operations (bench/breakdown.host_work's `top`) and its share
    of the epoch, each summed under the name a reader knows it by: torch.compile's forward and
    backward graphs are one "generated code". ("", None) when there is none, or none that reads."""
    shares: dict[str, float] = {}
    for op in top:
        name = _op_name(op.name)
        if name and op.share is not None:
            shares[name] = shares.get(name, 0.0) + op.share
    if not shares:
        return "", None
    name = max(shares, key=shares.get)
    return name, shares[name]


def _op_name(name) -> str:
    """A profiled operation's name as a reader knows it: ATen's without its namespace, inductor's
    generated code (torch.compile's `## Call CompiledFxGraph <hash>`) as such."""
    if not isinstance(name, str):
        return ""
    if name.startswith("## Call CompiledFxGraph"):
        return "torch.compile's generated code"
    return name.removeprefix("aten::")


def _telemetry(device: str, telemetry: fmt.Telemetry | None) -> dict:
    """A case's energy (its device's: the GPU's from NVML, the CPU packages' from RAPL) and its warning flags."""
    if telemetry is None:
        return {
            "telemetry": "not recorded",
            "energy_j": None,
            "mean_power_w": None,
            "energy_note": "",
            "throttled": False,
            "busy": False,
            "page_faults": None,
        }
    flags = telemetry.flags or []
    # its energy is NVML's
    gpu = device_kind(device).nvml if device.split(":", 1)[0] in KINDS else False
    host = telemetry.host or fmt.HostTelemetry()
    part = (telemetry.gpu if gpu else host.energy) or fmt.Energy()
    energy = part.energy_per_round_j
    note = part.reason or ""
    if gpu and energy is not None and part.energy_reliable is False:
        note = "under 2 s of timed rounds: the counter's updates make it approximate"
    return {
        "telemetry": _text(telemetry.state, "on"),
        "energy_j": energy,
        "mean_power_w": part.mean_power_w,
        "energy_note": note,
        "throttled": "throttled" in flags,
        "busy": "busy" in flags,
        # The process's minor page faults per round: fresh memory touched
        # (bench/measure/allocator.py).
        "page_faults": host.minor_faults_per_round,
    }


def _when(path: Path, text) -> pd.Timestamp:
    """A run's date; a missing, unreadable or future one is warned about and counts as the oldest run."""
    when = pd.to_datetime(text, utc=True, errors="coerce")
    if pd.isna(when):
        _warn(
            f"{path}: datetime {text!r} is not a date: the run counts as the oldest of its machine"
        )
        return pd.NaT
    if when > pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1):
        _warn(
            f"{path}: datetime {text!r} is in the future: the run counts as the oldest of its machine"
        )
        return pd.NaT
    return when


# the 90th percentile of a benchmark's round times (kept by --benchmark-save-data)
def _round_p90(data) -> float:
    return float(np.percentile(data, 90)) if isinstance(data, list) and data else np.nan


def file_frame(path: str | os.PathLike, run: dict, shown_as: str | None = None) -> pd.DataFrame:
    """One run file's rows, typed, with every figure that depends on that run alone: all but the label. What the
    report's cache keeps of a file (bench/report/cache.py), so a file read once is not built again.
    """
    path = Path(path)
    frame = pd.DataFrame(
        _rows(path, run, shown(path.name) if shown_as is None else shown_as), columns=IN
    )
    if frame.empty:
        return frame
    # Within the run, before any run's figures replace another's: copies that do not follow their
    # bytes, and the limits a case of the run contradicted (a case under a floor).
    frame = _judge_limits(_mark_suspects(typed(frame)))
    median = frame["median"]
    counted = frame["family"].isin(["train", "inference"])
    frame["images_per_s"] = np.where(counted, frame["images"].astype("float64") / median, np.nan)
    frame["gbps"] = np.where(
        frame["family"] == "transfer", frame["bytes"].astype("float64") / median / 1e9, np.nan
    )
    frame["link_share"] = frame["gbps"] / frame["link_gbps"]
    frame["iqr_share"] = frame["iqr"] / median
    # A figure from one round has no spread to judge: never called noisy, never called steady
    # either.
    frame["one_round"] = frame["rounds"] == 1
    frame["noisy"] = (frame["iqr_share"] > NOISY_IQR_SHARE) & ~frame["one_round"]
    batches = frame["batches"].astype("float64").where(lambda b: b > 0)
    # The mean time per batch of a pass (every format); format 2 adds percentiles of single batches.
    frame["latency_ms"] = np.where(frame["family"] == "inference", median / batches * 1e3, np.nan)
    frame["round_p90"] = [_round_p90(times) for times in frame["round_times"]]
    # 0 J over a timed case: no reading, not infinite images
    energy = frame["energy_j"].where(frame["energy_j"] > 0)
    frame["images_per_j"] = np.where(counted, frame["images"].astype("float64") / energy, np.nan)
    # what a ratio's interval resamples (intervals.py)
    return frame


def frame_of(files: Iterable[pd.DataFrame], *, all_runs: bool = False) -> pd.DataFrame:
    """Files' frames (file_frame) to the report's table: labels unique across them, by default only the newest
    figures of each machine (select_newest)."""
    parts = [part for part in files if part is not None and not part.empty]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    # (consolidated: typed builds the table a column at a time)
    frame = typed(pd.concat(parts, ignore_index=True)).copy()
    frame["label"] = frame["machine_key"].map(machine_labels(frame))
    if not all_runs:
        frame = select_newest(frame)
    return (
        frame[COLUMNS]
        .sort_values(["machine_key", "family", "device", "name"], kind="stable")
        .reset_index(drop=True)
    )


def runs_to_frame(
    runs: Iterable[tuple[Path, dict]] | Iterable[tuple[Path, dict, str]], *, all_runs: bool = False
):
    """Rows from (path, run[, shown_as]) tuples; by default only the newest figures of each machine (select_newest)."""
    return frame_of(
        (file_frame(item[0], item[1], item[2] if len(item) > 2 else None) for item in runs),
        all_runs=all_runs,
    )


_SERIES = [
    "machine_key",
    "run_file",
    "run_datetime",
    "device",
    "direction",
    "memory",
    "dtype",
    "cpu_threads",
]


def _mark_suspects(frame: pd.DataFrame) -> pd.DataFrame:
    """suspect: a copy whose time does not follow its bytes within its run (derive.suspect_copies: slower than
    a larger copy, or flat across sizes), or whose extra threads waited for a core
    (derive.threads_waited); suspect_reason says how. A broken measurement can look steady: its
    spread says nothing of this."""
    frame["suspect"], frame["suspect_reason"] = False, ""
    copies = frame[
        (frame["family"] == "transfer") & frame["bytes"].notna() & frame["median"].notna()
    ]
    found: dict = {}
    for _key, series in copies.groupby(_SERIES, dropna=False, sort=False):
        said = suspect_copies(
            series["bytes"].astype(float).tolist(),
            series["median"].astype(float).tolist(),
            series["size"].astype(int).tolist(),
        )
        for i, why in said.items():
            found.setdefault(series.index[i], why)
    same_bytes = [c for c in _SERIES if c != "cpu_threads"] + ["size"]
    for _key, group in copies.groupby(same_bytes, dropna=False, sort=False):
        threads = [None if pd.isna(t) else int(t) for t in group["cpu_threads"]]
        for i, why in threads_waited(group["median"].astype(float).tolist(), threads).items():
            found.setdefault(group.index[i], why)
    for index, why in found.items():
        frame.loc[index, ["suspect", "suspect_reason"]] = [True, why]
    return frame


# The limit each floor is built on, as a row names it (record/limits.limit_name), from the row's own
# columns.
def _behind(kind: str, row) -> str:
    if kind == "arithmetic":
        return limit_name("matmul", row["peak_dtype"] or "float32")
    if kind == "operations":
        return limit_name("operation_graph" if row["operation_kind"] == "graph" else "operation")
    return "the copy model"


def _judge_limits(frame: pd.DataFrame) -> pd.DataFrame:
    """The run's limits judged over all its cases (the run's board knew only of the cases before each one): a
    limit whose own case ran while the machine was busy, and a limit a case of the run contradicted
    by running faster than a floor built on it, are distrusted for every case of the run held
    against them, each with the reason; each binding limit and multiple is then judged again among
    the floors still trusted (record/limits.binding_of)."""
    held = frame[frame["family"].isin(["train", "inference"]) & frame["median"].notna()]
    if held.empty:
        return frame

    def where(row, limit: str) -> tuple:
        return row["device"], row["cpu_threads"] if row["device"] == "cpu" else None, limit

    wrong: dict[tuple, str] = {}  # (device, threads, limit) -> why
    for _index, row in frame[frame["family"] == "limits"].iterrows():
        if row["limit_untrusted"]:
            name = limit_name(row["limit"], row["dtype"])
            wrong.setdefault(where(row, name), f"{name}: {row['limit_untrusted']}")
    for _index, row in frame[
        (frame["family"] == "transfer") & frame["busy"].astype(bool)
    ].iterrows():
        if row["direction"] in ("h2d", "d2h"):
            wrong.setdefault(
                where(row, _behind("copies", row)),
                "the copy model: a copy it was fitted to ran busy",
            )
    for _index, row in held.iterrows():
        for kind in FLOORS:
            floor, limit = row[f"floor_{kind}_s"], _behind(kind, row)
            said = row[f"distrust_{kind}"]
            # the board's own word on the limit, for every case
            if said and str(said).startswith(f"{limit}: "):
                wrong.setdefault(where(row, limit), said)
            if said or pd.isna(floor) or where(row, limit) in wrong:
                continue
            if floor > row["median"]:
                wrong[where(row, limit)] = (
                    f"{limit}: {row['name']} ran in {fmt_time(row['median'])}, under the "
                    f"{fmt_time(floor)} {FLOOR_SAID[kind]} floor it gives: measured too low, or the work counted "
                    "too high"
                )
    if not wrong:
        return frame
    for index, row in held.iterrows():
        changed = False
        for kind in FLOORS:
            why = wrong.get(where(row, _behind(kind, row)))
            if why and not row[f"distrust_{kind}"] and pd.notna(row[f"floor_{kind}_s"]):
                frame.at[index, f"distrust_{kind}"] = why
                changed = True
        if changed:
            judged = frame.loc[index]
            floors = {
                kind: judged[f"floor_{kind}_s"]
                for kind in FLOORS
                if pd.notna(judged[f"floor_{kind}_s"])
            }
            distrust = {
                kind: judged[f"distrust_{kind}"] for kind in FLOORS if judged[f"distrust_{kind}"]
            }
            binding, multiple = binding_of(floors, distrust, float(judged["median"]))
            frame.at[index, "binding"] = binding or ""
            frame.at[index, "floor_multiple"] = np.nan if multiple is None else multiple
    return frame


def select_newest(frame: pd.DataFrame) -> pd.DataFrame:
    """Per machine, each benchmark from the newest run that has it, quick and full figures apart.

    A benchmark is its family and axes, the CPU's thread count among them (not its pytest
    name, which gained the thread count in format 2). A GPU case runs at whatever torch's
    default was, so its thread count does not tell two GPU cases apart. A quick (smoke)
    figure never replaces a full one nor the reverse: a 2,000-image epoch is another
    quantity than a 60,000-image one, so each keeps its own series, marked. A run that
    measured part of the suite updates just those figures; a run with no date is the oldest.
    """
    ordered = frame.sort_values("run_datetime", na_position="first", kind="stable")
    identity = ordered.assign(cpu_threads=ordered["cpu_threads"].where(ordered["device"] == "cpu"))
    keep = ~identity.duplicated(["machine_key", "quick", "family", *AXES], keep="last")
    return ordered[keep]


def _read(path: Path, root: Path) -> pd.DataFrame | None:
    run = load_run(path)
    return None if run is None else file_frame(path, run, _shown_as(path, root))


def load_frame(
    paths: Iterable[str | os.PathLike], *, all_runs: bool = False, cache=None
) -> pd.DataFrame:
    """Every saved run under `paths` to one DataFrame (see runs_to_frame); unreadable files are warned about.
    With a cache (the report's RowCache, bench/report/cache.py: its `frames` reads what changed and keeps
    what did not), a file read before and unchanged since is not read again.
    """
    found = find_run_files(paths)
    if cache is None:
        return frame_of((_read(path, root) for path, root in found), all_runs=all_runs)
    return frame_of(cache.frames(found, _read, _shown_as, FILE), all_runs=all_runs)


# The report's columns (declared in bench/analysis/columns.py), as the report and summary.csv use them.
CSV_COLUMNS = CSV
