"""The cost model: a plan's wall time, case by case, predicted from measured costs (saved runs, the cases finished so far).

A case costs its fixed overhead (model, buffers, pytest), a short warm-up, for inference a
bounded latency sample, and its timed rounds, whose number the family's Budget sets from the
round's time. The round times come from a profile: the medians of a saved run of the same
machine, interpolated in log-log across batch sizes and scaled by the images per round where
the plan differs from the run. `python -m bench cost RUN.json...` (bench/run/cost.py) prints a
plan's estimate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.analysis.derive import loglog_interp
from bench.format import records as fmt
from bench.format.names import CNN_MODEL
from bench.measure.plan import (
    FAMILIES,
)

__all__ = [
    "ASSUMED_OVERHEAD_S",
    "ASSUMED_OUTSIDE_S",
    "Observation",
    "Profile",
    "machine_of",
    "observation",
]

VARIANT_AXES = {
    "limits": ("limit", "dtype"),
    "transfer": ("direction", "memory", "dtype"),
    "inference": ("mode", "pipeline"),
    "train": ("pipeline",),
}
# Runs of format 2 have no inference pipeline: they ran inference_mode.
_DEFAULT_AXIS = {"pipeline": "inference_mode"}
# A limits case has no size axis: each (limit, dtype) is one case a device, its size 0 here.
SIZE_AXIS = {"limits": "", "transfer": "size", "inference": "batch_size", "train": "batch_size"}
SPLIT_IMAGES = {"train": 60_000, "inference": 10_000}
# Used only where a profile has no measurement of its own (runs saved before format 2 do not
# record what a case cost besides its rounds): the median per-case overhead and the time
# outside the cases (imports, data, weights, saving) of the format-2 reference run on the
# 2-core AMD VM, results/reference/vm_AMD-EPYC_no-gpu/.../0002_22c2ce6*.json. A GPU host adds CUDA's start.
# A limits case is taken as a copy's overhead (it builds its tensors as a copy builds its buffers): it has no
# saved run before format 6.
ASSUMED_OVERHEAD_S = {"limits": 0.0015, "transfer": 0.0015, "inference": 0.0035, "train": 0.0047}
ASSUMED_OUTSIDE_S = 3.4
# A ladder step with no measurement of its own on a machine is predicted from a step that was
# measured there: (that step, this one's time as a multiple of it). The tuned loader is predicted
# apart (Profile.round_s): resident plus the seed epoch's loading (seed - resident) shared among
# its workers, which gives 0.174 + (5.60 - 0.174) / 8 = 0.85 s for the H100 host's 8 workers
# (0.77 s measured) and the seed epoch for the 2-core VM's one worker. The sources, epochs at
# batch 1,000: the 2-core VM's default run 0004 (torch 2.14.1, glibc keeping freed blocks:
# resident 1.62 s, channels_last 1.50 s, bf16 2.01 s, channels_last_bf16 1.21 s, compile
# 2.61 s) for a CPU; for a GPU the H100 host's run 0004 (torch 2.11: resident 174 ms,
# channels_last 225, bf16 261, channels_last_bf16 233, compile 241, cuda_graph 47.3), the graph
# of the compiled step from bench.check.gpu there (37-42 ms, taken as 39.5), and its inference
# at batch 1,000 from the progress lines of its stopped default run (images/s: inference_mode
# 3.82 M, eager 2.33 M, channels_last 3.11 M, bf16 1.28 M, channels_last_bf16 1.30 M, compile
# 1.76 M, cuda_graph 4.89 M). A CPU's inference steps are taken as inference_mode's.
# (kind, family) -> (the step measured there, how it is measured, each step's figure).
_MEASURED_STEPS = {
    ("cpu", "train"): (
        "resident",
        "s",
        {
            "resident": 1.62,
            "channels_last": 1.50,
            "bf16": 2.01,
            "channels_last_bf16": 1.21,
            "compile": 2.61,
        },
    ),
    ("gpu", "train"): (
        "resident",
        "ms",
        {
            "resident": 174.2,
            "channels_last": 225.3,
            "bf16": 260.8,
            "channels_last_bf16": 232.5,
            "compile": 240.8,
            "cuda_graph": 47.3,
            "compile_cuda_graph": 39.5,
        },
    ),
    ("gpu", "inference"): (
        "inference_mode",
        "images/s",
        {
            "inference_mode": 3.82,
            "eager": 2.33,
            "channels_last": 3.11,
            "bf16": 1.28,
            "channels_last_bf16": 1.30,
            "compile": 1.76,
            "cuda_graph": 4.89,
        },
    ),
}
# (kind -> family -> step -> (the step it is predicted from, its time as a multiple of that
# step's)). A CPU's inference steps are taken as inference_mode's.


def _as_multiples(base: str, unit: str, figures: dict[str, float]) -> dict[str, tuple[str, float]]:
    """Each step's time as a multiple of `base`'s: a time over a time, or, for images/s, the inverse."""
    return {
        step: (base, figures[base] / x if unit == "images/s" else x / figures[base])
        for step, x in figures.items()
        if step != base
    }


ASSUMED_STEP = {
    "cpu": {
        "inference": {
            p: ("inference_mode", 1.0)
            for p in ("eager", "channels_last", "bf16", "channels_last_bf16", "compile")
        }
    },
    "gpu": {},
}
for (kind, family), measured in _MEASURED_STEPS.items():
    ASSUMED_STEP[kind][family] = _as_multiples(*measured)
del kind, family, measured
# Seconds to compile (compile) or capture (cuda_graph) a case's batch shapes, where no run of the
# machine measured it: 19 s to compile a training step's first shape on the 2-core VM (inductor's
# cache empty; 1-3 s once cached), taken for any machine (on the H100 host the first compile of
# a process, CPU inference, took 79 s cold, the CPU training step's 15 s, the graph of the GPU's
# compiled step 16 s); inference compiles the forward only, taken as half; a CUDA graph's
# capture as a second (a few warm-up steps and one capture).
ASSUMED_PREPARE_S = {
    "compile": {"train": 19.0, "inference": 10.0},
    "cuda_graph": {"train": 1.0, "inference": 1.0},
    "compile_cuda_graph": {"train": 19.0},
}


@dataclass(frozen=True)
class Observation:
    """One measured case, reduced to what predicts a case like it."""

    family: str
    device: str
    threads: int | None
    variant: tuple
    size: int
    round_s: float  # the median round
    images: int | None  # images per round (train, inference); None for copies
    # what the case cost besides warm-up, sample, rounds, prepare, breakdown
    overhead_s: float | None = None
    prepare_s: float | None = None  # compiling or capturing its batch shapes (ladder steps that do)
    profile_s: float | None = None  # its profiled epoch (train, at the ladder's batch size)
    profile_images: int | None = None  # the images that profiled epoch ran over
    # The model it ran, by its label (format 8: name, input shape, classes; none named: the notes' CNN).
    # Another model's cases are predicted from its own alone, never from the CNN's or from its own at
    # another shape: a model never measured here is "not predictable" until its first cases finish.
    model: str = CNN_MODEL

    @property
    def key(self) -> tuple:
        return (self.family, self.model, self.device, self.threads, self.variant, self.size)


def _telling(run: fmt.Run) -> tuple[int, str]:
    """How much a run tells of a full run's costs (0 quick, 1 stopped, 2 complete), then its date."""
    ours = run.ours
    if ours.plan is not None and ours.plan.quick:
        rank = 0
    else:
        rank = 1 if ours.run is not None and ours.run.complete is False else 2
    return rank, str(run.datetime or "")


