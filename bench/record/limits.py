"""A device's own limits and every case held against them (plain Python): the limits' figures, the copy model fitted
to the transfer family, each case's floors and binding limit, what a ladder step moves toward, and the predicted crossover.

A floor is what one limit alone says a case must take at least: its counted FLOPs over the measured peak
(arithmetic), its operations times the measured cost of one (per-operation cost), its copies by the fitted
copy model (copies). The highest floor is the binding limit; the measured time as a multiple of it says how
much of the case no measured limit explains. The run (bench/run/plugin.py) holds each case against the
limits measured before it in the same run; the summary and the report word what it saved, through here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.record.derive import crossover_says
from bench.record.words import fmt_time

__all__ = [
    "FAR",
    "FLOORS",
    "FLOOR_SAID",
    "LIMIT_COLUMNS",
    "LIMIT_ROUND",
    "LIMIT_UNITS",
    "Board",
    "CopyModel",
    "DeviceLimits",
    "fit_copies",
    "hold",
    "ladder_move",
    "limit_figure",
    "predicted_crossover",
    "row_fields",
    "why_said",
]

FLOORS = ("arithmetic", "operations", "copies")
FLOOR_SAID = {"arithmetic": "arithmetic", "operations": "per-operation cost", "copies": "host-device copies"}
# What each limits case's figure is: seconds an operation, FLOP/s of a matrix product, bytes copied a second.
LIMIT_UNITS = {"operation": "s", "operation_graph": "s", "matmul": "FLOP/s", "device_copy": "B/s"}
# A limit is what a device can do at most, and noise on a shared machine only ever adds time: a limits case's
# figure is taken from its fastest round, not its median (a busy 2-core VM's float32 peak read 147 GFLOP/s by
# the median and 194 by the next run's, IQR 37% against 3%).
LIMIT_ROUND = "min"
# A ladder step moves its case toward (or away from) a limit only where that floor's share of the time changed
# by at least this much: a point of the time. Below it, one operation more or less (channels_last's two
# layout copies in a 142-operation step) would read as a move.
MOVE_POINT = 0.01
# A case that took more than this many times its highest floor is said to be mostly beyond every measured
# limit: the floors then explain under a quarter of its time.
FAR = 4.0
# Bytes a training or inference batch moves: float32 images of 1x28x28 in, int64 labels in (train) or out.
IMAGE_BYTES = 28 * 28 * 4
LABEL_BYTES = 8


def limit_figure(limit: str, work: Mapping, median_s: float | None) -> float | None:
    """The figure of one limits case from its work per round and its median round: seconds an operation
    (operation, operation_graph), FLOP/s (matmul), bytes copied a second (device_copy)."""
    if not _positive(median_s):
        return None
    if limit in ("operation", "operation_graph") and _positive(work.get("ops")):
        return median_s / work["ops"]
    if limit == "matmul" and _positive(work.get("flops")):
        return work["flops"] / median_s
    if limit == "device_copy" and _positive(work.get("bytes")):
        return work["bytes"] / median_s
    return None


@dataclass(frozen=True)
class CopyModel:
    """A copy's time as a fixed cost plus bytes over bandwidth, fitted to one device's copies of one kind."""

    fixed_s: float
    bytes_per_s: float
    points: int

    @property
    def half_bandwidth_bytes(self) -> float:
        """The size at which a copy reaches half its bandwidth: where the fixed cost and the bytes take as long."""
        return self.fixed_s * self.bytes_per_s

    def seconds(self, nbytes: float) -> float:
        return self.fixed_s + nbytes / self.bytes_per_s

    def record(self) -> dict:
        return {
            "fixed_s": self.fixed_s,
            "bytes_per_s": self.bytes_per_s,
            "half_bandwidth_bytes": self.half_bandwidth_bytes,
            "points": self.points,
        }


def fit_copies(points: Sequence[tuple[float, float]]) -> CopyModel | None:
    """t = fixed + bytes / bandwidth, fitted to (bytes, seconds) points by least squares on the relative error
    (weights 1/t^2: a 2 us copy's error counts as much as a 20 ms one's, so the fixed cost is fitted from the
    small copies and the bandwidth from the large). A fixed cost that comes out negative is fitted as 0.
    None with fewer than two sizes, or when the bytes do not make a copy take longer."""
    pts = [(float(x), float(t)) for x, t in points if _positive(x) and _positive(t)]
    if len({x for x, _ in pts}) < 2:
        return None
    w = [1 / t**2 for _, t in pts]
    sw = sum(w)
    sx = sum(wi * x for wi, (x, _) in zip(w, pts, strict=True))
    sxx = sum(wi * x * x for wi, (x, _) in zip(w, pts, strict=True))
    st = sum(wi * t for wi, (_, t) in zip(w, pts, strict=True))
    sxt = sum(wi * x * t for wi, (x, t) in zip(w, pts, strict=True))
    det = sw * sxx - sx * sx
    fixed, per_byte = (sxx * st - sx * sxt) / det, (sw * sxt - sx * st) / det
    if fixed < 0:
        fixed, per_byte = 0.0, sxt / sxx
    if not per_byte > 0:
        return None
    return CopyModel(fixed_s=fixed, bytes_per_s=1 / per_byte, points=len(pts))


@dataclass
class DeviceLimits:
    """What one device (at one CPU thread count) was measured to do at most in a run."""

    operation_s: float | None = None
    operation_graph_s: float | None = None
    peak: dict[str, float] = field(default_factory=dict)  # dtype -> FLOP/s of a matrix product
    bandwidth: float | None = None  # bytes copied a second within the device's memory
    copies: dict[tuple[str, str], CopyModel] = field(default_factory=dict)  # (direction, memory) -> model

    def measured(self) -> bool:
        return self.operation_s is not None or bool(self.peak)


def _key(params: Mapping) -> tuple:
    # A GPU's cases all run at torch's default threads: its limits hold whatever the CPU's count.
    return (params.get("device"), params.get("cpu_threads") if params.get("device") == "cpu" else None)


class Board:
    """The run's limits so far, by device and CPU thread count, filled as cases finish: the limits family's
    figures, and the transfer family's copies (the copy model, the CPU's bandwidth). `add` holds a training or
    inference case against them: it writes extra_info.limits (and returns it) where its device's were measured."""

    def __init__(self) -> None:
        self.limits: dict[tuple, DeviceLimits] = {}
        self._copies: dict[tuple, list[tuple[float, float]]] = {}
        self._models: dict[tuple, CopyModel | None] = {}

    def add(self, family: str, params: Mapping, extra: dict, median_s: float | None,
            min_s: float | None = None) -> dict | None:  # fmt: skip
        """Take a finished case (`median_s`, and `min_s` its fastest round: a limit's figure, see LIMIT_ROUND)."""
        key = _key(params)
        if family == "limits":
            figure = limit_figure(params.get("limit"), extra.get("work") or {}, min_s if min_s else median_s)
            if figure is not None:
                lim = self.limits.setdefault(key, DeviceLimits())
                if params["limit"] == "matmul":
                    lim.peak[params.get("dtype")] = max(figure, lim.peak.get(params.get("dtype"), 0.0))
                elif params["limit"] == "device_copy":
                    lim.bandwidth = figure
                else:
                    setattr(lim, f"{params['limit']}_s", figure)
            return None
        if family == "transfer":
            self._add_copy(key, params, extra, median_s)
            return None
        if family in ("train", "inference"):
            lim = self.limits.get(key)
            held = hold(family, params, extra, median_s, lim) if lim is not None and lim.measured() else None
            if held is not None:
                extra["limits"] = held
            return held
        return None

    def _add_copy(self, key: tuple, params: Mapping, extra: Mapping, median_s: float | None) -> None:
        nbytes = extra.get("bytes")
        if not (_positive(nbytes) and _positive(median_s)):
            return
        route = (params.get("direction"), params.get("memory"))
        if route[0] == "h2h":  # the CPU's own memory: the largest copy is its bandwidth
            lim = self.limits.setdefault(key, DeviceLimits())
            best = self._copies.setdefault((*key, *route), [])
            best.append((nbytes, median_s))
            lim.bandwidth = max(best)[0] / max(best)[1]
            return
        self._copies.setdefault((*key, *route), []).append((nbytes, median_s))
        model = fit_copies(self._copies[(*key, *route)])
        lim = self.limits.setdefault(key, DeviceLimits())
        if model is not None:
            lim.copies[route] = model


