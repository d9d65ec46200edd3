"""A device's own limits and every case held against them (plain Python): the limits' figures, the copy model fitted
to the transfer family, each case's floors and binding limit, what a ladder step moves toward, and
the predicted crossover.

A floor is what one limit alone says a case must take at least: its counted FLOPs over the measured
peak (arithmetic), its counted operations times the measured cost of one (per-operation cost), its
copies by the fitted copy model (copies). The highest floor is the binding limit; the measured time
as a multiple of it says how much of the case no measured limit explains. The run
(bench/run/plugin.py) holds each case against the limits measured before it in the same run; the
summary and the report word what it saved, through here.

A floor is only as good as its limit, and a limit the run itself contradicts explains nothing. A
limit is not built on (it is *distrusted*, with the reason) where its own case ran while other work
took a share of the machine (bench/measure/load.py: busy), or where a case ran faster than a floor
built on it: that case is the evidence that the limit was measured too low (or the work counted too
high), so the limit is named, and no binding limit, multiple or "why" is built on it, for that case
or any other of the run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.analysis.derive import crossover_says
from bench.analysis.words import fmt_time
from bench.format.names import FLOORS
from bench.format.records import (
    EXTRA,
    CaseExtra,
    Copy,
    Distrust,
    Held,
    LimitsExtra,
    LimitWork,
    Params,
    PipelineConfig,
    Stats,
    StepExtra,
    TransferExtra,
    Work,
)

__all__ = [
    "FAR",
    "FLOORS",
    "FLOOR_SAID",
    "LIMIT_ROUND",
    "LIMIT_UNITS",
    "Board",
    "CopyModel",
    "DeviceLimits",
    "binding_of",
    "fit_copies",
    "held_against",
    "hold",
    "ladder_move",
    "limit_figure",
    "predicted_crossover",
    "row_columns",
    "row_fields",
    "why_said",
]

FLOOR_SAID = {
    "arithmetic": "arithmetic",
    "operations": "per-operation cost",
    "copies": "host-device copies",
}
# What each limits case's figure is: seconds an operation, FLOP/s of a matrix product, bytes copied
# a second.
LIMIT_UNITS = {"operation": "s", "operation_graph": "s", "matmul": "FLOP/s", "device_copy": "B/s"}
# A limit is what a device can do at most, and noise on a shared machine only ever adds time: a
# limits case's figure is taken from its fastest round, not its median (a busy 2-core VM's float32
# peak read 147 GFLOP/s by the median and 194 by the next run's, IQR 37% against 3%).
LIMIT_ROUND = "min"
# A ladder step moves its case toward (or away from) a limit only where that floor's share of the
# time changed by at least this much: a point of the time. Below it, one operation more or less
# (channels_last's two layout copies in a 142-operation step) would read as a move.
MOVE_POINT = 0.01
# A case that took more than this many times its highest floor is said to be mostly beyond every
# measured limit: the floors then explain under a quarter of its time.
FAR = 4.0
# Bounds a saved figure must lie within to be worded: beyond them it is a broken file, not a machine
# (no device reaches an exaFLOP/s; an operation is neither under a nanosecond nor over an hour).
MOST_FLOP_S = 1e18
OPERATION_S = (1e-9, 3600.0)
# Two saved figures that should agree (a floor and its parts, a multiple and its time) agree within
# this share.
AGREE = 1e-3
# Format 7 counted each pipeline's own operations and copies; a reader of older runs is told what
# they lack.
COUNTED_SINCE = 7


def limit_figure(
    limit: str, work: LimitWork | Mapping | None, median_s: float | None
) -> float | None:
    """The figure of one limits case from its work per round (extra_info.work) and its median round: seconds an
    operation (operation, operation_graph), FLOP/s (matmul), bytes copied a second (device_copy)."""
    work = work if isinstance(work, LimitWork) else LimitWork.read(work)
    if not _positive(median_s):
        return None
    if limit in ("operation", "operation_graph") and _positive(work.ops):
        return median_s / work.ops
    if limit == "matmul" and _positive(work.flops):
        return work.flops / median_s
    if limit == "device_copy" and _positive(work.bytes):
        return work.bytes / median_s
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
    (weights 1/t^2: a 2 us copy's error counts as much as a 20 ms one's, so the fixed cost is fitted
    from the small copies and the bandwidth from the large). A fixed cost that comes out negative is
    fitted as 0. None with fewer than two sizes, or when the bytes do not make a copy take longer.
    """
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
    """What one device (at one CPU thread count) was measured to do at most in a run, and which of those figures
    no floor may be built on (`untrusted`: a limit's name -> why)."""

    operation_s: float | None = None
    operation_graph_s: float | None = None
    peak: dict[str, float] = field(default_factory=dict)  # dtype -> FLOP/s of a matrix product
    bandwidth: float | None = None  # bytes copied a second within the device's memory
    # (direction, memory) -> model
    copies: dict[tuple[str, str], CopyModel] = field(default_factory=dict)
    untrusted: dict[str, str] = field(default_factory=dict)

    def measured(self) -> bool:
        return self.operation_s is not None or bool(self.peak)


