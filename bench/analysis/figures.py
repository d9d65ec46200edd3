"""Figures derived from the tidy table: the CPU baseline, GPU speedups, crossovers, the seed epoch's breakdown, answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.analysis.derive import (
    crossover_batch_size,
    crossover_says,
    loglog_interp,
    seed_breakdown,
)
from bench.analysis.intervals import Ratio, ratio_estimate, side
from bench.format.devices import is_accelerator
from bench.format.names import BUILDS_ON, INFERENCE_LADDER, SPEEDUP_FAMILIES, TRAIN_LADDER

__all__ = [
    "fastest_steps",
    "ladder",
    "breakdown",
    "cpu_choices",
    "cross_machine_speedups",
    "crossovers",
    "is_gpu",
    "speedups",
]

# The transfer the seed pipeline makes every batch: ToTensor's float32, from pageable memory.
_SEED_TRANSFER = {"direction": "h2d", "memory": "pageable", "dtype": "float32"}


def is_gpu(device: pd.Series) -> pd.Series:
    """Devices apart from the host (bench/format/devices.py): what a speedup over the CPU is of."""
    return device.astype(str).map(is_accelerator).astype(bool)


def at_default(rows: pd.DataFrame) -> pd.Series:
    """Rows run at torch's default thread count of their run (an unknown count is taken as the default)."""
    threads = rows["cpu_threads"]
    return (threads.isna() | (threads == rows["default_threads"])).fillna(False).astype(bool)


_CHOICE_COLUMNS = [
    "machine_key",
    "quick",
    "family",
    "variant",
    "batch_size",
    "threads_measured",
    "default_threads",
    "median_default",
    "best_cpu_threads",
    "median_best",
    "noisy",
    "one_round",
    "partial",
    "busy",
    "data_default",
    "data_best",
]


def _ratios(numerators, denominators, numerator_medians, denominator_medians) -> list[Ratio]:
    """Each pair's ratio with its interval (intervals.ratio_estimate), over four aligned columns."""
    return [
        ratio_estimate(a, b, numerator_median=ma, denominator_median=mb)
        for a, b, ma, mb in zip(
            numerators, denominators, numerator_medians, denominator_medians, strict=True
        )
    ]


_CHOICE_USES = [
    "cpu_threads",
    "default_threads",
    "median",
    "run_datetime",
    "noisy",
    "one_round",
    "partial",
    "busy",
    "round_times",
]