def _batches(images: int, batch_size: int) -> list[tuple[int, int]]:
    """[(count, batch size)] of a pass of `images` at `batch_size`: the full batches and the last, smaller one."""
    full, rest = divmod(images, batch_size)
    return [(n, size) for n, size in ((full, batch_size), (1 if rest else 0, rest)) if n]


def _copy_floor(family: str, params: Mapping, config: Mapping, images: int, lim: DeviceLimits) -> float | None:
    """The copies a case makes between host and device, by the fitted copy model; 0 where it makes none."""
    if params.get("device") == "cpu":
        return 0.0
    batch = params.get("batch_size")
    if family == "train":
        if config.get("data") != "dataloader":
            return 0.0  # the resident set was copied once, before the rounds
        routes = [(("h2d", "pinned" if config.get("pin_memory") else "pageable"), IMAGE_BYTES + LABEL_BYTES)]
    else:
        if params.get("mode") != "end_to_end":
            return 0.0
        routes = [(("h2d", "pageable"), IMAGE_BYTES), (("d2h", "pageable"), LABEL_BYTES)]
    total = 0.0
    for route, per_image in routes:
        model = lim.copies.get(route)
        if model is None:
            return None
        total += sum(n * model.seconds(size * per_image) for n, size in _batches(images, batch))
    return total