def limit_name(limit: str, dtype: str | None = None) -> str:
    """The name a limit goes by in the words: 'the float32 peak', 'an operation's cost (eager)'."""
    if limit == "matmul":
        return f"the {dtype or 'float32'} peak"
    if limit in ("operation", "operation_graph"):
        return (
            "an operation's cost ("
            + ("replayed from a CUDA graph" if limit == "operation_graph" else "eager")
            + ")"
        )
    if limit == "device_copy":
        return "the device's memory bandwidth"
    return f"the {limit} copy model"  # a route: "h2d pinned"


def _busy_share(extra: CaseExtra) -> float | None:
    """The share of the machine other work took around a case, where the run measured it and called it busy."""
    load = extra.machine_load
    if load is not None and load.busy is True:
        share = load.outside_share
        return float(share) if _positive(share) else 0.0
    if "busy" in ((extra.telemetry and extra.telemetry.flags) or []):
        return 0.0
    return None


def _disturbed(extra: CaseExtra) -> str | None:
    share = _busy_share(extra)
    if share is None:
        return None
    took = f"{share:.0%} of the machine's CPU" if share else "over a tenth of the CPU"
    return f"measured while other work took {took}"


def _key(params: Params) -> tuple:
    # A GPU's cases all run at torch's default threads: its limits hold whatever the CPU's count.
    return params.device, params.cpu_threads if params.device == "cpu" else None


class Board:
    """The run's limits so far, by device and CPU thread count, filled as cases finish: the limits family's
    figures, and the transfer family's copies (the copy model, the CPU's bandwidth). `add` holds a
    training or inference case against them: it writes extra_info.limits (and returns it) where its
    device's were measured. A limit measured while the machine was busy, or contradicted by a case
    faster than its floor, is kept with the reason and never built on again in this run."""

    def __init__(self) -> None:
        self.limits: dict[tuple, DeviceLimits] = {}
        self._copies: dict[tuple, list[tuple[float, float]]] = {}

    def add(
        self,
        family: str,
        params: Mapping,
        extra: dict,
        median_s: float | None,
        min_s: float | None = None,
    ) -> dict | None:
        """Take a finished case (its params and extra_info as saved; `median_s`, and `min_s` its fastest round: a
        limit's figure, see LIMIT_ROUND)."""
        params = Params.read(params)
        case = EXTRA.get(family, CaseExtra).read(extra)
        key = _key(params)
        if family == "limits":
            figure = limit_figure(params.limit, case.work, min_s if min_s else median_s)
            if figure is None:
                return None
            lim = self.limits.setdefault(key, DeviceLimits())
            limit, dtype = params.limit, params.dtype
            if limit == "matmul":
                lim.peak[dtype] = max(figure, lim.peak.get(dtype, 0.0))
            elif limit == "device_copy":
                lim.bandwidth = figure
            else:
                setattr(lim, f"{limit}_s", figure)
            disturbed = _disturbed(case)
            if disturbed:
                lim.untrusted[limit_name(limit, dtype)] = disturbed
            return None
        if family == "transfer":
            self._add_copy(key, params, case, median_s)
            return None
        if family in ("train", "inference"):
            lim = self.limits.get(key)
            held = (
                held_against(params, case, median_s, lim)
                if lim is not None and lim.measured()
                else None
            )
            if held is None:
                return None
            # a case under a floor: that limit is wrong from here on
            for why in (held.distrusted or {}).values():
                if why.contradicted:
                    lim.untrusted[why.limit] = why.why
            extra["limits"] = held.write()
            return extra["limits"]
        return None

    def _add_copy(
        self, key: tuple, params: Params, extra: TransferExtra, median_s: float | None
    ) -> None:
        nbytes = extra.bytes
        if not (_positive(nbytes) and _positive(median_s)):
            return
        route = (params.direction, params.memory)
        lim = self.limits.setdefault(key, DeviceLimits())
        points = self._copies.setdefault((*key, *route), [])
        points.append((nbytes, median_s))
        disturbed = _disturbed(extra)
        if route[0] == "h2h":  # the CPU's own memory: the largest copy is its bandwidth
            lim.bandwidth = max(points)[0] / max(points)[1]
            if disturbed:
                lim.untrusted[limit_name("device_copy")] = disturbed
            return
        model = fit_copies(points)
        if model is not None:
            lim.copies[route] = model
        if disturbed:
            lim.untrusted[limit_name(" ".join(route))] = disturbed