def machine_of(run: dict) -> str:
    """The machine a run was made on: fmnist-bench's key, else pytest-benchmark's node name."""
    read = fmt.read_run(run)
    info = read.machine_info or fmt.MachineInfo()
    return str(read.ours.machine_key or info.node or "unknown machine")


def _variant(family: str, params: dict) -> tuple:
    """A planned case's variant: its params as the plan names them."""
    return tuple(params.get(axis, _DEFAULT_AXIS.get(axis)) for axis in VARIANT_AXES[family])


def _saved_variant(family: str, params: fmt.Params) -> tuple:
    """A saved case's variant, as _variant names a planned one's."""
    axes = ((axis, getattr(params, axis)) for axis in VARIANT_AXES[family])
    return tuple(_DEFAULT_AXIS.get(axis) if value is None else value for axis, value in axes)


def _model_of(info: fmt.ModelInfo | None) -> str:
    """A case's model as the estimate keys it: its label, as tables name it (none: the notes' CNN)."""
    return (info.shown if info is not None else None) or CNN_MODEL


def observation(record: dict, default_threads: int | None = None) -> Observation | None:
    """An Observation from one benchmark of a saved run (pytest-benchmark's JSON), or None if it has no time."""
    case = fmt.Benchmark.read(record)
    family = case.group
    params = case.params or fmt.Params()
    stats = case.stats or fmt.Stats()
    median = stats.median
    size = getattr(params, SIZE_AXIS[family]) if family in FAMILIES and family != "limits" else 0
    if family not in FAMILIES or median is None or not median > 0 or size is None:
        return None
    extra = case.extra
    # format 1 ran every case at torch's default
    threads = params.cpu_threads if params.cpu_threads is not None else default_threads
    step = extra if isinstance(extra, fmt.StepExtra) else None
    prepared = step.prepare.seconds if step is not None and step.prepare is not None else None
    images = step.images if step is not None else None
    breakdown = (extra.breakdown if isinstance(extra, fmt.TrainExtra) else None) or fmt.Breakdown()
    profile_images = breakdown.images
    if not (profile_images is not None and profile_images > 0):
        profile_images = None
    profile_s = breakdown.wall_s if profile_images else None  # what the whole profile cost
    profile_s = float(profile_s) if profile_s is not None and profile_s >= 0 else None
    overhead = None
    wall = extra.wall_s
    if wall is not None:
        warm = extra.warmup.seconds if extra.warmup and extra.warmup.seconds is not None else 0.0
        latency = extra.latency if isinstance(extra, fmt.InferenceExtra) else None
        sample = (
            sum(latency.batch_times_s or [])
            if latency is not None and latency.source == "sample"
            else 0.0
        )
        # The ladder's compile or capture, and its profile, are predicted on their own.
        prepare = prepared if prepared is not None else 0.0
        rest = max(wall - warm - sample - prepare - (stats.total or 0.0), 0.0)
        if profile_s is not None:
            overhead = max(rest - profile_s, 0.0)
        elif profile_images and breakdown.epoch_s is not None:
            # A run from before the profile's own wall time was saved: the profiler's processing
            # of its events is in the case's rest, far larger than its epoch_s (the H100 host's
            # GPU seed case: 1.7 s of epoch, 37 s of rest). The rest is taken as the profile's,
            # and the case's overhead as unmeasured.
            profile_s = rest
        else:
            overhead = rest
    return Observation(
        family=family,
        device=str(params.device or "cpu"),
        threads=threads if isinstance(threads, int) else None,
        variant=_saved_variant(family, params),
        size=size,
        round_s=float(median),
        images=images if images is not None and images > 0 else None,
        overhead_s=overhead,
        prepare_s=float(prepared) if prepared is not None else None,
        profile_s=profile_s,
        profile_images=profile_images if profile_s is not None else None,
        model=_model_of(extra.model),
    )


