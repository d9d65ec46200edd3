"""The saved-run format: its version and history, the records fmnist-bench adds to a run, and how to read them.

A saved run is pytest-benchmark JSON, extended through its hooks, never forked. This module
is the one owner of what fmnist-bench adds: every writer (the running session, the journal's
recovery) builds the run record and `machine_info.fmnist_bench` here, and every reader (the
report, compare, the estimate, the summary, the checks) takes them apart here. The JSON Schema
of what a reader may rely on is `bench/format/schema.py`; docs/saved-runs.md tells it to users.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "FORMAT_VERSION",
    "HISTORY",
    "benchmarks",
    "case_marks",
    "default_threads",
    "extra_info",
    "field",
    "format_of",
    "fmnist_bench",
    "fmnist_bench_info",
    "host_telemetry",
    "inference_figures",
    "params",
    "prepare_record",
    "rounds_record",
    "run_load",
    "run_record",
    "run_state",
    "stats",
    "telemetry",
    "train_figures",
    "transfer_figures",
]

# Bumped when the saved-run format changes in a way a reader must know about; every version
# from 1 on is still read (a newer one is read as this one, with a warning).
FORMAT_VERSION = 7
HISTORY = {
    1: "first format (machine_info torch/gpus/nvml/dataset/fmnist_bench; params and extra_info per family).",
    2: "params gain cpu_threads; extra_info gains warmup, budget, wall_s and (inference) latency; an inference "
    "round may be a bounded pass (extra_info.images is per round); machine_info.fmnist_bench gains run (complete, "
    "planned/finished cases, failed, skipped, ended); machine_info.dataset's image counts are those the run's "
    "cases really had (null: no case used that split), and it gains files (the real files' own counts).",
    3: "the optimisation ladder: train pipelines beyond seed and resident; inference params gain pipeline (runs "
    "of format 2 ran inference_mode); extra_info gains pipeline_config, and where they apply prepare (compile or "
    "capture time), breakdown (torch.profiler) and agreement (inference). machine_info.fmnist_bench gains "
    "machine_name (--machine-name; null when not named), and every case extra_info.telemetry (what the hardware "
    "did during its timed rounds; bench/measure/telemetry.py).",
    4: "CPU figures are measured with glibc keeping freed blocks (machine_info.fmnist_bench.host_allocator, "
    "--host-allocator; before, each case paid for page faults that depended on the cases before it); both "
    "families' ladders gain channels_last_bf16; extra_info.telemetry.host gains minor_faults_per_round (and, "
    "under keep, peak_rss_bytes includes the freed blocks earlier cases left for reuse). host_allocator holds "
    "mode and library, and under keep how and keep_bytes (the first runs of format 4, before commit 38f2c19, "
    "wrote mmap_threshold_bytes and trim_threshold_bytes instead of those two). Added within format 4, optional "
    "for a reader: extra_info.breakdown.device_work (CUDA, from commit 4ccfe17) and breakdown.host_work (CPU, "
    "from commit 193afa9), the profiled epoch's costliest operations.",
    5: "machine_info.fmnist_bench gains machine_id (made once per installation; its first 8 digits end "
    "machine_key, so two machines of one host name and hardware get two folders) and load (how busy the whole "
    "machine was with other work across the run: bench/measure/load.py); every case's extra_info gains "
    "machine_load (that share around the case, over at least 50 ticks of /proc/stat and 10 a CPU). Added within "
    "format 5, optional for a reader: run.journal names the journal of every run saved with one, whole runs too "
    "(so recovery knows a run already saved); run.header_lost marks a run recovered from a journal whose header "
    "was lost (the machine's facts unknown, its folder's key kept); a machine_key whose name or host loses a "
    "character in its folder form has 8 hex digits of the name's SHA-256 after it.",
    6: "the limits family (group limits, params limit and dtype: operation, operation_graph, matmul, device_copy; "
    "extra_info.work: the round's ops, flops or bytes, and a matmul's side n): what each device can do at most, "
    "measured in the run; every train and inference case gains extra_info.work (its step's counted FLOPs per image "
    "and operations per step: fmnist_model/work.py) and, where the run measured its device's limits before it, "
    "extra_info.limits (achieved FLOP/s, its share of the peak, the floors, the binding limit and the time as a "
    "multiple of it: bench/analysis/limits.py).",
    7: "work is counted as each pipeline runs it (fmnist_model/work.py): extra_info.work gains ops_fixed, ops_per_image "
    "and ops_per_epoch (a step's operations at any batch size, those more per image of its batch, and an epoch's or "
    "pass's own, once; format 6 counted the resident step's operations for every pipeline, the epoch's own "
    "included) and copies (each copy between host and device the case makes: direction, memory, bytes, count; "
    "format 6 charged a DataLoader batch one copy for its images and labels, and an inference batch a copy back "
    "where the labels come back once); ops_per_step is the case's own at its batch size. extra_info.limits gains "
    "distrusted (per floor: the limit it is built on, why it is not trusted, and whether a case contradicted it by "
    "running faster than the floor; a limit measured while the machine was busy is not trusted either), and "
    "binding is the highest floor among the trusted ones. A limits case's matmul work gains search (each side "
    "tried, with its fastest of several products, and why the search stopped). A reader of a format-6 run takes "
    "its DataLoader pipelines' per-operation floor, and on a GPU their and end-to-end inference's copies floor, "
    "as not trusted.",
}


# ---------------------------------------------------------------- writing


def run_record(
    *,
    complete: bool,
    planned_cases: int | None,
    finished_cases: int,
    skipped: list[dict],
    failed: list[dict],
    ended: str | None = None,
    wall_s: float | None = None,
    outside_cases_s: float | None = None,
    journal: str | None = None,
    recovered: str | None = None,
) -> dict:
    """machine_info.fmnist_bench.run: what happened to the planned cases and how the run ended (format 2 on)."""
    out: dict = {
        "complete": complete,
        "planned_cases": planned_cases,
        "finished_cases": finished_cases,
        "skipped": skipped,
        "failed": failed,
    }
    if wall_s is not None:
        out["wall_s"] = wall_s
        # Imports, data, trained weights, machine facts, saving: what the cost model adds to the
        # cases.
        out["outside_cases_s"] = outside_cases_s
    for key, value in (("ended", ended), ("journal", journal), ("recovered", recovered)):
        if value:
            out[key] = value
    return out


def fmnist_bench_info(
    *,
    machine_key: str,
    machine_name: str | None,
    plan: dict,
    budget_options: dict,
    telemetry_period_s: float | None,
    host_allocator: dict,
    run: dict,
    machine_id: str | None = None,
    load: dict | None = None,
) -> dict:
    """machine_info.fmnist_bench: the format, the machine's key, id and name, the plan that ran, how busy the
    machine was and how the run went."""
    return {
        "format": FORMAT_VERSION,
        "machine_key": machine_key,
        "machine_id": machine_id,  # null: a recovered run of an older suite, or no id could be kept
        "machine_name": machine_name,  # null: not named; reports label it by what it is
        "load": load if load is not None else {"available": False, "reason": "not measured"},
        "plan": plan,
        "budget_options": budget_options,
        "telemetry": {"state": "off"}
        if telemetry_period_s is None
        else {"state": "on", "period_s": telemetry_period_s},
        "host_allocator": host_allocator,
        "run": run,
    }


def transfer_figures(*, images: int, nbytes: int) -> dict:
    """A copy's extra_info: the units that turn its time into a rate."""
    return {"images": images, "bytes": nbytes}


