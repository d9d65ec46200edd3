"""A machine without a GPU against the reference GPU runs the project ships: another machine's GPU, labelled so.

The question the suite answers is "would a GPU pay off for this workload?". A machine with no
GPU cannot measure it; the project's reference runs (results/reference/) can say what one GPU
it was measured on does against this CPU, as another machine's figure, with the command that
measures this machine's own GPU. One implementation: the end-of-run answer and the report's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from bench.analysis.figures import at_default, cpu_choices, is_gpu
from bench.analysis.intervals import interval_said, ratio_estimate, side
from bench.format.store import RunFileWarning, find_run_files, reference_folder

__all__ = ["MEASURE_OWN", "against_reference", "load_reference", "reference_said"]

# What measures this machine's own GPU, said beside every figure of another machine's.
MEASURE_OWN = "pytest bench --devices cpu,cuda:0 --benchmark-autosave"

# Like with like: the notes' loop and its data resident (train), each inference mode's plain pass.
_LIKE_WITH_LIKE = ("seed", "resident", "compute", "end_to_end")

_COLUMNS = [
    "reference",
    "run_files",
    "device_name",
    "dataset",
    "family",
    "variant",
    "batch_size",
    "cpu_pipeline",
    "gpu_pipeline",
    "median_cpu",
    "median_gpu",
    "speedup",
    "low",
    "high",
    "no_interval",
    "default_threads",
    "busy",
    "when",
    "torch",
]


def load_reference(cache=None) -> pd.DataFrame:
    """The reference runs this checkout ships (an empty frame where it ships none); `cache`: a RowCache to keep
    what was read of them in (bench/report/cache.py). A reference run that cannot be read (a
    checkout damaged, a file cut short) is named in a RunFileWarning and passed over, as any run is:
    the report goes on. A process reads them once while their files stay as they are (a damaged one
    is read, and named, every time)."""
    from bench.analysis.rows import load_frame  # (load imports the figures this module imports)

    folder = reference_folder()
    if not folder.is_dir():
        return pd.DataFrame()
    key = (str(folder), _signature(folder))
    if key in _READ:
        frame, said = _READ[key]
    else:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            frame = load_frame([folder], cache=cache)
        if None not in key[1] and not any(issubclass(w.category, RunFileWarning) for w in said):
            _READ.clear()
            _READ[key] = (frame, said)
    for warned in said:  # (said each time, as a read would say them: the caller's filters decide)
        warnings.warn_explicit(warned.message, warned.category, warned.filename, warned.lineno)
    return frame.copy()


# The reference runs as this process last read them (their frame, and what reading them warned, none of it
# about a run file), under the folder and files they were read from.
_READ: dict[tuple, tuple[pd.DataFrame, list]] = {}


def _signature(folder: Path) -> tuple:
    """What the reference runs' frame depends on: each file's path, size and time of change."""
    signature = []
    for path, _ in find_run_files([folder]):
        try:
            stat = path.stat()
        except OSError:
            return (None,)  # (not one to keep: load_frame names what is wrong with it)
        signature.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


def _pair(
    cpu_median: float, gpu_median: float, what: dict, cpu_data, gpu_data, threads, busy: bool
) -> dict:
    ratio = ratio_estimate(
        cpu_data, gpu_data, numerator_median=float(cpu_median), denominator_median=float(gpu_median)
    )
    rounds = min(
        len(cpu_data if cpu_data is not None else []), len(gpu_data if gpu_data is not None else [])
    )
    return {
        **what,
        "median_cpu": float(cpu_median),
        "median_gpu": float(gpu_median),
        "speedup": ratio.value,
        "low": ratio.low,
        "high": ratio.high,
        # Why a ratio has no interval: one round a figure, or a run that kept no round times.
        "no_interval": " (1 round)" if rounds == 1 else " (no round times)",
        "default_threads": threads,
        "busy": bool(busy),  # this CPU's figure ran while other work took a share of the machine
    }


def _what(g, family: str, variant: str, cpu_pipeline: str) -> dict:
    return {
        "reference": g.label,
        "run_files": g.run_file,
        "device_name": g.device_name,
        "dataset": g.dataset,
        "family": family,
        "variant": variant,
        "batch_size": int(g.batch_size),
        "cpu_pipeline": cpu_pipeline,
        "gpu_pipeline": g.pipeline,
        "when": g.run_datetime,  # the reference run's date and torch: said beside its figures
        "torch": g.torch,
    }


def _like_with_like(gpu: pd.DataFrame, mine: pd.DataFrame) -> list[dict]:
    rows = []
    # This CPU's choice of each family, variant and batch size, per images a round: made once per
    # images (a handful), not once per reference case (a page spent most of its time there).
    chosen: dict = {}
    for r in gpu[gpu["variant"].isin(_LIKE_WITH_LIKE)].itertuples():
        # This CPU's figure of the same work: the same family, variant, batch size and images.
        if r.images not in chosen:
            choices = cpu_choices(mine[mine["images"] == r.images])
            chosen[r.images] = {
                (c.family, c.variant, c.batch_size): c for c in choices.itertuples(index=False)
            }
        c = chosen[r.images].get((r.family, r.variant, r.batch_size))
        if c is None or pd.isna(c.median_default):
            continue  # (torch's default thread count was not run, or is unknown)
        rows.append(
            _pair(
                c.median_default,
                r.median,
                _what(r, r.family, r.variant, r.pipeline),
                c.data_default,
                r.round_times,
                c.default_threads,
                c.busy,
            )
        )
    return rows


def _fastest(gpu: pd.DataFrame, mine: pd.DataFrame, sizes) -> list[dict]:
    """Each side's fastest training step at each batch size: what a GPU gives at best, against this CPU's best
    at torch's default thread count (the same rule as every speedup: figures.at_default)."""
    rows = []
    train = mine[(mine["family"] == "train") & at_default(mine)]
    for size in sorted(sizes):
        cpu = train[train["batch_size"] == size]
        steps = gpu[(gpu["family"] == "train") & (gpu["batch_size"] == size)]
        steps = steps[steps["images"].isin(cpu["images"])]
        if cpu["pipeline"].nunique() < 2 or steps["pipeline"].nunique() < 2:
            continue
        c = cpu.loc[cpu["median"].idxmin()]
        g = next(steps.loc[[steps["median"].idxmin()]].itertuples())
        cpu_same = cpu[cpu["images"] == g.images]
        if c["images"] != g.images:
            c = cpu_same.loc[cpu_same["median"].idxmin()]
        rows.append(
            _pair(
                c["median"],
                g.median,
                _what(g, "train", "fastest", c["pipeline"]),
                c["round_times"],
                g.round_times,
                c["default_threads"],
                c["busy"],
            )
        )
    return rows