@dataclass
class Profile:
    """Measured round times to predict from: saved runs first, then each case as it finishes."""

    observations: dict[tuple, Observation] = field(default_factory=dict)
    outside_s: float | None = None
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_runs(cls, runs: Iterable[tuple[str, dict]]) -> Profile:
        """A profile from one machine's (name, saved run) pairs.

        Every case is taken from the most telling run that has it: a complete full run over a
        stopped one over a quick one (whose 2,000-image epochs say little of a 60,000-image
        one), the newest among equals. The time outside the cases comes from complete full
        runs only: a stopped run counts the case it cut short there.
        """
        profile = cls()
        read = [(name, fmt.read_run(run)) for name, run in runs]
        for name, typed in sorted(read, key=lambda item: _telling(item[1])):
            info = typed.machine_info or fmt.MachineInfo()
            threads = info.torch.threads if info.torch is not None else None
            for record in typed.benchmarks if isinstance(typed.benchmarks, list) else []:
                if isinstance(record, dict) and (obs := observation(record, threads)) is not None:
                    profile.add(obs)
            outside = typed.ours.run.outside_cases_s if typed.ours.run is not None else None
            if outside is not None and _telling(typed)[0] == 2:
                profile.outside_s = float(outside)
            profile.sources.append(name)
        return profile

    def add(self, obs: Observation) -> None:
        self.observations[obs.key] = obs

    def outside(self) -> tuple[float, bool]:
        """(seconds a run spends outside its cases, measured?): imports, data, weights, saving."""
        if self.outside_s is not None:
            return self.outside_s, True
        return ASSUMED_OUTSIDE_S, False

    def overhead_s(self, family: str, params: dict | None = None) -> tuple[float, bool]:
        """(per-case overhead, measured?): the case's own where it was measured (a copy's buffers
        grow with its size), else the family's median, else the assumption."""
        if params is not None:
            threads = params.get("cpu_threads") if params.get("device") == "cpu" else None
            for obs in self.observations.values():
                same = (
                    obs.family == family
                    and obs.model == params.get("model", CNN_MODEL)
                    and obs.device == params.get("device")
                    and obs.variant == _variant(family, params)
                )
                if (
                    same
                    and obs.size == params.get(SIZE_AXIS[family], 0)
                    and obs.overhead_s is not None
                ):
                    if threads is None or obs.threads == threads:
                        return obs.overhead_s, True
        seen = [
            o.overhead_s
            for o in self.observations.values()
            if o.family == family and o.overhead_s is not None
        ]
        if seen:
            return statistics.median(seen), True
        return ASSUMED_OVERHEAD_S[family], False

    def round_s(
        self, family: str, params: dict, images: int | None, loader_workers: int = 1
    ) -> tuple[float | None, bool]:
        """(predicted seconds of one round, exact?): None where nothing like the case was measured.

        A ladder step never measured on this machine is predicted from the step it is assumed
        to be a multiple of (ASSUMED_STEP), never exact."""
        measured, exact = self._measured_round_s(family, params, images)
        if measured is not None or "pipeline" not in params:
            return measured, exact
        if family == "train" and params["pipeline"] == "loader":
            seed, _ = self._measured_round_s(family, {**params, "pipeline": "seed"}, images)
            resident, _ = self._measured_round_s(family, {**params, "pipeline": "resident"}, images)
            if seed is None or resident is None:
                return None, False
            return resident + max(seed - resident, 0.0) / max(loader_workers, 1), False
        kind = "cpu" if params["device"] == "cpu" else "gpu"
        assumed = ASSUMED_STEP[kind].get(family, {}).get(params["pipeline"])
        if assumed is None:
            return None, False
        base, ratio = assumed
        measured, _ = self._measured_round_s(family, {**params, "pipeline": base}, images)
        return (measured * ratio if measured is not None else None), False

    def profile_s(self, family: str, params: dict, images: int) -> float | None:
        """Seconds the case's profile over `images` images costs, from its own measured one, or None.

        The profile's cost is not an epoch's: the profiler processes every event after the epoch,
        and the seed pipeline's per-image ops are many (on the H100 host 10,000 seed images cost
        about 37 s of profile on the GPU, against 0.93 s for a sixth of a timed epoch)."""
        for obs in self.observations.values():
            if obs.key == _key(family, params) and obs.profile_s is not None:
                return obs.profile_s * images / obs.profile_images
        return None

    def prepare_s(self, family: str, params: dict) -> float:
        """Seconds to compile or capture the case's shapes: measured for this case, else assumed (0 for other steps)."""
        pipeline = params.get("pipeline")
        if pipeline not in ASSUMED_PREPARE_S:
            return 0.0
        for obs in self.observations.values():
            if obs.key == _key(family, params) and obs.prepare_s is not None:
                return obs.prepare_s
        return ASSUMED_PREPARE_S[pipeline][family]

    def _measured_round_s(
        self, family: str, params: dict, images: int | None
    ) -> tuple[float | None, bool]:
        device = params["device"]
        same = [
            o
            for o in self.observations.values()
            if o.family == family
            and o.model == params.get("model", CNN_MODEL)
            and o.device == device
            and o.variant == _variant(family, params)
        ]
        if not same:
            return None, False
        exact = True
        if device == "cpu":
            wanted = params.get("cpu_threads")
            counts = {o.threads for o in same if o.threads is not None}
            if wanted not in counts and counts:
                # The nearest thread count measured, by ratio: 4 is nearer 2 than 16 is.
                wanted = min(
                    counts,
                    key=lambda n: abs(math.log(n) - math.log(params.get("cpu_threads") or n)),
                )
                exact = False
            same = [o for o in same if o.threads == wanted] or same
        size = params[SIZE_AXIS[family]] if family != "limits" else 0
        if family in ("limits", "transfer"):
            match = [o for o in same if o.size == size]
            if match:
                return match[0].round_s, exact
            return loglog_interp([o.size for o in same], [o.round_s for o in same], size), False
        # Per image, so a run over other images (a quick run's subsets) still predicts.
        per_image = [(o.size, o.round_s / o.images) for o in same if o.images]
        if not per_image:
            return None, False
        match = [p for s, p in per_image if s == size]
        value = (
            match[0]
            if match
            else loglog_interp([s for s, _ in per_image], [p for _, p in per_image], size)
        )
        same_images = any(o.size == size and o.images == images for o in same)
        return value * images, exact and bool(match) and same_images


def _key(family: str, params: dict) -> tuple:
    threads = params.get("cpu_threads")
    return (
        family,
        params.get("model", CNN_MODEL),
        params.get("device"),
        threads,
        _variant(family, params),
        params.get(SIZE_AXIS[family], 0),
    )