def _batches(images: int, batch_size: int) -> list[tuple[int, int]]:
    """[(count, batch size)] of a pass of `images` at `batch_size`: the full batches and the last, smaller one."""
    full, rest = divmod(images, batch_size)
    return [(n, size) for n, size in ((full, batch_size), (1 if rest else 0, rest)) if n]


def _ops(work: Work, images: int, batch_size, batches: int) -> float | None:
    """The operations a case's epoch or pass runs: each step's at its size (its fixed operations and those per
    image), and the epoch's own once (format 7); before, the counted step's operations times its
    steps."""
    fixed, per_image, per_epoch = work.ops_fixed, work.ops_per_image, work.ops_per_epoch
    if _count(fixed) and _count(per_image) and _count(per_epoch) and _positive(batch_size):
        steps = _batches(images, int(batch_size))
        return sum(n * (fixed + per_image * size) for n, size in steps) + per_epoch
    step = work.ops_per_step
    return step * batches if _positive(step) else None


def _copy_floor(
    copies: list[Copy] | None, device: str, lim: DeviceLimits
) -> tuple[float | None, list[str]]:
    """(seconds, the routes it is built on) of a case's copies between host and device by the fitted copy
    model: each copy the case makes (extra_info.work.copies, as the loops make them) at its route's
    fixed cost plus its bytes over its bandwidth. 0 on the CPU; None where a route it uses was never
    measured."""
    if device == "cpu":
        return 0.0, []
    if copies is None:  # a case that did not say which copies it makes (saved before format 7)
        return None, []
    total, routes = 0.0, []
    for copy in copies:
        route = (copy.direction, copy.memory)
        model = lim.copies.get(route)
        if model is None or not (_count(copy.count) and _count(copy.bytes)):
            return None, []
        total += copy.count * model.seconds(copy.bytes)
        routes.append(" ".join(route))
    return total, list(dict.fromkeys(routes))


def hold(
    family: str, params: Mapping, extra: Mapping, median_s: float | None, lim: DeviceLimits
) -> dict | None:
    """held_against, for a case as saved (its family, params and extra_info): the extra_info.limits it saves."""
    held = held_against(Params.read(params), EXTRA[family].read(extra), median_s, lim)
    return None if held is None else held.write()