def cpu_choices(frame: pd.DataFrame) -> pd.DataFrame:
    """The CPU's baseline per machine, quick or full, family (train, inference), variant and batch size.

    median_default is the CPU at torch's default thread count (NaN where that count was not
    run); median_best the fastest count measured (best_cpu_threads), the default on a tie.
    noisy, one_round and partial say whether either of the two rows is so.
    """
    keys = ["machine_key", "quick", "family", "variant", "batch_size"]
    # Only the columns a choice is made of: a row holds a hundred more, and every sort and filter
    # below would copy them all (the reference comparison calls this once per reference GPU case).
    used = [*keys, *_CHOICE_USES]
    cpu = frame[frame["family"].isin(SPEEDUP_FAMILIES) & (frame["device"] == "cpu")][used].dropna(
        subset=["machine_key", "quick", "variant", "batch_size"]
    )
    if cpu.empty:
        return pd.DataFrame(columns=_CHOICE_COLUMNS)
    # One pass over the whole fleet (a loop per group took seconds at a thousand machines).
    default = cpu[at_default(cpu)].sort_values("run_datetime", na_position="first", kind="stable")
    default = default.drop_duplicates(keys, keep="last").assign(_present=True).set_index(keys)
    # A group's first fastest, as numpy's argmin gives it (a median that is not a number first).
    ordered = cpu.assign(_m=cpu["median"].fillna(-np.inf))
    best = (
        ordered.sort_values("_m", kind="stable").drop_duplicates(keys, keep="first").set_index(keys)
    )
    groups = cpu.groupby(keys, sort=True)
    out = groups["cpu_threads"].nunique(dropna=False).rename("threads_measured").to_frame()
    # the group's last row's
    last = cpu.drop_duplicates(keys, keep="last").set_index(keys)["default_threads"]
    out["last_default_threads"] = last.reindex(out.index)
    d = default.reindex(out.index)
    b = best.reindex(out.index)
    has_default = d["_present"].fillna(False).astype(bool)
    take_default = has_default & (d["median"] <= b["median"])
    pick = lambda col: d[col].where(take_default, b[col])  # noqa: E731 (the best row: the default on a tie)
    out["default_threads"] = np.where(
        has_default, d["default_threads"], out["last_default_threads"]
    )
    out["median_default"] = d["median"]
    out["best_cpu_threads"] = pick("cpu_threads")
    out["median_best"] = pick("median")
    for flag in ("noisy", "one_round", "partial", "busy"):
        out[flag] = (d[flag].fillna(False).astype(bool) & has_default) | pick(flag).astype(bool)
    out["data_default"] = d["round_times"].where(has_default, None)
    out["data_best"] = pick("round_times")
    out = out.reset_index()
    out["quick"] = out["quick"].astype(bool)
    out["_family"] = out["family"].map(SPEEDUP_FAMILIES.index)
    out = out.sort_values(
        ["_family", "machine_key", "quick", "variant", "batch_size"], kind="stable"
    )
    out = out[_CHOICE_COLUMNS].reset_index(drop=True)
    for col in ("batch_size", "default_threads", "best_cpu_threads"):
        out[col] = out[col].astype("Int64")
    return out


_SPEED_COLUMNS = [
    "machine_key",
    "label",
    "quick",
    "device",
    "device_name",
    "family",
    "variant",
    "batch_size",
    "default_threads",
    "median_cpu",
    "median_gpu",
    "speedup",
    "speedup_low",
    "speedup_high",
    "best_cpu_threads",
    "median_best_cpu",
    "speedup_vs_best_cpu",
    "vs_best_low",
    "vs_best_high",
    "noisy",
    "one_round",
    "partial",
    "busy",
    "run_busy",
]


def speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """Each GPU's speedup over the same machine's CPU, per family, variant and batch size.

    speedup is the CPU at torch's default thread count over the GPU (CPU median / GPU median);
    speedup_vs_best_cpu the CPU at its fastest count measured over the GPU. A quick figure is
    paired only with a quick one of the same machine (the same subset), a full one with a full
    one; where both pairs exist the full one is kept, so a machine whose CPU was measured only
    in a quick run still gets a speedup, marked quick.
    """
    cpu = cpu_choices(frame)
    out = []
    for family in SPEEDUP_FAMILIES:
        rows = frame[(frame["family"] == family) & is_gpu(frame["device"])]
        gpu = rows[
            [
                "machine_key",
                "label",
                "quick",
                "variant",
                "batch_size",
                "device",
                "device_name",
                "median",
                "noisy",
                "one_round",
                "partial",
                "busy",
                "run_busy",
                "round_times",
            ]
        ].rename(columns={"median": "median_gpu", "round_times": "data_gpu"})
        both = gpu.assign(family=family).merge(
            cpu,
            on=["machine_key", "quick", "family", "variant", "batch_size"],
            suffixes=("_gpu", "_cpu"),
        )
        if both.empty:
            continue
        # Each speedup, CPU time over GPU time, and its 95% interval: one estimate from both
        # figures' rounds.
        for value, name, cpu_data, cpu_median in (
            ("speedup", "speedup", "data_default", "median_default"),
            ("speedup_vs_best_cpu", "vs_best", "data_best", "median_best"),
        ):
            found = _ratios(both[cpu_data], both["data_gpu"], both[cpu_median], both["median_gpu"])
            both[value] = [r.value for r in found]
            both[f"{name}_low"] = [r.low for r in found]
            both[f"{name}_high"] = [r.high for r in found]
        for flag in ("noisy", "one_round", "partial", "busy"):
            both[flag] = both[f"{flag}_gpu"].astype(bool) | both[f"{flag}_cpu"].astype(bool)
        out.append(
            both.rename(columns={"median_default": "median_cpu", "median_best": "median_best_cpu"})
        )
    if not out:
        return pd.DataFrame(columns=_SPEED_COLUMNS)
    speed = pd.concat(out)[_SPEED_COLUMNS]
    # A full pair replaces a quick pair of the same case.
    speed = speed.sort_values("quick", ascending=False, kind="stable")
    speed = speed.drop_duplicates(
        ["machine_key", "device", "family", "variant", "batch_size"], keep="last"
    )
    return speed.sort_values(["label", "device", "family", "variant", "batch_size"]).reset_index(
        drop=True
    )