def train_figures(*, epochs: list, batches: int, dataset: str, pipeline_config: dict) -> dict:
    """A training case's extra_info: its units, the sanity figures of its last epoch and of every round's
    (`epochs`: each round's result, with images, mean_loss and accuracy), and what its step ran."""
    return {
        "images": epochs[-1].images,
        "batches": batches,
        "dataset": dataset,
        "loss": epochs[-1].mean_loss,
        "accuracy": epochs[-1].accuracy,
        "losses": [e.mean_loss for e in epochs],
        "accuracies": [e.accuracy for e in epochs],
        "pipeline_config": pipeline_config,
    }


def inference_figures(
    *,
    images: int,
    batches: int,
    dataset: str,
    accuracy: float,
    pipeline_config: dict,
    reference: str,
    agree: int,
    matrix: list,
) -> dict:
    """An inference case's extra_info: its units, accuracy, what its step ran, and how its labels agree with
    the reference's (`matrix`: the confusion matrix, rows the reference's label)."""
    return {
        "images": images,
        "batches": batches,
        "dataset": dataset,
        "accuracy": accuracy,
        "pipeline_config": pipeline_config,
        "agreement": {
            "reference": reference,
            "share": agree / images,
            "differ": images - agree,
            "matrix": matrix,
        },
    }