def against_reference(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """This machine's CPU (its full figures, else its quick ones, at torch's default thread count) against the
    reference GPUs' figures of the same kind (full or quick).

    Per family, one reference GPU: the one giving the most pairs with this CPU, then the one that
    measured the most pipelines (the fastest step is part of the answer). Per batch
    size: seed and resident (train) or each inference mode, like with like, only figures of the same
    images, and each side's fastest train step. speedup is CPU time over the reference GPU's, with
    its 95% interval (low, high) from both figures' rounds; `reference` names the GPU's machine."""
    if reference is None or reference.empty or frame.empty:
        return pd.DataFrame(columns=_COLUMNS)
    # A model's figures are held against the reference figures of that model alone (the project's are
    # the notes' CNN): one model's time is never another's (bench/analysis/models.py).
    models = [m for m in dict.fromkeys(frame["model"].dropna()) if m]
    if len(models) > 1:
        parts = [
            against_reference(frame[frame["model"].eq(m)], reference[reference["model"].eq(m)])
            for m in models
        ]
        parts = [p for p in parts if not p.empty]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_COLUMNS)
    reference = reference[reference["model"].isin(models)]
    cpu = frame[frame["device"] == "cpu"]
    # full figures where there are any; a quick run against the quick ones
    quick = bool(cpu["quick"].all())
    mine = cpu[cpu["quick"] == quick]
    gpus = reference[
        is_gpu(reference["device"]) & (reference["quick"] == quick) & reference["reference"]
    ]
    out: list[dict] = []
    for family in ("train", "inference"):
        best, rank = [], (0, 0)
        # One GPU of one machine: a machine with several GPUs offers each on its own.
        for _key, gpu in gpus[gpus["family"] == family].groupby(
            ["machine_key", "device"], sort=False
        ):
            rows = _like_with_like(gpu, mine)
            if family == "train":
                rows += _fastest(gpu, mine, {r["batch_size"] for r in rows})
            mine_rank = (len(rows), gpu["pipeline"].nunique())
            if rows and mine_rank > rank:
                best, rank = rows, mine_rank
        out += best
    if not out:
        return pd.DataFrame(columns=_COLUMNS)
    pairs = pd.DataFrame(out)
    rank = {"seed": 0, "resident": 1, "fastest": 9}
    order = pairs.assign(
        _f=pairs["family"].map({"train": 0}).fillna(1), _v=pairs["variant"].map(rank).fillna(5)
    )
    return order.sort_values(["_f", "batch_size", "_v", "variant"], kind="stable")[
        _COLUMNS
    ].reset_index(drop=True)