def cross_machine_speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """Each GPU over every other machine's CPU (at that CPU's fastest thread count measured), full figures only.

    Asked for with --cross-machine: the question "is that GPU worth it over this CPU?". Only
    cases of the same quantity are paired: the same family, variant, batch size and images.
    """
    full = frame[~frame["quick"]]
    cpu = full[full["device"] == "cpu"]
    gpu = full[is_gpu(full["device"])]
    rows = []
    for family in SPEEDUP_FAMILIES:
        c = (
            cpu[cpu["family"] == family]
            .sort_values("median")
            .drop_duplicates(["machine_key", "variant", "batch_size"])
        )
        g = gpu[gpu["family"] == family]
        pairs = g.merge(
            c, on=["variant", "batch_size", "images", "dataset"], suffixes=("_gpu", "_cpu")
        )
        pairs = pairs[pairs["machine_key_gpu"] != pairs["machine_key_cpu"]]
        for r in pairs.itertuples():
            ratio = ratio_estimate(
                r.round_times_cpu,
                r.round_times_gpu,
                numerator_median=r.median_cpu,
                denominator_median=r.median_gpu,
            )
            rows.append(
                {
                    "gpu_machine": r.label_gpu,
                    "device": r.device_gpu,
                    "cpu_machine": r.label_cpu,
                    "cpu_threads": r.cpu_threads_cpu,
                    "family": family,
                    "variant": r.variant,
                    "batch_size": r.batch_size,
                    "speedup": ratio.value,
                    # Its 95% interval from both figures' rounds (one round: none, and no verdict).
                    "speedup_low": ratio.low,
                    "speedup_high": ratio.high,
                    "noisy": bool(r.noisy_gpu or r.noisy_cpu),
                    "one_round": bool(r.one_round_gpu or r.one_round_cpu),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "gpu_machine",
            "device",
            "cpu_machine",
            "cpu_threads",
            "family",
            "variant",
            "batch_size",
            "speedup",
            "speedup_low",
            "speedup_high",
            "noisy",
            "one_round",
        ],
    )


def crossovers(speed: pd.DataFrame) -> pd.DataFrame:
    """Per machine, GPU, family, variant (and quick or full): the crossover batch size against the CPU's best.

    crossover_batch_size is the smallest size from which the GPU is faster at every larger one
    (<NA>: not faster at the largest); says puts it in words true of every size. Against the
    CPU's best count, so that a poorly threaded CPU cannot make the GPU look as if it wins earlier.
    Faster means the speedup's 95% interval is above 1: one that includes 1 is no difference
    measured. Figures of one round have no interval: their crossover is <NA>, and says words the
    points as points, with no verdict.
    """
    rows = []
    keys = ["machine_key", "quick", "device", "family", "variant"]
    for (key, quick, device, family, variant), group in speed.groupby(keys):
        sizes = group["batch_size"].astype(int).tolist()
        values = group["speedup_vs_best_cpu"].astype(float).tolist()
        sides = [
            side(lo, hi) for lo, hi in zip(group["vs_best_low"], group["vs_best_high"], strict=True)
        ]
        if None in sides:
            # One round a figure: no interval, so no verdict; the points are said as points.
            crossing, says = (
                None,
                f"{crossover_says(sizes, values)}, by the point figures (one round: no verdict)",
            )
        else:
            # Faster only where the whole interval is above 1: "no difference measured" is not a
            # win.
            won = [2.0 if s == 1 else 0.5 for s in sides]
            crossing, says = crossover_batch_size(sizes, won), crossover_says(sizes, won)
            ties = [f"{size:,}" for size, s in zip(sizes, sides, strict=True) if s == 0]
            says += f"; no difference measured at {', '.join(ties)}" if ties else ""
        rows.append(
            {
                "machine_key": key,
                "label": group["label"].iloc[0],
                "quick": bool(quick),
                "device": device,
                "device_name": group["device_name"].iloc[0],
                "family": family,
                "variant": variant,
                "crossover_batch_size": crossing,
                "says": says,
                "best_speedup": max(values),
                "one_round": bool(group["one_round"].any()),
                # Decided on figures of which one ran while other work took over a tenth of the CPU.
                "busy": bool(group["busy"].any()) if "busy" in group else False,
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            *keys,
            "label",
            "device_name",
            "crossover_batch_size",
            "says",
            "best_speedup",
            "one_round",
            "busy",
        ],
    )
    out["crossover_batch_size"] = out["crossover_batch_size"].astype("Int64")
    return out


_PARTS = [
    "machine_key",
    "label",
    "quick",
    "device",
    "cpu_threads",
    "batch_size",
    "seed_epoch_s",
    "loading_s",
    "transfer_s",
    "compute_s",
    "partial",
]


def breakdown(frame: pd.DataFrame) -> pd.DataFrame:
    """Where a seed-pipeline epoch's time goes, per machine, quick or full, device and batch size.

    compute  = the resident epoch (the same training with the data already on the device);
    transfer = batches x the measured time to move one batch of float32 from pageable memory
               (the seed pipeline's copy), interpolated in log-log from the transfer sizes; 0 on the CPU;
    loading  = what is left of the seed epoch: DataLoader, PIL + ToTensor, collation, per-batch syncs.
    The CPU is taken at torch's default thread count, as the seed pipeline runs it.
    """
    train = frame[(frame["family"] == "train") & ((frame["device"] != "cpu") | at_default(frame))]
    index = ["machine_key", "quick", "device", "batch_size"]
    seed = train[train["pipeline"] == "seed"].set_index(index)[
        ["median", "images", "label", "cpu_threads", "partial"]
    ]
    resident = train[train["pipeline"] == "resident"].set_index(index)[["median", "partial"]]
    resident.columns = ["median_resident", "partial_resident"]
    both = seed.join(resident, how="inner").dropna(subset=["median", "median_resident"])
    transfer = frame[(frame["family"] == "transfer")]
    for axis, value in _SEED_TRANSFER.items():
        transfer = transfer[transfer[axis] == value]
    # A copy's time does not depend on the subset a run trained on: full figures first, quick where
    # alone.
    transfer = transfer.sort_values("quick").drop_duplicates(["machine_key", "device", "size"])
    rows = []
    for (key, quick, device, batch_size), times in both.iterrows():
        images = times["images"]
        if device == "cpu":
            moving = 0.0
        else:
            copies = transfer[(transfer["machine_key"] == key) & (transfer["device"] == device)]
            if copies.empty:
                moving = np.nan
            else:
                per_batch = loglog_interp(
                    copies["size"].astype(float), copies["median"], min(batch_size, images)
                )
                moving = per_batch * int(np.ceil(images / batch_size))
        rows.append(
            {
                "machine_key": key,
                "label": times["label"],
                "quick": bool(quick),
                "device": device,
                "cpu_threads": times["cpu_threads"],
                "batch_size": batch_size,
                **seed_breakdown(times["median"], times["median_resident"], moving),
                "partial": bool(times["partial"]) or bool(times["partial_resident"]),
            }
        )
    return pd.DataFrame(rows, columns=_PARTS)


def ladder(frame: pd.DataFrame, family: str) -> pd.DataFrame:
    """Each ladder step per machine, device and batch size where more than the cheap steps ran: its time,
    its speedup over the first step (train: seed, none without it; inference: eager, else
    inference_mode) and over the step it builds on (`builds_on`: what its one change buys; where
    that step did not run, the nearest it builds on that did, and `builds_on` names it), and (train)
    whether it learns less than resident: a loss above resident's by more than the step's tolerance.
    The CPU at torch's default thread count, as the ladder runs it.

    Each step is its machine's newest figure (select_newest), so a run of some steps only (say
    `-k compile`) puts them beside the steps of an older run: `other_runs` names the steps a
    speedup is taken against that come from another run than the step's own (`other_run_count`: from
    how many runs). On a noisy machine
    such a ratio is weaker than one measured in one run, and a goal set "in the same run" is not
    met by it.
    """
    order = TRAIN_LADDER if family == "train" else INFERENCE_LADDER
    rows = frame[(frame["family"] == family) & ((frame["device"] != "cpu") | at_default(frame))]
    if family == "inference":
        rows = rows[rows["mode"] == "compute"]
    out = []
    for (key, quick, device, size), group in rows.groupby(
        ["machine_key", "quick", "device", "batch_size"]
    ):
        steps = group.drop_duplicates("pipeline", keep="last").set_index("pipeline")
        names = [n for n in order if n in steps.index]
        if len(names) < 3:  # the cheap steps alone: no ladder here
            continue
        # Over seed, named so: a run of some steps only (--pipelines) has no other first to be over.
        first = (
            steps.loc[names[0], "median"] if family == "inference" or names[0] == "seed" else np.nan
        )
        resident = steps.loc["resident", "loss"] if "resident" in steps.index else np.nan
        for name in names:
            r = steps.loc[name]
            base = BUILDS_ON[family].get(name)
            while base is not None and base not in steps.index:
                base = BUILDS_ON[family].get(base)
            # Each ratio with its 95% interval, one estimate from both steps' rounds
            # (bench/analysis/intervals.py).
            over_first = _step_ratio(steps.loc[names[0]], r) if pd.notna(first) else _NO_RATIO
            over_base = _step_ratio(steps.loc[base], r) if base is not None else _NO_RATIO
            against = [
                n
                for n in dict.fromkeys([names[0] if pd.notna(first) else None, base])
                if n is not None
            ]
            other_runs = [n for n in against if str(steps.loc[n, "run_file"]) != str(r["run_file"])]
            other_files = {str(steps.loc[n, "run_file"]) for n in other_runs}
            tolerance = r["loss_tolerance"]
            learns_less = bool(
                family == "train"
                and pd.notna(resident)
                and pd.notna(tolerance)
                and pd.notna(r["loss"])
                and (r["loss"] - resident) / resident > tolerance
            )
            out.append(
                {
                    "machine_key": key,
                    "label": r["label"],
                    "quick": bool(quick),
                    "device": device,
                    "batch_size": size,
                    "pipeline": name,
                    "step": order.index(name),
                    "median": r["median"],
                    "images_per_s": r["images_per_s"],
                    "vs_first": over_first.value,
                    "vs_first_low": over_first.low,
                    "vs_first_high": over_first.high,
                    "builds_on": base,
                    "vs_base": over_base.value,
                    "vs_base_low": over_base.low,
                    "vs_base_high": over_base.high,
                    "loss": r["loss"],
                    "loss_tolerance": tolerance,
                    "learns_less": learns_less,
                    "prepare_s": r["prepare_s"],
                    "agreement": r["agreement"],
                    "noisy": bool(r["noisy"]),
                    "one_round": bool(r["one_round"]),
                    "busy": bool(r["busy"]),
                    "vs_first_busy": bool(r["busy"])
                    or bool(pd.notna(first) and steps.loc[names[0], "busy"]),
                    "vs_base_busy": bool(r["busy"])
                    or bool(base is not None and steps.loc[base, "busy"]),
                    "page_faults": r["page_faults"],
                    "gpu_ops_per_step": _per_step(r["gpu_ops"], r["profiled_images"], size),
                    "gpu_busy_share": r["gpu_busy_share"],
                    "cpu_top_op": r["cpu_top_op"],
                    "cpu_top_op_share": r["cpu_top_op_share"],
                    "run_file": r["run_file"],
                    "other_runs": ", ".join(other_runs),
                    "other_run_count": len(other_files),
                    "round_times": r["round_times"],
                }
            )
    columns = [
        "machine_key",
        "label",
        "quick",
        "device",
        "batch_size",
        "pipeline",
        "step",
        "median",
        "images_per_s",
        "vs_first",
        "vs_first_low",
        "vs_first_high",
        "builds_on",
        "vs_base",
        "vs_base_low",
        "vs_base_high",
        "loss",
        "loss_tolerance",
        "learns_less",
        "prepare_s",
        "agreement",
        "noisy",
        "one_round",
        "busy",
        "vs_first_busy",
        "vs_base_busy",
        "page_faults",
        "gpu_ops_per_step",
        "gpu_busy_share",
        "cpu_top_op",
        "cpu_top_op_share",
        "run_file",
        "other_runs",
        "other_run_count",
        "round_times",
    ]
    return pd.DataFrame(out, columns=columns)


_NO_RATIO = Ratio(np.nan, np.nan, np.nan)


def _step_ratio(before: pd.Series, step: pd.Series) -> Ratio:
    """A ladder step's speedup over an earlier step: the earlier one's time over its own."""
    return ratio_estimate(
        before["round_times"],
        step["round_times"],
        numerator_median=before["median"],
        denominator_median=step["median"],
    )


def _per_step(ops: float, images: float, batch_size: int) -> float:
    """The GPU's operations per training step of a profiled epoch over `images` images (NaN where unknown)."""
    if pd.isna(ops) or pd.isna(images) or not images > 0 or not batch_size > 0:
        return np.nan
    return ops / math.ceil(images / batch_size)


def fastest_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """Per machine, device and batch size of a train ladder: the fastest step that learned as well as resident.

    Decided on intervals: `tied_with` names the steps (that learned as well) whose epoch is no
    different from the fastest's by the 95% interval of their ratio; `tie_unknown` is true where a
    step of one round leaves that unknown."""
    kept = steps[~steps["learns_less"].astype(bool)]
    if kept.empty:
        return steps.iloc[0:0].assign(tied_with=[], tie_unknown=[])
    groups = ["machine_key", "quick", "device", "batch_size"]
    best = kept.loc[kept.groupby(groups)["median"].idxmin()].reset_index(drop=True)
    tied, unknown = [], []
    for r in best.itertuples():
        mine = kept[
            (kept["machine_key"] == r.machine_key)
            & (kept["quick"] == r.quick)
            & (kept["device"] == r.device)
            & (kept["batch_size"] == r.batch_size)
            & (kept["pipeline"] != r.pipeline)
        ]
        sides = {
            o.pipeline: ratio_estimate(o.round_times, r.round_times).side for o in mine.itertuples()
        }
        tied.append(", ".join(name for name, s in sides.items() if s == 0))
        unknown.append(any(s is None for s in sides.values()))
    return best.assign(tied_with=tied, tie_unknown=unknown)