def hold(family: str, params: Mapping, extra: Mapping, median_s: float | None, lim: DeviceLimits) -> dict | None:
    """A training or inference case against its device's limits: its counted FLOPs and operations, achieved
    FLOP/s and share of the peak, its floors, the binding limit and its time as a multiple of that floor."""
    work = extra.get("work") or {}
    config = extra.get("pipeline_config") or {}
    images, batches = extra.get("images"), extra.get("batches")
    if not (
        _positive(median_s) and _positive(images) and _positive(batches) and _positive(work.get("flops_per_image"))
    ):
        return None
    flops = work["flops_per_image"] * images
    ops = work["ops_per_step"] * batches if _positive(work.get("ops_per_step")) else None
    dtype = config.get("precision") or "float32"
    peak = lim.peak.get(dtype)
    graph = bool(config.get("cuda_graph"))
    op_s = lim.operation_graph_s if graph else lim.operation_s
    floors = {
        "arithmetic": flops / peak if peak else None,
        "operations": ops * op_s if ops is not None and op_s is not None else None,
        "copies": _copy_floor(family, params, config, images, lim),
    }
    floors = {k: v for k, v in floors.items() if v is not None}
    binding = max(floors, key=floors.get) if any(v > 0 for v in floors.values()) else None
    achieved = flops / median_s
    return {
        "flops": flops,
        "ops": ops,
        "ops_per_step": work.get("ops_per_step"),
        "steps": batches,
        "achieved_flops_s": achieved,
        "peak_dtype": dtype,
        "peak_flops_s": peak,
        "peak_share": achieved / peak if peak else None,
        "operation_s": op_s,
        "operation_kind": "graph" if graph else "eager",
        "floors_s": floors,
        "binding": binding,
        "multiple": median_s / floors[binding] if binding else None,
        "from": "this run's limits cases",
    }


# The report's columns from a case's limits (row_fields), in order; all numbers but binding.
LIMIT_COLUMNS = ("limit_value", "limit_size", "flops", "ops", "achieved_flops_s", "peak_flops_s", "peak_share",
                 "operation_s", *(f"floor_{kind}_s" for kind in FLOORS), "binding", "floor_multiple")  # fmt: skip


def row_fields(extra: Mapping, limit: str | None, stats: Mapping) -> dict:
    """The flat columns a report row takes from a case's limits: a limits case's figure (from its fastest round,
    LIMIT_ROUND), or what a training or inference case was held against (None where the run had none)."""
    held = extra.get("limits") if isinstance(extra.get("limits"), Mapping) else {}
    floors = held.get("floors_s") if isinstance(held.get("floors_s"), Mapping) else {}
    work = extra.get("work") if isinstance(extra.get("work"), Mapping) else {}
    return {
        "limit_value": limit_figure(limit, work, stats.get(LIMIT_ROUND)) if limit else None,
        "limit_size": work.get("n") if limit == "matmul" else None,
        "flops": held.get("flops"),
        "ops": held.get("ops"),
        "achieved_flops_s": held.get("achieved_flops_s"),
        "peak_flops_s": held.get("peak_flops_s"),
        "peak_share": held.get("peak_share"),
        "operation_s": held.get("operation_s"),
        **{f"floor_{kind}_s": floors.get(kind) for kind in FLOORS},
        "binding": held.get("binding") or "",
        "floor_multiple": held.get("multiple"),
    }