def held_against(
    params: Params, extra: StepExtra, median_s: float | None, lim: DeviceLimits
) -> Held | None:
    """A training or inference case against its device's limits: its counted FLOPs and operations, achieved
    FLOP/s and share of the peak, its floors, which of them no limit of the run may be trusted for
    (and a floor this case ran under is one), the binding limit among the rest and its time as a
    multiple of that floor."""
    work = extra.work or Work()
    config = extra.config
    images, batches = extra.images, extra.batches
    if not (
        _positive(median_s)
        and _positive(images)
        and _positive(batches)
        and _positive(work.flops_per_image)
    ):
        return None
    flops = work.flops_per_image * images
    ops = _ops(work, images, params.batch_size, batches)
    dtype = config.precision or "float32"
    peak = lim.peak.get(dtype)
    graph = bool(config.cuda_graph)
    op_s = lim.operation_graph_s if graph else lim.operation_s
    copy_s, routes = _copy_floor(work.copies, params.device, lim)
    floors = {
        "arithmetic": flops / peak if peak else None,
        "operations": ops * op_s if ops is not None and op_s is not None else None,
        "copies": copy_s,
    }
    floors = {k: v for k, v in floors.items() if v is not None}
    behind = {
        "arithmetic": [limit_name("matmul", dtype)],
        "operations": [limit_name("operation_graph" if graph else "operation")],
        "copies": [limit_name(route) for route in routes],
    }
    distrusted = {}
    for kind in floors:
        named = [name for name in behind[kind] if name in lim.untrusted]
        if named:
            distrusted[kind] = Distrust(
                limit=named[0], why=lim.untrusted[named[0]], contradicted=False
            )
        elif floors[kind] > median_s and behind[kind]:
            # The case ran faster than this floor: the evidence is against the limit, not the case.
            distrusted[kind] = Distrust(
                limit=behind[kind][0],
                why=f"a case ran in {fmt_time(median_s)}, under the {fmt_time(floors[kind])} {FLOOR_SAID[kind]} "
                f"floor it gives: measured too low, or the work counted too high",
                contradicted=True,
            )
    binding, multiple = binding_of(floors, distrusted, median_s)
    achieved = flops / median_s
    return Held(
        flops=flops,
        ops=ops,
        ops_per_step=work.ops_per_step,
        steps=batches,
        achieved_flops_s=achieved,
        peak_dtype=dtype,
        peak_flops_s=peak,
        peak_share=achieved / peak if peak else None,
        operation_s=op_s,
        operation_kind="graph" if graph else "eager",
        floors_s=floors,
        distrusted=distrusted,
        binding=binding,
        multiple=multiple,
        source="this run's limits cases",
    )


def binding_of(floors: Mapping, distrusted: Mapping, median_s) -> tuple[str | None, float | None]:
    """(the binding limit, the time as a multiple of its floor): the highest floor whose limit is trusted."""
    trusted = {k: v for k, v in floors.items() if k not in distrusted and _positive(v)}
    if not trusted or not _positive(median_s):
        return None, None
    binding = max(trusted, key=trusted.get)
    return binding, median_s / trusted[binding]


def _older(format_version, extra: CaseExtra, params: Params) -> dict[str, str]:
    """What a case saved before format 7 lacks, by floor: its DataLoader's operations (format 6 counted the
    resident step's for every pipeline) and its copies as they happen (one fixed cost a DataLoader
    batch for its two copies, a copy back per inference batch where the labels come back once)."""
    if not isinstance(format_version, int) or format_version >= COUNTED_SINCE:
        return {}
    data = (getattr(extra, "pipeline_config", None) or PipelineConfig()).data
    said = {}
    if data == "dataloader":
        said["operations"] = (
            f"format {format_version} counted the resident step's operations for this pipeline, not its own"
        )
    if params.device != "cpu" and (data == "dataloader" or params.mode == "end_to_end"):
        said["copies"] = (
            f"format {format_version} counted its copies one to a batch, not as they happen"
        )
    return said


def row_fields(
    extra: Mapping,
    limit: str | None,
    stats: Mapping,
    params: Mapping | None = None,
    format_version=None,
) -> dict:
    """row_columns, for a case as saved (its extra_info, limit, stats and params)."""
    params = Params.read({**(params or {}), "limit": limit})
    extra = EXTRA.get("limits" if limit else "train").read(extra)
    return row_columns(extra, params, Stats.read(stats), format_version)