def prepare_record(seconds: float, prepared: dict) -> dict:
    """extra_info.prepare: what a step took to compile or capture its shapes before its rounds."""
    return {"seconds": seconds, **prepared}


def rounds_record(*, warmup: dict, warm_s: float, budget, round_s: float, rounds: int) -> dict:
    """extra_info.warmup and .budget: what the case warmed up with and how its rounds were chosen (format 2 on)."""
    return {
        "warmup": {**warmup, "seconds": warm_s},
        "budget": {
            "min_rounds": budget.min_rounds,
            "max_time": budget.max_time,
            "max_rounds": budget.max_rounds,
            "estimated_round_s": round_s,
            "rounds": rounds,
        },
    }


# ---------------------------------------------------------------- reading


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def field(record, *path: str, default=None):
    """The value at `path` in a saved run's nested records (`field(bench, "extra_info", "prepare", "seconds")`),
    or `default` where any step is missing or not a record: a reader never digs into the JSON
    itself."""
    for key in path:
        if not isinstance(record, Mapping) or key not in record:
            return default
        record = record[key]
    return default if record is None else record


def fmnist_bench(run: Mapping) -> dict:
    """machine_info.fmnist_bench of a saved run ({} in a run that has none)."""
    return _dict(_dict(run.get("machine_info")).get("fmnist_bench"))


def run_state(run: Mapping) -> dict:
    """machine_info.fmnist_bench.run ({} before format 2: such a run counts as whole)."""
    return _dict(fmnist_bench(run).get("run"))


def format_of(run: Mapping) -> int | None:
    version = fmnist_bench(run).get("format")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def default_threads(run: Mapping) -> int | None:
    """torch's own thread count on the machine: what every format-1 case ran at, and the CPU baseline."""
    info = _dict(run.get("machine_info"))
    threads = _dict(info.get("torch")).get("threads") or _dict(fmnist_bench(run).get("plan")).get(
        "default_threads"
    )
    return threads if isinstance(threads, int) and not isinstance(threads, bool) else None


def benchmarks(run: Mapping) -> list[dict]:
    """The run's benchmarks that are records (any suite's; a reader picks its families)."""
    found = run.get("benchmarks")
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def stats(bench: Mapping) -> dict:
    return _dict(bench.get("stats"))


def params(bench: Mapping) -> dict:
    return _dict(bench.get("params"))


def extra_info(bench: Mapping) -> dict:
    return _dict(bench.get("extra_info"))


def telemetry(bench: Mapping) -> dict:
    """extra_info.telemetry of one benchmark (format 3 on; {} before)."""
    return _dict(extra_info(bench).get("telemetry"))


def case_marks(bench: Mapping) -> list[str]:
    """What the machine did while a case ran, as saved: "throttled" (its GPU's clocks held down by power or
    heat), "busy" (other work took over a tenth of the CPU: by the case's telemetry, or from format
    5 by the run's machine load around it, which tells for a case too short for its own)."""
    flags = [f for f in telemetry(bench).get("flags") or [] if f in ("throttled", "busy")]
    if _dict(extra_info(bench).get("machine_load")).get("busy") is True and "busy" not in flags:
        flags.append("busy")
    return flags


def run_load(run: Mapping) -> dict:
    """machine_info.fmnist_bench.load: how busy the whole machine was across the run (format 5; {} before)."""
    return _dict(fmnist_bench(run).get("load"))


def host_telemetry(bench: Mapping) -> dict:
    return _dict(telemetry(bench).get("host"))