def why_said(device: str, family: str, pipeline: str, batch_size: int, row: Mapping) -> str | None:
    """Why a case took what it took, from its row's held figures: 'at batch 100 cuda:0's resident epoch is
    bound by per-operation cost: 600 steps x 78 operations x 9 us = 0.42 s of its 1.35 s'."""
    binding, median = row.get("binding"), row.get("median")
    if not binding or not _positive(median):
        return None
    floor = row.get(f"floor_{binding}_s")
    what = "epoch" if family == "train" else "pass"
    if binding == "operations":
        steps, ops = row.get("batches"), row.get("ops")
        per = f"{int(ops / steps):,}" if _positive(steps) and _positive(ops) else "?"
        detail = f"{int(steps or 0):,} steps x {per} operations x {fmt_time(row.get('operation_s'))}"
    elif binding == "arithmetic":
        detail = f"{row.get('flops', 0) / 1e9:.3g} GFLOP at a peak of {_rate(row.get('peak_flops_s'))}"
    else:
        detail = f"{int(row.get('batches') or 0):,} batches' copies by the fitted copy model"
    said = (
        f"at batch {int(batch_size):,} {device}'s {pipeline} {what} is bound by {FLOOR_SAID[binding]}: "
        f"{detail} = {fmt_time(floor)} of its {fmt_time(median)}"
    )
    if _positive(row.get("peak_share")):
        said += f"; its arithmetic ran at {_share(row['peak_share'])} of the measured peak"
    if _positive(row.get("floor_multiple")) and row["floor_multiple"] > FAR:
        said += f"; {row['floor_multiple']:.1f}x that floor: most of its time is beyond every limit measured"
    elif _positive(row.get("floor_multiple")) and row["floor_multiple"] < 1:
        said += "; faster than that floor: a limit was measured too low, or the work counted too high"
    return said


def ladder_move(base: Mapping, step: Mapping, *, same_time: bool = False) -> str | None:
    """What a ladder step moves its case toward, from the two rows' floors as shares of their times: the floor
    whose share changed the most, toward it where it grew ('toward arithmetic: its floor 12% -> 31% of the
    time'), away from it where it fell (the step's time grew, or the step lowered that floor).
    `same_time`: the two times' ratio has an interval that includes 1 (no difference measured), so only what
    the step did to the floors moves it: both shares are taken of the base's time."""
    shares = {}
    step_time = base.get("median") if same_time else step.get("median")
    for kind in FLOORS:
        a, b = base.get(f"floor_{kind}_s"), step.get(f"floor_{kind}_s")
        if _positive(a) and _positive(b) and _positive(base.get("median")) and _positive(step_time):
            shares[kind] = (a / base["median"], b / step_time)
    if not shares:
        return None
    grew = {kind: after - before for kind, (before, after) in shares.items()}
    kind = max(grew, key=lambda k: abs(grew[k]))
    if abs(grew[kind]) < MOVE_POINT:
        return "no move: no floor's share of its time changed by a point"
    before, after = shares[kind]
    way = "toward" if after > before else "away from"
    return f"{way} {FLOOR_SAID[kind]}: its floor {_share(before)} -> {_share(after)} of the time"


def _share(x: float) -> str:
    return f"{x:.0%}" if x >= 0.095 else f"{x:.1%}" if x >= 0.001 else "under 0.1%"


def predicted_crossover(
    batch_sizes: Sequence[int], cpu_floor: Sequence[float], gpu_floor: Sequence[float]
) -> str | None:
    """The crossover the floors predict (each side's highest floor as its time), worded as derive.crossover_says
    words the measured one; None where a batch size lacks either floor."""
    if not batch_sizes or not all(_positive(c) and _positive(g) for c, g in zip(cpu_floor, gpu_floor, strict=True)):
        return None
    return crossover_says(batch_sizes, [c / g for c, g in zip(cpu_floor, gpu_floor, strict=True)])


def _rate(flops_s) -> str:
    if not _positive(flops_s):
        return "?"
    return f"{flops_s / 1e12:.3g} TFLOP/s" if flops_s >= 1e12 else f"{flops_s / 1e9:.3g} GFLOP/s"


def _positive(value) -> bool:
    # numbers.Real: a report row's figures are numpy's (an int64 is not an int).
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