def row_columns(extra: CaseExtra, params: Params, stats: Stats, format_version=None) -> dict:
    """The flat columns a report row takes from a case's limits (bench/analysis/columns.py): a limits case's
    figure (from its fastest round, LIMIT_ROUND) and why it is not to be built on (measured while the
    machine was busy), or what a training or inference case was held against (None where the run had
    none), each floor's distrust (a reason, or ''), and the binding limit among the floors trusted,
    judged again here (binding_of) with what older formats lack."""
    limit = params.limit
    held = getattr(extra, "limits", None) or Held()
    floors = {k: v for k, v in (held.floors_s or {}).items() if k in FLOORS}
    saved = held.distrusted or {}
    distrust = {kind: _why(saved.get(kind)) for kind in FLOORS}
    for kind, why in _older(format_version, extra, params).items():
        distrust[kind] = distrust[kind] or why
    binding, multiple = binding_of(floors, {k: v for k, v in distrust.items() if v}, stats.median)
    work = extra.work if isinstance(extra, LimitsExtra) else None
    return {
        "limit_value": limit_figure(limit, work, getattr(stats, LIMIT_ROUND)) if limit else None,
        "limit_size": work.n if work is not None and limit == "matmul" else None,
        "limit_untrusted": (_disturbed(extra) or "") if limit else "",
        "flops": held.flops,
        "ops": held.ops,
        "achieved_flops_s": held.achieved_flops_s,
        "peak_dtype": _text(held.peak_dtype),
        "peak_flops_s": held.peak_flops_s,
        "peak_share": held.peak_share,
        "operation_kind": _text(held.operation_kind),
        "operation_s": held.operation_s,
        **{f"floor_{kind}_s": floors.get(kind) for kind in FLOORS},
        **{f"distrust_{kind}": distrust[kind] for kind in FLOORS},
        "binding": binding or "",
        "floor_multiple": multiple,
    }


def _why(said: Distrust | None) -> str:
    """A saved distrust's reason, naming its limit: 'the float32 peak: measured while other work took 73% ...'."""
    if said is None:
        return ""
    limit, why = _text(said.limit), _text(said.why)
    return f"{limit}: {why}" if limit and why else why or limit


def _text(value) -> str:
    return value[:500] if isinstance(value, str) else ""


def _disagree(a, b) -> bool:
    return not (_positive(a) and _positive(b)) or abs(a - b) > AGREE * max(a, b)


def _inconsistent(binding: str, row: Mapping) -> str | None:
    """Why a row's figures cannot be worded as they are (a floor missing, beyond any machine, or not what its
    parts make), or None when they agree with each other."""
    floor, median = row.get(f"floor_{binding}_s"), row.get("median")
    if not (_positive(floor) and floor <= 7 * 86400):
        return f"its {FLOOR_SAID[binding]} floor is {floor!r}"
    if _disagree(row.get("floor_multiple"), median / floor):
        return f"its time over its floor is {row.get('floor_multiple')!r}, not {median / floor:.3g}"
    if binding == "arithmetic":
        flops, peak = row.get("flops"), row.get("peak_flops_s")
        if not (_positive(peak) and peak <= MOST_FLOP_S and _positive(flops)):
            return f"its FLOPs ({flops!r}) or the peak ({peak!r}) is not a figure a machine gives"
        if _disagree(flops / peak, floor):
            return f"its arithmetic floor ({fmt_time(floor)}) is not its FLOPs over the peak ({fmt_time(flops / peak)})"
    if binding == "operations":
        ops, op_s, steps = row.get("ops"), row.get("operation_s"), row.get("batches")
        if not (
            _positive(ops)
            and _positive(steps)
            and _positive(op_s)
            and OPERATION_S[0] <= op_s <= OPERATION_S[1]
        ):
            return f"its operations ({ops!r}), steps ({steps!r}) or an operation's cost ({op_s!r}) is not a figure"
        if _disagree(ops * op_s, floor):
            return f"its per-operation floor ({fmt_time(floor)}) is not its operations times their cost"
    return None


