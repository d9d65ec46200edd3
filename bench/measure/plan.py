"""What one run measures: the suite's defaults, its options checked and parsed, and the case matrix."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace

import torch

from bench.format.devices import device_kind
from bench.format.names import (
    CNN_MODEL,
    FAMILIES,
    FAMILY_LADDERS,
    INFERENCE_LADDER,
    TRAIN_LADDER,
)
from bench.measure.devices import available_devices
from fmnist_model import DEFAULT_ROOT
from fmnist_model.models import ModelSpec

__all__ = [
    "ALL_PIPELINES",
    "COMPILING",
    "DEFAULT_PIPELINES",
    "Budget",
    "MAX_MODEL_BYTES",
    "MAX_MODEL_IMAGES",
    "QUICK_TEST_IMAGES",
    "QUICK_TRAIN_IMAGES",
    "LatencySample",
    "ModelPlan",
    "Plan",
    "bounded_images",
    "plan_from_options",
]

# The optimisation ladder of each family (fmnist_model.ladder says what each step runs).
PIPELINES = FAMILY_LADDERS
# The steps that compile with torch.compile: left out unless asked for (--pipelines all, or by
# name). A cold compile is the larger part of their case: on the H100 host's 16-core CPU the
# first (CPU inference) took 79 s and the CPU training step 15 s more, and none paid by more
# than 1.39x (CPU inference) while with them the default run did not fit in 5 minutes.
COMPILING = ("compile", "compile_cuda_graph")
# What a run measures unless --pipelines says otherwise: every step of both ladders but those.
DEFAULT_PIPELINES = tuple(
    p for p in dict.fromkeys(TRAIN_LADDER + INFERENCE_LADDER) if p not in COMPILING
)
ALL_PIPELINES = tuple(dict.fromkeys(TRAIN_LADDER + INFERENCE_LADDER))
# The cheap steps, run at every batch size and thread count by default: the notes' loop and the
# resident epoch (train), inference under inference_mode (the suite's inference before the ladder).
BASE_PIPELINES = {"train": ("seed", "resident"), "inference": ("inference_mode",)}
# Where the whole ladder runs by default: batch size 1,000, the measured ladder and its
# goals (the H100's fastest epoch under 20 ms, 200x seed; the CPU's 4x seed) are at 1,000.
# Each step costs a case per batch size (compile: 19 s a shape to compile on the 2-core VM), so
# the other sizes get the cheap steps; --ladder full runs every step at every size.
LADDER_BATCH_SIZE = 1000
LADDERS = ("default", "full")
MODES = ("compute", "end_to_end")
DTYPES = ("float32", "uint8")
# Upper bounds for numbers from the command line: past them a value is a typo, not a plan.
# Threads: the largest CPUs have a few hundred. A batch size larger than a split means one
# batch (allowed), up to what a 32-bit index holds; past it torch and itertools fail deep down.
MAX_CPU_THREADS = 1024
MAX_BATCH_SIZE = 2**31 - 1
MAX_MIN_ROUNDS = 1_000_000
MAX_CASE_TIME = 86_400  # seconds: a day a case
MAX_DOWNLOAD_TIMEOUT = 3_600  # seconds a reply
# The rounds ceiling once --benchmark-max-time is given: the time asked for rules, up to a
# saved run of a few megabytes.
LIFTED_MAX_ROUNDS = 10_000


@dataclass(frozen=True)
class Budget:
    """How many timed rounds a case gets: pytest-benchmark's rule, with a ceiling.

    At least `min_rounds`; more while they fit in `max_time` seconds (as pytest-benchmark's
    --benchmark-min-rounds and --benchmark-max-time do); never more than `max_rounds`, so a
    20-microsecond copy does not write 50,000 round times into the saved run.
    """

    min_rounds: int
    max_time: float
    max_rounds: int

    def rounds_for(self, round_s: float) -> int:
        """Rounds for a case whose one round is estimated to take `round_s` seconds."""
        floor = self.min_rounds
        if not round_s > 0 or not math.isfinite(round_s):
            return floor
        return max(floor, min(self.max_rounds, math.ceil(self.max_time / round_s)))


@dataclass(frozen=True)
class LatencySample:
    """The bounded sample of single inference batches timed for per-batch latency percentiles."""

    min_batches: int = 10  # fewer says little about a p90
    max_batches: int = 200  # enough for a p99 with two samples beyond it
    max_time: float = 0.25  # seconds; the min_batches still run when one batch is slower


# Full runs: an epoch takes seconds, so a median of 3 and stop; a copy takes microseconds, so many
# rounds within a tenth of a second. Measured costs behind these: docs/findings.md "How long it
# takes".
FULL_BUDGETS = {
    # A limit's round is a millisecond to tens of them: a fifth of a second each, a few seconds a
    # device.
    "limits": Budget(min_rounds=5, max_time=0.2, max_rounds=50),
    "transfer": Budget(min_rounds=5, max_time=0.1, max_rounds=100),
    "inference": Budget(min_rounds=3, max_time=0.5, max_rounds=50),
    "train": Budget(min_rounds=3, max_time=1.0, max_rounds=20),
}
# A quick run's subsets of the CNN's splits: a smoke run, not a figure to compare with a full one.
QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES = 2000, 1000
QUICK_BUDGETS = {family: Budget(min_rounds=1, max_time=0.0, max_rounds=1) for family in FAMILIES}


# Bounded work for a model other than the notes' CNN (--model): the images of its epoch are chosen from
# the forward FLOPs an image torch's counter finds, the same on every device and every machine, so that
# speedups compare the same work and a default run stays within its budget on a small machine. An
# epoch's training work is about 3 forward passes an image (the backward pass computes two products
# for each of the forward's); 1 TFLOP of it is about 6 s an epoch on the 2-core VM (resnet18 at
# 3x64x64: 0.30 GFLOP forward an image, 170 images/s trained at batch 100, measured by hand), 1,000
# images. The CNN's whole epoch is 73 GFLOP as torch counts it (fmnist_model/work.py), well within. A test pass is a sixth of that: 500 images
# of resnet18 at 64x64. A quick run does a fifth of each.
EPOCH_TRAIN_FLOPS = 1e12
PASS_FLOPS = EPOCH_TRAIN_FLOPS / 6
TRAIN_FLOPS_PER_FORWARD = 3
QUICK_SHARE = 5
# An epoch is never fewer images than this: one batch at the notes' batch size.
MIN_MODEL_IMAGES = 100
# Nor more than this, however small the model: FakeData makes each image as it is read (a seeded
# random image through PIL, about 0.8 ms on the 2-core VM), so the notes' loop over 60,000 of them
# took 49 s an epoch for a 1,514-parameter model (tests/tiny_model.py). The CNN keeps its 60,000.
MAX_MODEL_IMAGES = 10_000
# Nor more than a GiB of its images as uint8 (the resident steps keep them on the device, and the
# DataLoader's float copies of a batch are 4x a batch of them): a light model at a large shape would
# otherwise hold 10,000 of them (at 3x1024x1024, 31 GB).
MAX_MODEL_BYTES = 2**30


def bounded_images(work_per_image: float, budget: float, most: int) -> int:
    """Images within `budget` FLOPs at `work_per_image` each, rounded down to one significant digit (1,000, not
    1,126: a count a reader can hold), at least MIN_MODEL_IMAGES, and at most `most` (a bound of its own,
    taken as it is: fewer than MIN_MODEL_IMAGES where the images' bytes bound it)."""
    if not work_per_image > 0:
        return most
    n = budget / work_per_image
    if n >= most:
        return most
    if n < MIN_MODEL_IMAGES:
        return min(MIN_MODEL_IMAGES, most)
    step = 10 ** math.floor(math.log10(n))
    return min(most, int(n // step * step))


@dataclass(frozen=True)
class ModelPlan:
    """One model of a run (--model) with the work it was given: its spec, what its trial pass counted, and the
    images of its epoch and its test pass (None: the whole split, as the CNN's are)."""

    name: str  # as given to --model
    label: str  # bench/format/names.py model_label: name, input shape, classes
    input_shape: tuple[int, int, int]
    classes: int
    parameters: int
    flops_per_image: float  # forward, by torch's flop counter
    train_images: int | None
    test_images: int | None

    @property
    def is_cnn(self) -> bool:
        return self.name == CNN_MODEL

    @property
    def spec(self) -> ModelSpec:
        """What builds it (fmnist_model/models.py)."""
        return ModelSpec(self.name, self.input_shape, self.classes)

    def record(self) -> dict:
        """extra_info.model of its cases and the plan's models entry (bench/format/records.py ModelInfo)."""
        return {
            "name": self.name,
            "label": self.label,
            "parameters": self.parameters,
            "flops_per_image": self.flops_per_image,
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "train_images": self.train_images,
            "test_images": self.test_images,
        }

    def fits(self, sizes: tuple[int, ...], images: int | None) -> tuple[int, ...]:
        """The batch sizes (or copy sizes) of `sizes` that an epoch of `images` holds whole (the smallest when none
        does): a batch larger than the epoch would be the epoch again under another name."""
        if images is None or not sizes:
            return sizes
        fitting = tuple(n for n in sizes if n <= images)
        return fitting or (min(sizes),)


@dataclass(frozen=True)
class Plan:
    """Every knob of a run in one typed place; each default says why it is what it is."""

    devices: tuple[str, ...]
    dataset_name: str  # the data really used: "fashion-mnist" or "synthetic"
    # torch's own intra-op thread count on this machine: the CPU as most people run it.
    default_threads: int
    dataset: str = "auto"  # what was asked for
    data_root: str = str(DEFAULT_ROOT)
    download: bool = False
    quick: bool = False
    # The notes train at 100; 1,000 and 10,000 show where a GPU's width starts to pay.
    train_batch_sizes: tuple[int, ...] = (100, 1000, 10_000)
    # From one image at a time (latency) to the whole test split in one batch (throughput).
    inference_batch_sizes: tuple[int, ...] = (1, 10, 100, 1000, 10_000)
    # One image, a batch, a large batch, a sixth of the set, the whole training set.
    transfer_sizes: tuple[int, ...] = (1, 100, 1000, 10_000, 60_000)
    # None: the whole split (60,000 / 10,000 images), as an epoch and a test pass really are.
    train_images: int | None = None
    test_images: int | None = None
    # CPU intra-op threads per family. None: 1 and torch's default for inference and copies (at
    # batch size 1 the H100 host's CPU did 619 images/s at torch's 16 threads where the 2-core VM
    # did 2,872: small batches do not feed many threads), torch's default alone for training
    # (a second thread count doubles the run's largest cost).
    cpu_threads: tuple[int, ...] | None = None
    budgets: dict[str, Budget] = field(default_factory=lambda: dict(FULL_BUDGETS))
    # Warm-up: this many batches (plus one of the epoch's last, smaller shape), not a whole
    # epoch: the first CUDA calls, cuDNN's choice per shape, the allocator's growth and the
    # DataLoader's start all happen in the first batches. None: a whole epoch or pass.
    warmup_batches: int | None = 2
    # An inference round is one pass over the test split, or over its first `pass_batches`
    # batches when it has more (batch sizes under 10): at batch size 1 the H100 host's CPU took
    # 1.6 s per 1,000 images (16 s a pass), and on the 2-core VM passes of 1,000 and 10,000
    # single images gave the same images/s within noise (8,100-8,400 and 7,400-8,400, interleaved).
    pass_batches: int = 1000
    latency: LatencySample = LatencySample()
    # The pipelines run, of either family's ladder (--pipelines): every step but the compiling ones.
    pipelines: tuple[str, ...] = DEFAULT_PIPELINES
    # "default": the whole ladder at one batch size, the cheap steps everywhere; "full": the cross
    # product.
    ladder: str = "default"
    # One extra, untimed epoch under torch.profiler per training case at the ladder's batch size:
    # where its time goes, by phase (an epoch's cost: 8 s for the seed pipeline on the 2-core VM).
    breakdown: bool = True
    # The profiled epoch runs over the first this many images, not all 60,000: the profiler keeps an
    # event per op, and the seed pipeline's per-image PIL + ToTensor ops made a whole profiled epoch
    # hold 8.0 GB (peak RSS, 2-core VM) and take 80 s. 10,000 images are 10 batches at the ladder's
    # batch size of 1,000, 100 at 100: the phases' shares of an epoch, which is what it is for.
    profile_images: int = 10_000
    # The DataLoader pipelines' profiled epoch: their per-image ops make the profiler slow (on the
    # H100 host a profiled seed epoch of 10,000 images took about 25 s on the CPU and 35 s on the
    # GPU, more than its three timed epochs): 3,000 images, 3 batches at 1,000, 30 at 100.
    profile_loader_images: int = 3_000
    # The models measured (--model), each with its bounded work. Empty: the notes' CNN alone, whose cases
    # name no model (the ids and saved fields a run always had).
    models: tuple[ModelPlan, ...] = ()

    @classmethod
    def quick_plan(cls, **kw) -> Plan:
        """The smoke run: small subsets, a short sweep and one timed round, well under a minute on 2 cores."""
        defaults = dict(
            quick=True,
            train_batch_sizes=(100, 1000),
            inference_batch_sizes=(1, 100, 1000),
            transfer_sizes=(1, 1000, 60_000),
            train_images=QUICK_TRAIN_IMAGES,
            test_images=QUICK_TEST_IMAGES,
            budgets=dict(QUICK_BUDGETS),
            latency=LatencySample(min_batches=3, max_batches=20, max_time=0.05),
        )
        if kw.get("pipelines") is None:
            kw.pop("pipelines", None)
        return cls(**{**defaults, **kw})

    def batch_sizes(self, family: str, model: ModelPlan | None = None) -> tuple[int, ...]:
        """The family's batch sizes, for `model` those its bounded epoch or pass holds whole."""
        if family == "train":
            sizes = self.train_batch_sizes
            images = model.train_images if model is not None else None
        elif family == "inference":
            sizes = self.inference_batch_sizes
            images = model.test_images if model is not None else None
        else:
            raise ValueError(f"family {family!r} has no batch sizes")
        return sizes if model is None or model.is_cnn else model.fits(sizes, images)

    def transfer_sizes_for(self, model: ModelPlan | None = None) -> tuple[int, ...]:
        """The copy sizes: for a model but the CNN those up to its epoch, and its epoch's images."""
        if model is None or model.is_cnn:
            return self.transfer_sizes
        fitting = model.fits(self.transfer_sizes, model.train_images)
        return tuple(sorted({*fitting, model.train_images}))

    def ladder_batch_sizes(self, family: str, model: ModelPlan | None = None) -> tuple[int, ...]:
        """The batch sizes at which every step of the family's ladder runs (all of them with --ladder full)."""
        sizes = self.batch_sizes(family, model)
        if self.ladder == "full" or not sizes:
            return sizes
        # The size nearest 1,000 by ratio when 1,000 is not swept (--batch-sizes).
        return (min(sizes, key=lambda n: (abs(math.log(n / LADDER_BATCH_SIZE)), n)),)

    def pipelines_for(
        self,
        family: str,
        batch_size: int,
        threads: int,
        mode: str | None = None,
        model: ModelPlan | None = None,
    ) -> tuple[str, ...]:
        """The pipelines a case of `family` runs at this batch size, CPU thread count and (inference) mode."""
        chosen = [p for p in PIPELINES[family] if p in self.pipelines]
        if self.ladder == "full":
            return tuple(chosen)
        # Beyond the cheap steps: at the ladder's batch size, torch's default threads, compute only.
        whole = (
            batch_size in self.ladder_batch_sizes(family, model)
            and threads == self.default_threads
            and mode in (None, "compute")
        )
        return tuple(p for p in chosen if whole or p in BASE_PIPELINES[family])

    def breakdown_for(self, batch_size: int, model: ModelPlan | None = None) -> bool:
        """Whether a training case at `batch_size` profiles one extra, untimed epoch."""
        return self.breakdown and batch_size in self.ladder_batch_sizes("train", model)

    def model(self, name: str | None) -> ModelPlan | None:
        """The model of that name (None, or the CNN of a run of the CNN alone: None)."""
        if name is None:
            return None
        found = next((m for m in self.models if m.name == name), None)
        if found is None and name != CNN_MODEL:
            raise ValueError(f"this run measures no model {name!r}")
        return found

    def threads_for(self, family: str) -> tuple[int, ...]:
        """The CPU thread counts a family's cpu cases run at."""
        if self.cpu_threads is not None:
            return self.cpu_threads
        if family == "train":
            return (self.default_threads,)
        # limits: every thread count a case is held against (inference and copies run at both).
        return tuple(dict.fromkeys((1, self.default_threads)))

    def cases(self, family: str) -> list[dict]:
        """Every case of `family`: its params, keyed and ordered by FAMILY_AXES[family], after its model where the run
        names models (--model; never for the limits, which are the device's)."""
        if not self.models or family == "limits":
            return self._cases(family, None)
        return [
            {"model": model.name, **case}
            for model in self.models
            for case in self._cases(family, model)
        ]

    def _cases(self, family: str, model: ModelPlan | None) -> list[dict]:
        out = []
        for device in self.devices:
            # Only the CPU's own cases sweep its threads; a GPU case runs at torch's default.
            for threads in (
                self.threads_for(family) if device_kind(device).host else (self.default_threads,)
            ):
                base = {"device": device, "cpu_threads": threads}
                if family == "limits":
                    out += [
                        {**base, "limit": limit, "dtype": dtype}
                        for limit, dtype in _limit_cases(device)
                    ]
                elif family == "transfer":
                    out += [
                        {
                            **base,
                            "direction": direction,
                            "memory": memory,
                            "size": size,
                            "dtype": dtype,
                        }
                        for direction, memory in device_kind(device).routes
                        for size in self.transfer_sizes_for(model)
                        for dtype in DTYPES
                    ]
                elif family == "inference":
                    out += [
                        {**base, "batch_size": bs, "mode": mode, "pipeline": pipeline}
                        for bs in self.batch_sizes(family, model)
                        for mode in MODES
                        for pipeline in self.pipelines_for(family, bs, threads, mode, model)
                    ]
                elif family == "train":
                    out += [
                        {**base, "batch_size": bs, "pipeline": pipeline}
                        for bs in self.batch_sizes(family, model)
                        for pipeline in self.pipelines_for(family, bs, threads, model=model)
                    ]
                else:
                    raise ValueError(f"unknown family {family!r}")
        return out

    def summary(self) -> dict:
        """What the saved run records about the plan it ran (the data is recorded on its own)."""
        data = {"dataset", "dataset_name", "data_root", "download", "models"}
        out = {key: _plain(v) for key, v in asdict(self).items() if key not in data}
        out["cpu_threads"] = {family: list(self.threads_for(family)) for family in FAMILIES}
        if self.models:  # (a run of the CNN alone saves the plan it always did)
            out["models"] = [model.record() for model in self.models]
        return out


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _limit_cases(device: str) -> list[tuple[str, str]]:
    """(limit, dtype) of every limits case on `device`: a graph where CUDA graphs capture its kernels, a copy within
    its memory where it has its own (the CPU's bandwidth is the transfer family's host-to-host
    copy)."""
    kind = device_kind(device)
    out = [("operation", "float32")]
    if kind.graphs:
        out.append(("operation_graph", "float32"))
    out += [("matmul", "float32"), ("matmul", "bfloat16")]
    if kind.own_memory:
        out.append(("device_copy", "float32"))
    return out


def plan_from_options(
    *,
    devices: tuple[str, ...] | None,
    batch_sizes: tuple[int, ...] | None,
    quick: bool,
    dataset: str,
    data_root: str | os.PathLike,
    download: bool,
    dataset_name: str,
    default_threads: int | None = None,
    cpu_threads: tuple[int, ...] | None = None,
    warmup_batches: int | None = 2,
    min_rounds: int | None = None,
    max_time: float | None = None,
    pipelines: tuple[str, ...] | None = None,
    ladder: str = "default",
    models: tuple[ModelPlan, ...] = (),
) -> Plan:
    """A Plan from parsed option values; None takes the default.

    `min_rounds` and `max_time` (pytest-benchmark's --benchmark-min-rounds and
    --benchmark-max-time, when given) replace those of every family's budget.
    """
    kw: dict = dict(
        devices=devices or available_devices(),
        dataset=dataset,
        dataset_name=dataset_name,
        data_root=str(data_root),
        download=download,
        default_threads=default_threads or torch.get_num_threads(),
        cpu_threads=cpu_threads,
        warmup_batches=warmup_batches,
        ladder=ladder,
        models=models,
    )
    if pipelines is not None:
        kw["pipelines"] = pipelines
    if batch_sizes:
        kw.update(train_batch_sizes=batch_sizes, inference_batch_sizes=batch_sizes)
    plan = Plan.quick_plan(**kw) if quick else Plan(**kw)
    if min_rounds is None and max_time is None:
        return plan
    budgets = {}
    for family, budget in plan.budgets.items():
        new_min = budget.min_rounds if min_rounds is None else min_rounds
        new_time = budget.max_time if max_time is None else max_time
        # Asked for more rounds or more time than the ceiling allows: the ceiling gives way.
        ceiling = max(budget.max_rounds, new_min, LIFTED_MAX_ROUNDS if max_time is not None else 0)
        budgets[family] = Budget(new_min, new_time, ceiling)
    return replace(plan, budgets=budgets)
