"""The report's table, declared once: each column's name, its type, where it comes from and what it is.

The tidy table (bench/analysis/rows.py) has a row per benchmark per run. Its columns are built from
this table alone: which columns a file's rows hold (`IN`), which a file's frame keeps (`FILE`, what
the report's cache stores), the report's own order (`COLUMNS`), summary.csv's (`CSV`), and how each
column is typed (`typed`). Adding a column is one line here and one value where its source is read.

Sources: `run` (the run's machine_info and commit, the same for each of its rows), `case` (the
benchmark's params, stats and extra_info, read through bench/format/records.py), `file` (figures
that depend on the whole run file: rates, noise, suspect copies) and `report` (figures over many
files: the machine's label).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.format.names import FLOORS, PHASES

__all__ = ["COLUMNS", "CSV", "FILE", "IN", "TABLE", "Column", "typed"]

# How a column is typed: "number" a float (NaN where unknown), "count" a whole number where every
# value is one (a batch size prints as 100, not 100.0) else a float, "whole" a nullable integer,
# "flag" a bool, "when" a UTC timestamp, "text" a str or None, "times" a list of round times.
KINDS = ("number", "count", "whole", "flag", "when", "text", "times")
SOURCES = ("run", "case", "file", "report")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    source: str
    doc: str

    def __post_init__(self):
        assert self.kind in KINDS and self.source in SOURCES, self


def _run(name, kind, doc):
    return Column(name, kind, "run", doc)


def _case(name, kind, doc):
    return Column(name, kind, "case", doc)


def _file(name, kind, doc):
    return Column(name, kind, "file", doc)


_LATENCY = tuple(
    _case(f"latency_{q}_ms", "number", f"extra_info.latency.{q}_s: one batch's {q}, in ms")
    for q in ("p50", "p90", "p99")
) + (_case("latency_samples", "whole", "extra_info.latency.samples: batches timed apart"),)

# In the report's order: who (label: unique in this report), which run (and how it ended), what was
# measured, how long, how fast, how sure.
TABLE: tuple[Column, ...] = (
    Column("label", "text", "report", "the machine's name in this report, unique across its runs"),
    _case("variant", "text", "the case's axes but its device, as a name (names.variant)"),
    _run("machine_key", "text", "who ran it: a stable key (analysis/machines.machine_of)"),
    _run("machine_name", "text", "fmnist_bench.machine_name: the name its user gave it"),
    _run("host", "text", "machine_info.node"),
    _run("cpu", "text", "the CPU model (py-cpuinfo's brand string)"),
    _run("gpus", "text", "the GPU models, comma-separated"),
    _run("what", "text", "the CPU and GPUs, short"),
    _run("constructed", "flag", "machine_info.constructed: a run made by hand, for a test"),
    _run("reference", "flag", "a reference run shipped with the project"),
    _run("facts_lost", "flag", "fmnist_bench.run.header_lost: recovered without its header"),
    _run("run_file", "text", "the run file, relative to the folder it was found under"),
    _run("run_datetime", "when", "the run's datetime (NaT: unreadable, counts as the oldest)"),
    _run("commit", "text", "commit_info.id, its first 12 characters"),
    _run("torch", "text", "machine_info.torch.version"),
    _run("nvml_driver", "text", "the GPUs' driver version, from NVML"),
    _run("quick", "flag", "fmnist_bench.plan.quick: a smoke run's figures"),
    _run("partial", "flag", "fmnist_bench.run.complete is false: the run ended early"),
    _run("run_ended", "text", "how a partial run ended"),
    _run("run_planned_cases", "whole", "fmnist_bench.run.planned_cases"),
    _run("run_finished_cases", "whole", "fmnist_bench.run.finished_cases"),
    _run("host_allocator", "text", "fmnist_bench.host_allocator.mode: keep or default (format 4)"),
    _run("run_outside_share", "number", "fmnist_bench.load.outside_share: other work's CPU share"),
    _run("run_busy", "flag", "other work held the machine for most of the run (derive)"),
    _run("default_threads", "whole", "torch's own CPU thread count on that machine"),
    _case("family", "text", "group: limits, transfer, train or inference"),
    _case("model", "text", "the model: cnn, or extra_info.model.label (format 8: name, shape)"),
    _case("model_parameters", "count", "extra_info.model.parameters (format 8)"),
    _case("model_flops", "number", "forward FLOPs an image: extra_info.model's, or counted"),
    _case("model_options", "text", "the options that measure the model again (cnn: none)"),
    _case("name", "text", "the benchmark's pytest name"),
    _case("device", "text", "params.device"),
    _case("cpu_threads", "whole", "params.cpu_threads (format 1: the run's default_threads)"),
    _case("pipeline", "text", "params.pipeline (inference before format 3: inference_mode)"),
    _case("batch_size", "count", "params.batch_size"),
    _case("size", "count", "params.size: images a copy moves"),
    _case("direction", "text", "params.direction"),
    _case("memory", "text", "params.memory"),
    _case("dtype", "text", "params.dtype"),
    _case("mode", "text", "params.mode"),
    _case("limit", "text", "params.limit"),
    _case("device_name", "text", "the device's model (analysis/machines.device_facts)"),
    _case("min", "number", "stats.min, seconds"),
    _case("median", "number", "stats.median, seconds: the case's figure"),
    _case("mean", "number", "stats.mean"),
    _case("stddev", "number", "stats.stddev"),
    _case("iqr", "number", "stats.iqr"),
    _case("q1", "number", "stats.q1"),
    _case("q3", "number", "stats.q3"),
    _case("rounds", "count", "stats.rounds"),
    _case("images", "count", "extra_info.images"),
    _case("batches", "count", "extra_info.batches"),
    _case("bytes", "count", "extra_info.bytes"),
    _case("dataset", "text", "extra_info.dataset, else machine_info.dataset.name"),
    _case("loss", "number", "extra_info.loss"),
    _case("accuracy", "number", "extra_info.accuracy"),
    _case("link_gbps", "number", "a host-device copy's link, GB/s (device_facts)"),
    _case("telemetry", "text", "extra_info.telemetry.state (not recorded: none)"),
    _case("energy_j", "number", "its device's energy a round: NVML's, or RAPL's for the CPU"),
    _case("mean_power_w", "number", "its device's mean power"),
    _case("energy_note", "text", "why there is no energy figure, or why it is approximate"),
    _case("throttled", "flag", "extra_info.telemetry.flags has throttled"),
    _case("busy", "flag", "its telemetry's busy flag, or the run's load around it (format 5)"),
    _case("page_faults", "number", "telemetry.host.minor_faults_per_round: fresh memory touched"),
    _case("loss_tolerance", "number", "pipeline_config.loss_tolerance"),
    _case("prepare_s", "number", "extra_info.prepare.seconds: compiling or capturing"),
    _case("agreement", "number", "extra_info.agreement.share: labels as the CPU's float32"),
    _case("profiled_on", "text", "device or host: whose spans the profiled epoch's phases are"),
    _case("profiled_epoch_s", "number", "breakdown.epoch_s"),
    _case("profiled_images", "number", "breakdown.images"),
    _case("gpu_ops", "number", "breakdown.device_work.ops: what the GPU ran (CUDA)"),
    _case("gpu_busy_share", "number", "breakdown.device_work.busy_share"),
    _case("cpu_top_op", "text", "the CPU's costliest operation in the profiled epoch"),
    _case("cpu_top_op_share", "number", "its share of the epoch"),
    *(_case(f"profiled_{p}_s", "number", f"the profiled epoch's {p} phase") for p in PHASES),
    _case("limit_value", "number", "a limits case's figure, from its fastest round"),
    _case("limit_size", "number", "a matrix product's side"),
    _case("limit_untrusted", "text", "why a limits case's figure is not to be built on"),
    _case("flops", "number", "extra_info.limits.flops: a case's arithmetic"),
    _case("ops", "number", "extra_info.limits.ops: a case's operations"),
    _case("achieved_flops_s", "number", "extra_info.limits.achieved_flops_s"),
    _case("peak_dtype", "text", "extra_info.limits.peak_dtype"),
    _case("peak_flops_s", "number", "extra_info.limits.peak_flops_s"),
    _case("peak_share", "number", "extra_info.limits.peak_share"),
    _case("operation_kind", "text", "extra_info.limits.operation_kind: eager or graph"),
    _case("operation_s", "number", "extra_info.limits.operation_s"),
    *(_case(f"floor_{k}_s", "number", f"extra_info.limits.floors_s.{k}") for k in FLOORS),
    *(_case(f"distrust_{k}", "text", f"why the {k} floor is not built on ('')") for k in FLOORS),
    _case("binding", "text", "the highest trusted floor, judged again over the run"),
    _case("floor_multiple", "number", "the case's time over that floor"),
    _file("images_per_s", "number", "images over the median (train, inference)"),
    _file("gbps", "number", "bytes over the median (transfer), GB/s"),
    _file("link_share", "number", "gbps over link_gbps"),
    _file("iqr_share", "number", "iqr over the median"),
    _file("one_round", "flag", "a figure from one round: no spread to judge"),
    _file("noisy", "flag", "iqr_share over NOISY_IQR_SHARE (never for one round)"),
    _file("suspect", "flag", "a copy whose time does not follow its bytes (derive)"),
    _file("suspect_reason", "text", "how"),
    _file("latency_ms", "number", "an inference pass's mean time a batch, ms"),
    *_LATENCY,
    _file("round_p90", "number", "the 90th percentile of the round times"),
    _file("images_per_j", "number", "images over its device's energy"),
    _case("round_times", "times", "stats.data: every round's time (--benchmark-save-data)"),
)

# A file's rows as read; a file's frame (all but the report's own columns: what the cache keeps);
# the report's table; summary.csv (every column but each round's time: the run files keep those).
IN = [c.name for c in TABLE if c.source in ("run", "case")]
FILE = [c.name for c in TABLE if c.source != "report"]
COLUMNS = [c.name for c in TABLE]
CSV = [c.name for c in TABLE if c.kind != "times"]
_KIND = {c.name: c.kind for c in TABLE}


def _counts(column: pd.Series) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    whole = values.dropna()
    return values.astype("Int64") if (whole == whole.round()).all() else values.astype("float64")


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Each column the frame holds as its kind says; again over many files' rows, so that a column's type is
    decided over all. Text as objects, a missing one as None, whichever files the rows came from (pandas'
    string type and its NaN would otherwise depend on the mix of files read)."""
    for name in frame.columns:
        kind = _KIND.get(name)
        if kind == "count":
            frame[name] = _counts(frame[name])
        elif kind == "whole":
            frame[name] = pd.to_numeric(frame[name]).astype("Int64")
        elif kind == "flag":
            frame[name] = frame[name].astype(bool)
        elif kind == "number":
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        elif kind == "when":
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif kind == "text" and frame[name].dtype in (object, "str"):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame
