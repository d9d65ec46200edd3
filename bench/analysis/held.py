"""Each device against its own limits: the limits measured, every case held against them, why, and the crossover they predict.

The arithmetic is bench/analysis/limits.py's (the run saved each case's floors with it); this module
gathers the rows: a device's limits (the copy model fitted here to the run's own transfer cases, by
the same fit the run used), each case's floors and binding limit, what each ladder step moves its
case toward, the sentences that say why, and the predicted crossover beside the measured one.
"""

from __future__ import annotations

import functools
import math

import pandas as pd

from bench.analysis.cells import device_label, fmt_seconds, marks
from bench.analysis.figures import at_default, is_gpu
from bench.analysis.intervals import ratio_estimate
from bench.analysis.limits import (
    FLOOR_SAID,
    FLOORS,
    fit_copies,
    ladder_move,
    limit_name,
    predicted_crossover,
    why_said,
)
from bench.analysis.words import fmt_time
from bench.format.names import BUILDS_ON

__all__ = [
    "device_limits",
    "held",
    "held_table",
    "limits_table",
    "predicted",
    "predicted_table",
    "same_setting",
    "why",
]

_ROUTES = (("h2d", "pinned"), ("h2d", "pageable"), ("d2h", "pinned"), ("d2h", "pageable"))
_KEYS = ["machine_key", "label", "quick", "device", "cpu_threads"]


def _threads_of(rows: pd.DataFrame) -> pd.Series:
    # A GPU's limits hold at any CPU thread count: keyed without one, as the run's board keys them.
    return rows["cpu_threads"].where(rows["device"] == "cpu")


def device_limits(frame: pd.DataFrame) -> pd.DataFrame:
    """Per machine, run kind, device and (CPU) thread count: the limits its runs measured, and its copy models."""
    lim = frame[frame["family"] == "limits"].assign(cpu_threads=lambda f: _threads_of(f))
    copies = frame[
        (frame["family"] == "transfer") & frame["bytes"].notna() & frame["median"].notna()
    ]
    copies = copies.assign(cpu_threads=_threads_of(copies))
    out = []
    for key, group in lim.groupby(_KEYS, dropna=False, sort=True):
        figure = functools.partial(_figure, group)
        row = dict(zip(_KEYS, key, strict=True))
        mine = same_setting(copies, row)
        h2h = mine[(mine["direction"] == "h2h")]
        bandwidth = figure("device_copy")
        if math.isnan(bandwidth) and not h2h.empty:
            largest = h2h.loc[h2h["bytes"].astype(float).idxmax()]
            bandwidth = float(largest["bytes"]) / float(largest["median"])
        models = {}
        for direction, memory in _ROUTES:
            route = mine[(mine["direction"] == direction) & (mine["memory"] == memory)]
            model = fit_copies(
                list(zip(route["bytes"].astype(float), route["median"].astype(float), strict=True))
            )
            if model is not None:
                models[f"{direction} {memory}"] = model
        out.append(
            {
                **row,
                "device_name": group["device_name"].iloc[0],
                "operation_s": figure("operation"),
                "operation_graph_s": figure("operation_graph"),
                "peak_float32": figure("matmul", "float32"),
                "peak_bfloat16": figure("matmul", "bfloat16"),
                "bandwidth_bytes_s": bandwidth,
                "copies": models,
                "one_round": bool(group["one_round"].any()),
                "busy": bool(group["busy"].any()),
                "untrusted": _untrusted(group, mine, held_rows(frame, row)),
            }
        )
    columns = [
        *_KEYS,
        "device_name",
        "operation_s",
        "operation_graph_s",
        "peak_float32",
        "peak_bfloat16",
        "bandwidth_bytes_s",
        "copies",
        "one_round",
        "busy",
        "untrusted",
    ]
    return pd.DataFrame(out, columns=columns)


def same_setting(frame: pd.DataFrame, where) -> pd.DataFrame:
    """The rows of `frame` of `where`'s machine, run kind, device and (CPU) thread count: what a device's limits
    are keyed by (`where`: a row of device_limits, or anything with those keys)."""
    rows = frame[
        (frame["machine_key"] == where["machine_key"])
        & (frame["quick"] == where["quick"])
        & (frame["device"] == where["device"])
    ]
    return rows[rows["cpu_threads"] == where["cpu_threads"]] if where["device"] == "cpu" else rows


def held_rows(frame: pd.DataFrame, where: dict) -> pd.DataFrame:
    """The training and inference cases of one machine, run kind, device and (CPU) thread count."""
    return same_setting(frame[frame["family"].isin(["train", "inference"])], where)


def _untrusted(limits: pd.DataFrame, copies: pd.DataFrame, cases: pd.DataFrame) -> dict[str, str]:
    """The limits of one device that no floor was built on, and why: measured while other work took a share of the
    machine (a limits case's, or a copy's behind the copy model), or contradicted by a case faster
    than its floor."""
    said: dict[str, str] = {}
    for r in limits.itertuples():
        if r.limit_untrusted:
            said.setdefault(limit_name(r.limit, r.dtype), r.limit_untrusted)
    for r in copies[copies["busy"].astype(bool)].itertuples():
        if r.direction == "h2h":  # the CPU's bandwidth is its largest host copy's
            said.setdefault(
                limit_name("device_copy"),
                "its copy ran while other work took over a tenth of the CPU",
            )
        else:
            said.setdefault(
                limit_name(f"{r.direction} {r.memory}"),
                "a copy it was fitted to ran while other work ran",
            )
    for kind in FLOORS:
        for text in cases[f"distrust_{kind}"].dropna():
            name, _, why_ = str(text).partition(": ")
            if why_ and name.startswith(("the ", "an ")):
                said.setdefault(name, why_)
    return said


def _figure(group: pd.DataFrame, limit: str, dtype: str = "float32") -> float:
    found = group[(group["limit"] == limit) & (group["dtype"] == dtype)]["limit_value"].dropna()
    return float(found.iloc[-1]) if not found.empty else math.nan


def _rate(value: float, unit: str = "FLOP/s") -> str:
    if value is None or pd.isna(value):
        return ""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _size(nbytes: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


def limits_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The limits of each device, as read: an operation's cost, the matrix product's peaks, bandwidth, copy models."""
    lim = device_limits(frame)
    if lim.empty:
        return pd.DataFrame()
    copies = [
        "; ".join(
            f"{route}: {fmt_time(m.fixed_s)} + bytes at {_rate(m.bytes_per_s, 'B/s')} (half that from "
            f"{_size(m.half_bandwidth_bytes)})"
            for route, m in models.items()
        )
        for models in lim["copies"]
    ]
    return _without_empty(
        pd.DataFrame(
            {
                "Machine": lim["label"],
                "Device": device_label(lim),
                "Run": lim["quick"].map({False: "full", True: "quick"}),
                "An operation, eager": [
                    fmt_seconds(v) + marks(r)
                    for v, r in zip(lim["operation_s"], lim.itertuples(), strict=True)
                ],
                "Replayed (CUDA graph)": lim["operation_graph_s"].map(fmt_seconds),
                "Peak float32": lim["peak_float32"].map(_rate),
                "Peak bfloat16": lim["peak_bfloat16"].map(_rate),
                "Memory bandwidth": lim["bandwidth_bytes_s"].map(lambda v: _rate(v, "B/s")),
                "Copies host-device (fitted)": copies,
                "Not built on": [
                    "; ".join(f"{name} ({why_})" for name, why_ in u.items())
                    for u in lim["untrusted"]
                ],
            }
        ),
        ("Replayed (CUDA graph)", "Peak bfloat16", "Copies host-device (fitted)", "Not built on"),
    )


def held(frame: pd.DataFrame) -> pd.DataFrame:
    """Every training and inference case its run held against its device's limits, with what its ladder step
    moves it toward (over the step it builds on, same device, threads and batch size)."""
    floors = frame[[f"floor_{kind}_s" for kind in FLOORS]].notna().any(axis=1)
    rows = frame[frame["family"].isin(["train", "inference"]) & floors].copy()
    if rows.empty:
        return rows.assign(move="", moves="")
    keys = ["machine_key", "quick", "family", "device", "cpu_threads", "batch_size", "mode"]
    # The same case but its step, as one text key (a missing mode or thread count is a value like
    # any other).
    same = pd.Series(
        ["|".join(map(str, t)) for t in rows[keys].itertuples(index=False)], index=rows.index
    )
    moves, over = [], []
    for (_, r), key in zip(rows.iterrows(), same, strict=True):
        base = BUILDS_ON.get(r["family"], {}).get(r["pipeline"])
        found = rows[(same == key) & (rows["pipeline"] == base)]
        if found.empty:
            moves.append("")
            over.append("")
            continue
        # A step whose time is no different from its base's (the ratio's interval includes 1) moves
        # only its floors.
        tied = ratio_estimate(found.iloc[-1]["round_times"], r["round_times"]).side == 0
        move = ladder_move(found.iloc[-1], r, same_time=tied)
        moves.append(move or "")
        over.append(f"over {base}: {move}" if move else "")
    return rows.assign(move=moves, moves=over)


def held_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Each held case: its time, achieved FLOP/s and share of the peak, its floors, the binding limit and how far."""
    rows = held(frame)
    if rows.empty:
        return pd.DataFrame()
    rows = rows.sort_values(
        ["label", "device", "cpu_threads", "family", "mode", "batch_size", "pipeline"],
        kind="stable",
        na_position="first",
    )
    return _without_empty(
        pd.DataFrame(
            {
                "Machine": rows["label"],
                "Device": device_label(rows),
                "Case": [
                    f"train {r.pipeline}"
                    if r.family == "train"
                    else f"inference {r.mode} {r.pipeline}"
                    for r in rows.itertuples()
                ],
                "Batch": rows["batch_size"].map(lambda b: f"{int(b):,}"),
                "Time": [fmt_seconds(r.median) + marks(r) for r in rows.itertuples()],
                "Achieved": rows["achieved_flops_s"].map(_rate),
                "Of peak": rows["peak_share"].map(lambda v: "" if pd.isna(v) else f"{v:.0%}"),
                "Arithmetic floor": rows["floor_arithmetic_s"].map(fmt_seconds),
                "Per-operation floor": rows["floor_operations_s"].map(fmt_seconds),
                "Copies floor": rows["floor_copies_s"].map(fmt_seconds),
                "Bound by": rows["binding"].map(lambda b: FLOOR_SAID.get(b, "")),
                "Time / floor": rows["floor_multiple"].map(_multiple),
                "Floors not trusted": [_distrusted(r) for r in rows.itertuples()],
                "The step moves it": rows["moves"],
            }
        ).reset_index(drop=True),
        ("Per-operation floor", "Copies floor", "Floors not trusted", "The step moves it"),
        nothing=("", "0 s"),
    )


def _without_empty(
    table: pd.DataFrame, columns: tuple[str, ...], nothing: tuple[str, ...] = ("",)
) -> pd.DataFrame:
    """`table` without those of `columns` that say nothing in any row (a CPU's graph or copies, none measured)."""
    return table.drop(columns=[c for c in columns if table[c].isin(nothing).all()])


def _multiple(value: float) -> str:
    """Time over the binding floor: 1x or more, as a floor trusted is one no case of its run went under."""
    return "" if pd.isna(value) else f"{value:.2g}x"


def _distrusted(r) -> str:
    """A case's floors its run does not trust, each with the limit it is built on (the limits table says why)."""
    return "; ".join(
        f"{FLOOR_SAID[kind]} ({str(getattr(r, f'distrust_{kind}')).partition(': ')[0]})"
        for kind in FLOORS
        if getattr(r, f"distrust_{kind}")
    )


def why(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Per machine, why its devices' epochs take what they take: the resident epoch (the seed's where no resident
    ran) at its smallest batch size and at the ladder's, on every device (the CPU at torch's default
    threads), from full runs where there are any."""
    rows = _full_if_any(held(frame))
    rows = rows[(rows["family"] == "train") & ((rows["device"] != "cpu") | at_default(rows))]
    out: dict[str, list[str]] = {}
    for (key, device), group in rows.groupby(["machine_key", "device"], sort=True):
        step = "resident" if (group["pipeline"] == "resident").any() else group["pipeline"].iloc[0]
        mine = group[group["pipeline"] == step].sort_values("batch_size")
        sizes = list(dict.fromkeys([int(mine["batch_size"].iloc[0]), *_ladder_size(mine)]))
        for size in sizes:
            r = mine[mine["batch_size"] == size].iloc[-1]
            said = why_said(device, "train", step, size, r)
            if said:
                out.setdefault(key, []).append(said[0].upper() + said[1:] + ".")
    return out


def _full_if_any(rows: pd.DataFrame) -> pd.DataFrame:
    """A full run's rows where there are any, else the quick run's: a quick epoch is another quantity."""
    full = rows[~rows["quick"].astype(bool)]
    return full if not full.empty else rows


def _ladder_size(rows: pd.DataFrame) -> list[int]:
    sizes = rows["batch_size"].astype(int).tolist()
    return [min(sizes, key=lambda n: (abs(math.log(n / 1000)), n))] if sizes else []


def predicted(frame: pd.DataFrame, cross: pd.DataFrame) -> pd.DataFrame:
    """Per machine and GPU: the crossover its floors predict (each side's binding floor, the highest its run trusts,
    as its time, the CPU at torch's default threads) beside the measured one, for training's
    resident epoch and compute inference."""
    rows = _full_if_any(held(frame))
    rows = rows[(rows["device"] != "cpu") | at_default(rows)]
    rows = rows[
        ((rows["family"] == "train") & (rows["pipeline"] == "resident"))
        | (
            (rows["family"] == "inference")
            & (rows["mode"] == "compute")
            & (rows["pipeline"] == "inference_mode")
        )
    ]
    # Each side's time by its floors: its binding floor, the highest its run trusts (none: no
    # prediction).
    binding = [
        r[f"floor_{r['binding']}_s"] if r["binding"] else float("nan") for _, r in rows.iterrows()
    ]
    rows = rows.assign(floor=binding)
    out = []
    for (key, family), group in rows.groupby(["machine_key", "family"], sort=True):
        cpu = group[group["device"] == "cpu"].set_index("batch_size")["floor"]
        for device in sorted(set(group.loc[is_gpu(group["device"]), "device"])):
            gpu = group[group["device"] == device].set_index("batch_size")["floor"]
            sizes = sorted(set(cpu.index) & set(gpu.index))
            said = predicted_crossover(sizes, [cpu[s] for s in sizes], [gpu[s] for s in sizes])
            variant = "resident" if family == "train" else "compute"
            measured = cross[
                (cross["machine_key"] == key)
                & (cross["device"] == device)
                & (cross["family"] == family)
                & (cross["variant"] == variant)
                & (cross["quick"] == group["quick"].iloc[0])
            ]
            out.append(
                {
                    "machine_key": key,
                    "label": group["label"].iloc[0],
                    "device": device,
                    "family": family,
                    "variant": variant,
                    "predicted": said or "",
                    "measured": measured["says"].iloc[0] if not measured.empty else "",
                }
            )
    return pd.DataFrame(
        out,
        columns=["machine_key", "label", "device", "family", "variant", "predicted", "measured"],
    )


def predicted_table(frame: pd.DataFrame, cross: pd.DataFrame) -> pd.DataFrame:
    found = predicted(frame, cross)
    if found.empty:
        return pd.DataFrame()
    return found.drop(columns="machine_key").rename(
        columns={
            "label": "Machine",
            "device": "Device",
            "family": "Family",
            "variant": "Variant",
            "predicted": "Predicted from the floors",
            "measured": "Measured",
        }
    )