def _cell(r, busy_run: bool) -> str:
    said = interval_said(r.speedup, r.low, r.high, no_interval=r.no_interval, busy=r.busy)
    # Slower only where the whole interval is below 1: a one-round figure has no verdict, nor one
    # the load held.
    if busy_run and r.busy:
        return said
    return said + (": slower than this CPU" if side(r.low, r.high) == -1 else "")


def _count(threads) -> str:
    return "" if pd.isna(threads) else f" {int(threads)}"


def reference_said(pairs: pd.DataFrame, *, busy_run: bool = False) -> list[str]:
    """The comparison in words, one line per family and batch size, headed by whose GPU it is and from which runs.
    `busy_run`: other work held this machine for most of its run, so no ratio of a busy figure gets
    a verdict."""
    if pairs.empty:
        return []
    whose = []
    for family, rows in pairs.groupby("family", sort=False):
        runs = sorted({str(f).rsplit("/", 1)[-1][:4] for f in rows["run_files"]})
        whose.append(
            f"{family}: {rows['reference'].iloc[0]}, {rows['dataset'].iloc[0]} data, "
            f"run{'s' if len(runs) > 1 else ''} {', '.join(runs)}"
        )
    lines = [
        "No GPU here. The reference GPUs the project ships, other machines' (results/reference/; "
        f"{'; '.join(whose)}), against this CPU at torch's default{_count(pairs['default_threads'].iloc[0])} threads "
        "(CPU time / the GPU's time, 95% interval):"
    ]
    for (family, size), rows in pairs.groupby(["family", "batch_size"], sort=False):
        cells = []
        shown = set(rows.loc[rows["variant"] != "fastest", "variant"])
        for r in rows.itertuples():
            if (
                r.variant == "fastest"
                and r.gpu_pipeline == r.cpu_pipeline
                and r.gpu_pipeline in shown
            ):
                continue  # each side's fastest is a step already compared like with like
            if r.variant == "fastest":
                cells.append(
                    f"fastest {r.gpu_pipeline} {_cell(r, busy_run)} over this CPU's fastest, {r.cpu_pipeline}"
                )
            elif r.variant == "seed":
                cells.append(f"the notes' loop (seed) {_cell(r, busy_run)}")
            else:
                cells.append(f"{r.variant} {_cell(r, busy_run)}")
        lines.append(f"  {family} batch {size:,}: " + "; ".join(cells))
    lines.append(f"On a machine with a GPU this measures its own: {MEASURE_OWN}")
    return lines