def why_said(device: str, family: str, pipeline: str, batch_size: int, row: Mapping) -> str | None:
    """Why a case took what it took, from its row's held figures: 'at batch 100 cuda:0's resident epoch is
    bound by per-operation cost: 600 steps x 78 operations x 9 us = 0.42 s of its 1.35 s'. Built
    only on limits the run trusts and on figures that agree with each other: otherwise it says what
    it is not built on, or that the figures were passed over and why; None where the case was never
    held against any limit."""
    binding, median = row.get("binding"), row.get("median")
    what = "epoch" if family == "train" else "pass"
    case = f"at batch {int(batch_size):,} {device}'s {pipeline} {what}"
    distrust = [row.get(f"distrust_{kind}") for kind in FLOORS if row.get(f"distrust_{kind}")]
    if not _positive(median):
        return None
    if not binding:
        return f"{case}: no limit this run trusts explains it ({distrust[0]})" if distrust else None
    if binding not in FLOORS:
        return f"{case}: not explained: its binding limit {str(binding)[:40]!r} is not one of {', '.join(FLOORS)}"
    wrong = _inconsistent(binding, row)
    if wrong:
        return f"{case}: not explained: its limits figures do not agree ({wrong})"
    floor = row[f"floor_{binding}_s"]
    if binding == "operations":
        steps, ops = row["batches"], row["ops"]
        detail = (
            f"{int(steps):,} steps x {ops / steps:,.0f} operations x {fmt_time(row['operation_s'])}"
        )
    elif binding == "arithmetic":
        detail = f"{row['flops'] / 1e9:.3g} GFLOP at a peak of {_rate(row['peak_flops_s'])}"
    else:
        detail = f"{int(row.get('batches') or 0):,} batches' copies by the fitted copy model"
    said = f"{case} is bound by {FLOOR_SAID[binding]}: {detail} = {fmt_time(floor)} of its {fmt_time(median)}"
    share = row.get("peak_share")
    if (
        not row.get("distrust_arithmetic")
        and _positive(share)
        and share <= 1
        and _positive(row.get("peak_flops_s"))
    ):
        said += f"; its arithmetic ran at {_share(share)} of the measured peak"
    if row["floor_multiple"] > FAR:
        said += f"; {row['floor_multiple']:.1f}x that floor: most of its time is beyond every limit measured"
    return said


def ladder_move(base: Mapping, step: Mapping, *, same_time: bool = False) -> str | None:
    """What a ladder step moves its case toward, from the two rows' floors as shares of their times: the floor
    whose share changed the most, toward it where it grew ('toward arithmetic: its floor 12% -> 31%
    of the time'), away from it where it fell (the step's time grew, or the step lowered that
    floor). `same_time`: the two times' ratio has an interval that includes 1 (no difference
    measured), so only what the step did to the floors moves it: both shares are taken of the base's
    time."""
    shares = {}
    step_time = base.get("median") if same_time else step.get("median")
    for kind in FLOORS:
        if base.get(f"distrust_{kind}") or step.get(f"distrust_{kind}"):
            continue  # a floor built on a limit the run does not trust moves nothing
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
    """The crossover the floors predict (each side's binding floor, the highest it trusts, as its time), worded as
    derive.crossover_says words the measured one; None where a batch size lacks either floor."""
    if not batch_sizes or not all(
        _positive(c) and _positive(g) for c, g in zip(cpu_floor, gpu_floor, strict=True)
    ):
        return None
    return crossover_says(batch_sizes, [c / g for c, g in zip(cpu_floor, gpu_floor, strict=True)])


def _rate(flops_s) -> str:
    if not _positive(flops_s):
        return "?"
    return f"{flops_s / 1e12:.3g} TFLOP/s" if flops_s >= 1e12 else f"{flops_s / 1e9:.3g} GFLOP/s"


def _positive(value) -> bool:
    # numbers.Real: a report row's figures are numpy's (an int64 is not an int).
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _count(value) -> bool:
    """A whole number of things, 0 included (a step may add no operations per image)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
