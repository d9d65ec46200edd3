"""The saved run as typed records: what fmnist-bench writes into pytest-benchmark's JSON and what every reader
takes from it, each field's type, bounds and meaning declared once, with the format's version and history.

A saved run is pytest-benchmark JSON, extended through its hooks, never forked. This module is the one
owner of it: the writers (the running session, the journal's recovery) build their parts with these
types, every reader (the rows of the report and the answer, compare, the estimate, the checks) reads
them through these types, the JSON Schema is made from them (bench/format/schema.py), and so is the
format's reference in docs/saved-runs.md (tests/test_docs.py keeps it so). Older formats are read as
they were written: a field a format did not have reads as None, and what a format got wrong is said
where it is read (bench/analysis/limits.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bench.format.fields import (
    Record,
    flag,
    integer,
    items,
    mapping,
    nested,
    number,
    raw,
    rest,
    text,
)
from bench.format.names import FAMILIES, FLOORS, LIMITS, model_label

__all__ = [
    "EXTRA",
    "DataUsed",
    "JournalHeader",
    "JournalNotes",
    "FORMAT_VERSION",
    "HISTORY",
    "Benchmark",
    "FmnistBench",
    "MachineInfo",
    "ModelInfo",
    "Run",
]

# Bumped when the saved-run format changes in a way a reader must know about; every version from 1 on is
# still read (a newer one is read as this one, with a warning).
FORMAT_VERSION = 8
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
    7: "work is counted as each pipeline runs it (fmnist_model/work.py): extra_info.work gains ops_fixed, "
    "ops_per_image and ops_per_epoch (a step's operations at any batch size, those more per image of its batch, and "
    "an epoch's or pass's own, once; format 6 counted the resident step's operations for every pipeline, the "
    "epoch's own included) and copies (each copy between host and device the case makes: direction, memory, bytes, "
    "count; format 6 charged a DataLoader batch one copy for its images and labels, and an inference batch a copy "
    "back where the labels come back once); ops_per_step is the case's own at its batch size. extra_info.limits "
    "gains distrusted (per floor: the limit it is built on, why it is not trusted, and whether a case contradicted "
    "it by running faster than the floor; a limit measured while the machine was busy is not trusted either), and "
    "binding is the highest floor among the trusted ones. A limits case's matmul work gains search (each side "
    "tried, with its fastest of several products, and why the search stopped). A reader of a format-6 run takes "
    "its DataLoader pipelines' per-operation floor, and on a GPU their and end-to-end inference's copies floor, as "
    "not trusted.",
    8: "any model (--model): a run that names models gives every case but a limits one params model (the name as "
    "given: cnn, torchvision:NAME or module.path:callable) and extra_info.model (its name, label, parameters, "
    "forward FLOPs an image by torch's flop counter, input shape, classes, and the images of its epoch and test "
    "pass), and its plan gains models (the same, a model each); a model but the CNN trains on torchvision's "
    "FakeData (extra_info.dataset fakedata). A case without a model is the notes' CNN: a run of the CNN alone "
    "is saved as format 7 saved it.",
}

# Bounds of what a real machine's figures can be: past them a figure is a broken file, not a fast or a slow
# machine. A time: a nanosecond to a week (no case of this suite, a one-image copy or a 60,000-image epoch,
# takes less or more; JSON can carry 5e-324 and 1e308). Counts: what a 53-bit float holds whole. A batch: what a
# 32-bit index holds (bench/measure/plan.py MAX_BATCH_SIZE). Energy: a node of eight 1 kW GPUs for a day is
# under 1e9 J, and a microjoule is below any counter's resolution (0 is "no reading": a counter that did not
# move). FLOPs: a zettaFLOP a round; FLOP/s: an exaFLOP/s is beyond any device; an operation's cost: a
# nanosecond to an hour.
SECONDS = (1e-9, 7 * 86400)
SPAN = (0, 7 * 86400)  # a time that may be 0 (a phase a profiled epoch did not enter)
COUNT = 2**53
BATCH = (1, 2**31 - 1)
JOULES = (1e-6, 1e9)
WATTS = (0, 100_000)
FLOPS, FLOP_S, OPS = 1e21, 1e18, 1e15
DEVICE = (
    r"^(cpu|cuda(:[0-9]{1,3})?|mps)$"  # the devices the suite measures (bench/format/devices.py)
)


# ---------------------------------------------------------------- a benchmark's own parts (pytest-benchmark's)


@dataclass(frozen=True)
class ModelInfo(Record):
    """extra_info.model and each of the plan's models (format 8 on): which model a case ran and how large it is."""

    name: str | None = text(null=False, required=True, doc="as given to --model")
    label: str | None = text(doc="its name, input shape and classes, as tables name it")
    parameters: int | None = integer(0, COUNT, null=False)
    flops_per_image: float | None = number(
        0, FLOPS, null=False, doc="forward, by torch's flop counter"
    )
    input_shape: list | None = items(integer(1, 1_000_000, null=False), length=3, doc="C, H, W")
    classes: int | None = integer(1, 1_000_000_000)
    train_images: int | None = integer(1, COUNT, doc="an epoch's (null: the whole split)")
    test_images: int | None = integer(1, COUNT, doc="a test pass's (null: the whole split)")

    @property
    def shown(self) -> str | None:
        """How tables and the answer name the model: its label, else one made from its name, shape and classes
        (bench/format/names.py model_label); None without a name."""
        if not self.name:
            return None
        return self.label or model_label(self.name, self.input_shape, self.classes)


@dataclass(frozen=True)
class Params(Record):
    """params: every axis of a case (bench/format/names.py FAMILY_AXES), as its test id names them."""

    model: str | None = text(
        null=False, doc="the model, where the run named models (format 8 on; none: the notes' CNN)"
    )
    device: str | None = text(100, pattern=DEVICE, null=False, required=True, doc="what it ran on")
    cpu_threads: int | None = integer(1, 1024, doc="torch's intra-op threads (format 2 on)")
    batch_size: int | None = integer(
        *BATCH, null=False, doc="images a step or a batch (train, inference)"
    )
    size: int | None = integer(*BATCH, null=False, doc="images a copy moves (transfer)")
    direction: str | None = text(100, null=False, doc="h2d, d2h or h2h (transfer)")
    memory: str | None = text(100, null=False, doc="pageable or pinned host memory (transfer)")
    dtype: str | None = text(100, null=False, doc="float32, uint8 (transfer) or bfloat16 (limits)")
    mode: str | None = text(100, null=False, doc="compute or end_to_end (inference)")
    pipeline: str | None = text(
        100, null=False, doc="a step of the optimisation ladder (train, inference)"
    )
    limit: str | None = text(choices=LIMITS, null=False, doc="what a limits case measures")


@dataclass(frozen=True)
class Stats(Record):
    """stats: pytest-benchmark's figures of the timed rounds, in seconds; data is every round's time."""

    median: float | None = number(*SECONDS, null=False, required=True, doc="the case's figure")
    rounds: int | None = integer(1, COUNT, null=False, required=True, doc="timed rounds")
    min: float | None = number(0, SECONDS[1], null=False, doc="the fastest round: a limit's figure")
    max: float | None = number(0, SECONDS[1], null=False)
    mean: float | None = number(0, SECONDS[1], null=False)
    stddev: float | None = number(0, SECONDS[1], null=False)
    iqr: float | None = number(0, SECONDS[1], null=False)
    q1: float | None = number(0, SECONDS[1], null=False)
    q3: float | None = number(0, SECONDS[1], null=False)
    data: list | None = items(
        number(0, SECONDS[1], null=False), doc="every round's time (--benchmark-save-data)"
    )
    total: float | None = number(0, 1e12, doc="the rounds' sum")


# ---------------------------------------------------------------- the parts of a case's extra_info


@dataclass(frozen=True)
class Warmup(Record):
    """extra_info.warmup: what ran before the timed rounds (format 2 on)."""

    batches: int | None = integer(0, COUNT)
    images: int | None = integer(0, COUNT)
    copies: int | None = integer(0, COUNT)
    rounds: int | None = integer(0, COUNT)
    seconds: float | None = number(*SPAN, doc="its time, which estimated a round")


@dataclass(frozen=True)
class Budget(Record):
    """extra_info.budget: how the case's rounds were chosen (format 2 on)."""

    min_rounds: int | None = integer(1, COUNT)
    max_time: float | None = number(*SPAN)
    max_rounds: int | None = integer(1, COUNT)
    estimated_round_s: float | None = number(*SPAN)
    rounds: int | None = integer(1, COUNT)


@dataclass(frozen=True)
class Load(Record):
    """How busy the whole machine was with other work (format 5): around a case (extra_info.machine_load), or
    across the run (machine_info.fmnist_bench.load, with its spans)."""

    available: bool | None = flag(null=False, always=True, doc="false: /proc could not tell")
    reason: str | None = text(doc="why it could not tell")
    outside_share: float | None = number(
        0, 1, null=False, doc="other work's share of all the CPU time"
    )
    window_s: float | None = number(*SPAN)
    busy: bool | None = flag(null=False, doc="outside_share over busy_above (a tenth)")
    cpus: int | None = integer(1, COUNT)
    period_s: float | None = number(*SPAN)
    intervals: int | None = integer(0, COUNT, doc="the run's spans of at least 50 ticks")
    busy_intervals: int | None = integer(0, COUNT, doc="those of them that were busy")
    busiest_share: float | None = number(0, 1)
    busy_above: float | None = number(0, 1)


@dataclass(frozen=True)
class Energy(Record):
    """The CPU packages' energy across the timed rounds (RAPL)."""

    available: bool | None = flag(null=False)
    reason: str | None = text()
    energy_per_round_j: float | None = number(*JOULES, zero=True)
    mean_power_w: float | None = number(*WATTS)
    energy_per_1000_images_j: float | None = number(0, 1e15)
    images_per_j: float | None = number(0, 1e15)


@dataclass(frozen=True)
class HostCpu(Record):
    """How busy the CPU was across the timed rounds, by this process and by other work."""

    available: bool | None = flag(null=False)
    reason: str | None = text()
    busy: bool | None = flag(null=False)
    outside_share: float | None = number(0, 1)


@dataclass(frozen=True)
class HostTelemetry(Record):
    energy: Energy | None = nested(Energy)
    cpu: HostCpu | None = nested(HostCpu)
    minor_faults_per_round: float | None = number(0, 1e15, doc="fresh memory touched a round")
    peak_rss_bytes: int | None = integer(0, COUNT)


@dataclass(frozen=True)
class GpuTelemetry(Record):
    """What NVML reported of the case's GPU across its timed rounds."""

    available: bool | None = flag(null=False)
    reason: str | None = text()
    energy_per_round_j: float | None = number(*JOULES, zero=True)
    energy_reliable: bool | None = flag(null=False, doc="false: under 2 s of rounds, approximate")
    throttled: bool | None = flag(doc="NVML saw its clocks held down by power or heat")
    energy_per_1000_images_j: float | None = number(0, 1e15)
    images_per_j: float | None = number(0, 1e15)
    energy_source: str | None = text()
    mean_power_w: float | None = number(*WATTS)
    peak_power_w: float | None = number(*WATTS)


@dataclass(frozen=True)
class Telemetry(Record):
    """extra_info.telemetry: what the hardware did while the case was timed (format 3 on)."""

    state: str | None = text(null=False, doc="on, off, or not run")
    reason: str | None = text()
    flags: list | None = items(text(choices=("throttled", "busy"), null=False))
    period_s: float | None = number(*SPAN)
    samples: int | None = integer(0, COUNT)
    span_s: float | None = number(*SPAN)
    rounds: int | None = integer(0, COUNT)
    host: HostTelemetry | None = nested(HostTelemetry)
    gpu: GpuTelemetry | None = nested(GpuTelemetry)


@dataclass(frozen=True)
class Latency(Record):
    """extra_info.latency: single inference batches timed one at a time (format 2 on)."""

    p50_s: float | None = number(*SECONDS, null=False)
    p90_s: float | None = number(*SECONDS, null=False)
    p99_s: float | None = number(*SECONDS, null=False)
    mean_s: float | None = number(*SECONDS, null=False)
    samples: int | None = integer(0, COUNT, null=False)
    source: str | None = text(doc="sample: batches timed apart; rounds: each round was one batch")
    batch_times_s: list | None = items(number(0, SECONDS[1], null=False))


@dataclass(frozen=True)
class Prepare(Record):
    """extra_info.prepare: compiling or capturing a step's shapes before its rounds (format 3 on)."""

    seconds: float | None = number(*SPAN, null=False)
    compiled_shapes: list | None = items(integer(0, COUNT))
    captured_shapes: list | None = items(integer(0, COUNT))


@dataclass(frozen=True)
class Agreement(Record):
    """extra_info.agreement: an inference step's labels against the CPU's float32 ones (format 3 on)."""

    reference: str | None = text()
    share: float | None = number(0, 1, null=False)
    differ: int | None = integer(0, COUNT)
    matrix: list | None = raw("array", doc="the confusion matrix, rows the reference's label")


@dataclass(frozen=True)
class Op(Record):
    """One of a profiled epoch's costliest operations."""

    name: str | None = text()
    count: int | None = integer(0, COUNT)
    seconds: float | None = number(*SPAN)
    share: float | None = number(0, 1e6)


@dataclass(frozen=True)
class DeviceWork(Record):
    """What the GPU ran in a profiled epoch (CUDA): its operations and how busy they kept it."""

    ops: int | None = integer(0, COUNT)
    busy_s: float | None = number(*SPAN)
    busy_share: float | None = number(0, 1e6)
    top: list | None = items(Op)


@dataclass(frozen=True)
class HostWork(Record):
    """The CPU's costliest operations by their own time in a profiled epoch (CPU)."""

    top: list | None = items(Op)


_PHASE = number(*SPAN)


@dataclass(frozen=True)
class Breakdown(Record):
    """extra_info.breakdown: one extra, untimed epoch under torch.profiler, by phase (format 3 on)."""

    source: str | None = text()
    epoch_s: float | None = number(*SPAN)
    wall_s: float | None = number(*SPAN, doc="what the whole profile cost")
    loss: float | None = number(0, 1e6)
    images: int | None = integer(*BATCH, doc="the epoch's first images it covers")
    host_s: dict | None = mapping(_PHASE, doc="each phase's host time")
    device_s: dict | None = mapping(_PHASE, doc="each phase's kernels' span on the GPU (CUDA)")
    other_s: float | None = number(*SPAN)
    device_work: DeviceWork | None = nested(DeviceWork)
    host_work: HostWork | None = nested(HostWork)


@dataclass(frozen=True)
class Copy(Record):
    """One kind of copy between host and device a case makes, and how many times (format 7)."""

    direction: str | None = text(choices=("h2d", "d2h"), null=False, required=True)
    memory: str | None = text(choices=("pageable", "pinned"), null=False, required=True)
    bytes: int | None = integer(0, COUNT, null=False, required=True)
    count: int | None = integer(0, COUNT, null=False, required=True)


@dataclass(frozen=True)
class Work(Record):
    """extra_info.work of a training or inference case: its work counted as its pipeline runs it (format 6; the
    operations' parts and the copies format 7)."""

    flops_per_image: float | None = number(0, 1e15, doc="forward (and backward) FLOPs an image")
    ops_per_step: int | None = integer(
        0, 1e12, doc="operations a step of the case's batch size runs"
    )
    ops_fixed: int | None = integer(0, 1e12, doc="a step's operations at any batch size")
    ops_per_image: int | None = integer(0, 1e9, doc="and these more for each image of its batch")
    ops_per_epoch: int | None = integer(0, 1e12, doc="an epoch's or pass's own, once")
    copies: list | None = items(Copy, length=64, doc="each copy between host and device it makes")
    counted_on: object = raw(
        "array", "integer", doc="the batch sizes counted (format 6: the one batch size)"
    )
    counter: str | None = text(doc="what counted them")


@dataclass(frozen=True)
class LimitWork(Record):
    """extra_info.work of a limits case: what one round does (format 6)."""

    ops: int | None = integer(0, OPS, doc="operations (operation, operation_graph)")
    elements: int | None = integer(0, COUNT)
    flops: float | None = number(0, FLOPS, doc="a matrix product's FLOPs (matmul)")
    n: int | None = integer(*BATCH, null=False, doc="its side")
    float32_matmul_precision: str | None = text()
    search: dict | None = raw("object", doc="each side tried and why the search stopped (format 7)")
    bytes: int | None = integer(0, OPS, doc="bytes copied (device_copy)")


@dataclass(frozen=True)
class Distrust(Record):
    """Why a floor is not built on: the limit behind it and why the run does not trust it (format 7)."""

    limit: str | None = text()
    why: str | None = text()
    contradicted: bool | None = flag(doc="a case ran faster than the floor")


@dataclass(frozen=True)
class Held(Record):
    """extra_info.limits: a training or inference case held against its device's limits (format 6)."""

    flops: float | None = number(0, FLOPS)
    ops: float | None = number(0, OPS, always=True)
    ops_per_step: int | None = integer(0, 1e12, always=True)
    steps: int | None = integer(0, COUNT)
    achieved_flops_s: float | None = number(0, FLOP_S)
    peak_dtype: str | None = text()
    peak_flops_s: float | None = number(0, FLOP_S, always=True)
    peak_share: float | None = number(0, 1e6, always=True)
    operation_s: float | None = number(0, 3600, always=True)
    operation_kind: str | None = text(choices=("eager", "graph"))
    floors_s: dict | None = mapping(
        number(*SPAN, null=False), doc="what each limit alone says it must take"
    )
    distrusted: dict | None = mapping(
        Distrust, keys=FLOORS, doc="floors whose limit the run does not trust"
    )
    binding: str | None = text(choices=FLOORS, always=True, doc="the highest trusted floor")
    multiple: float | None = number(0, 1e9, always=True, doc="the time over that floor")
    source: str | None = text(name="from")


@dataclass(frozen=True)
class PipelineConfig(Record):
    """extra_info.pipeline_config: exactly what a ladder step ran (format 3 on; bench/format/names.py), as its
    readers take it: its precision, whether it replays a CUDA graph, where its data comes from and the loss
    it must reach (the rest of the step's knobs are kept as they were saved)."""

    precision: str | None = text(doc="float32, or bfloat16 under autocast")
    cuda_graph: bool | None = flag()
    data: str | None = text(doc="resident, or dataloader")
    loss_tolerance: float | None = number(0, 10, doc="how far its loss may be from seed's")
    knobs: dict = rest()


# ---------------------------------------------------------------- each family's extra_info


@dataclass(frozen=True)
class CaseExtra(Record):
    """What every case's extra_info holds, whatever its family."""

    warmup: Warmup | None = nested(Warmup)
    budget: Budget | None = nested(Budget)
    wall_s: float | None = number(*SPAN, doc="the case's call, warm-up and counting included")
    machine_load: Load | None = nested(Load)
    telemetry: Telemetry | None = nested(Telemetry)
    model: ModelInfo | None = nested(ModelInfo, doc="format 8 on, where the run named models")

    def marks(self) -> list[str]:
        """What the machine did while the case ran, as saved: throttled (its GPU's clocks held down by power
        or heat), busy (other work took over a tenth of the CPU: by its telemetry, or from format 5 by the
        run's load around it, which tells for a case too short for its own)."""
        flags = [
            f
            for f in ((self.telemetry.flags if self.telemetry else None) or [])
            if f in ("throttled", "busy")
        ]
        if self.machine_load is not None and self.machine_load.busy and "busy" not in flags:
            flags.append("busy")
        return flags


@dataclass(frozen=True)
class LimitsExtra(CaseExtra):
    """A limits case's extra_info: what one round did."""

    work: LimitWork | None = nested(LimitWork, null=False, required=True)


@dataclass(frozen=True)
class TransferExtra(CaseExtra):
    """A transfer case's extra_info: what one copy moves."""

    images: int | None = integer(1, COUNT, null=False, doc="images a copy moves")
    bytes: int | None = integer(1, COUNT, null=False, required=True, doc="bytes a copy moves")


@dataclass(frozen=True)
class StepExtra(CaseExtra):
    """What a training or inference case holds besides what every case does."""

    images: int | None = integer(1, COUNT, null=False, required=True, doc="images a round")
    batches: int | None = integer(1, COUNT, null=False, doc="steps or batches a round")
    dataset: str | None = text(doc="the data it used: fashion-mnist, synthetic or fakedata")
    accuracy: float | None = number(0, 1)
    pipeline_config: PipelineConfig | None = nested(PipelineConfig)
    prepare: Prepare | None = nested(Prepare)
    work: Work | None = nested(Work)
    limits: Held | None = nested(Held)

    @property
    def config(self) -> PipelineConfig:
        """What its ladder step ran (empty before format 3)."""
        return self.pipeline_config or PipelineConfig()


@dataclass(frozen=True)
class TrainExtra(StepExtra):
    """A training case's extra_info: its epochs' loss and accuracy, and one profiled epoch."""

    loss: float | None = number(0, 1e6, doc="the last round's mean loss")
    losses: list | None = items(number(0, 1e6, null=False), doc="each round's")
    accuracies: list | None = items(number(0, 1, null=False))
    breakdown: Breakdown | None = nested(Breakdown, explains=True)


@dataclass(frozen=True)
class InferenceExtra(StepExtra):
    """An inference case's extra_info: its batches, labels against the CPU's, single-batch latency."""

    batches: int | None = integer(1, COUNT, null=False, required=True, doc="batches a round")
    agreement: Agreement | None = nested(Agreement)
    latency: Latency | None = nested(Latency)


EXTRA = {
    "limits": LimitsExtra,
    "transfer": TransferExtra,
    "train": TrainExtra,
    "inference": InferenceExtra,
}
# The axes a case of each family must name, beyond its device (format 1 has no cpu_threads).
REQUIRED_AXES = {
    "limits": ("limit", "dtype"),
    "transfer": ("size", "direction", "memory", "dtype"),
    "train": ("batch_size", "pipeline"),
    "inference": ("batch_size", "mode"),
}


@dataclass(frozen=True)
class Benchmark(Record):
    """One case of a saved run, as pytest-benchmark saves it: group is its family."""

    group: str | None = text(choices=FAMILIES, null=False, required=True)
    name: str | None = text(null=False, required=True)
    params: Params | None = nested(Params, null=False, required=True)
    stats: Stats | None = nested(Stats, null=False, required=True)
    extra_info: dict | None = raw("object", doc="the family's record: EXTRA[group]")

    @property
    def extra(self) -> CaseExtra:
        """extra_info as its family's record."""
        return EXTRA.get(self.group, CaseExtra).read(self.extra_info)


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Lost(Record):
    """A case a run planned and did not measure: skipped, or failed."""

    name: str | None = text(doc="its pytest name")
    reason: str | None = text(doc="why")
    when: str | None = text(doc="the phase that failed: setup, call or teardown")
    figure: str | None = text(doc="what became of a figure measured before it failed")


@dataclass(frozen=True)
class RunState(Record):
    """machine_info.fmnist_bench.run: what happened to the planned cases and how the run ended (format 2 on)."""

    complete: bool | None = flag(null=False, always=True)
    planned_cases: int | None = integer(0, COUNT, always=True)
    finished_cases: int | None = integer(0, COUNT, always=True)
    skipped: list = items(Lost, always=True, doc="each skipped case")
    failed: list = items(Lost, always=True, doc="each failed case")
    wall_s: float | None = number(*SPAN, doc="the whole run's time")
    outside_cases_s: float | None = number(*SPAN, doc="imports, data, weights and saving")
    ended: str | None = text(doc="why it stopped early")
    journal: str | None = text(doc="its journal's name, so recovery knows it saved")
    recovered: str | None = text(doc="the journal it was recovered from")
    header_lost: bool | None = flag(doc="recovered from a journal whose header was lost")


@dataclass(frozen=True)
class Setting(Record):
    """machine_info.fmnist_bench.telemetry: whether each case's rounds were observed, and how often."""

    state: str | None = text(choices=("on", "off"))
    period_s: float | None = number(*SPAN)


@dataclass(frozen=True)
class HostAllocator(Record):
    """machine_info.fmnist_bench.host_allocator: what the C library's allocator was held to (format 4)."""

    mode: str | None = text(choices=("keep", "default"))
    library: str | None = text()
    how: str | None = text()
    keep_bytes: int | None = integer(0, COUNT)
    reason: str | None = text()
    preload: str | None = text()


@dataclass(frozen=True)
class SavedPlan(Record):
    """machine_info.fmnist_bench.plan as its readers take it: whether the run was a quick one, torch's threads
    and the images each split held (the rest of the plan is kept as it was saved)."""

    quick: bool | None = flag(null=False)
    default_threads: int | None = integer(1, COUNT)
    train_images: int | None = integer(0, COUNT)
    test_images: int | None = integer(0, COUNT)
    models: list | None = items(
        ModelInfo, doc="format 8 on: the models it named (none: the notes' CNN)"
    )
    knobs: dict = rest()


@dataclass(frozen=True)
class FmnistBench(Record):
    """machine_info.fmnist_bench: what fmnist-bench adds of its own: the format, the machine's key, id and name,
    the plan that ran, how busy the machine was and how the run went."""

    format: int | None = integer(1, 1000, null=False)
    machine_key: str | None = text()
    machine_id: str | None = text(
        pattern=r"^[0-9a-f]{8,64}$", always=True, doc="made once per installation"
    )
    machine_name: str | None = text(always=True, doc="--machine-name; null when not named")
    load: Load | None = nested(Load)
    plan: SavedPlan | None = nested(SavedPlan, doc="every knob of the plan that ran")
    budget_options: dict | None = raw("object")
    telemetry: Setting | None = nested(Setting)
    host_allocator: HostAllocator | None = nested(HostAllocator)
    run: RunState | None = nested(RunState)


@dataclass(frozen=True)
class CudaDevice(Record):
    device: str | None = text()
    name: str | None = text()


@dataclass(frozen=True)
class TorchFacts(Record):
    """machine_info.torch: the build and what it found."""

    version: str | None = text()
    threads: int | None = integer(
        1, COUNT, doc="torch's own intra-op threads: the CPU as most run it"
    )
    cuda_runtime: str | None = text()
    cudnn: int | None = integer(0, COUNT)
    cpu_capability: str | None = text()
    cuda_devices: list | None = items(CudaDevice)


@dataclass(frozen=True)
class Gpu(Record):
    """One GPU of machine_info.gpus, from NVML."""

    name: str | None = text()
    cuda_device: str | None = text(doc="its torch name, matched by UUID")
    driver_version: str | None = text()
    pcie_gbps_max: float | None = number(0.1, 10_000, doc="its link's theoretical GB/s a direction")
    uuid: str | None = text(doc="NVML's: tells two machines of one name and models apart")
    index: int | None = integer(0, 1024, doc="NVML's own index of it")


@dataclass(frozen=True)
class Nvml(Record):
    available: bool | None = flag()
    reason: str | None = text()


@dataclass(frozen=True)
class Dataset(Record):
    """machine_info.dataset: the data the run used."""

    name: str | None = text(doc="fashion-mnist, synthetic or fakedata (no CNN in the run)")
    requested: str | None = text()
    root: str | None = text(4096)
    train_images: int | None = integer(0, COUNT)
    test_images: int | None = integer(0, COUNT)
    files: dict | None = raw("object", "null", doc="the real files' own counts")


@dataclass(frozen=True)
class Cpu(Record):
    brand_raw: str | None = text(doc="the CPU's model, as py-cpuinfo reads it")


@dataclass(frozen=True)
class MachineInfo(Record):
    """machine_info: what pytest-benchmark records of the machine, and what fmnist-bench adds."""

    node: str | None = text()
    processor: str | None = text()
    machine: str | None = text()
    python_version: str | None = text()
    cpu: Cpu | None = nested(Cpu)
    constructed: object = raw(
        "string", "boolean", "null", doc="a test fixture's numbers chosen by hand"
    )
    torch: TorchFacts | None = nested(TorchFacts)
    gpus: list | None = items(Gpu, doc="one entry per GPU from NVML")
    nvml: Nvml | None = nested(Nvml)
    dataset: Dataset | None = nested(Dataset)
    fmnist_bench: FmnistBench | None = nested(FmnistBench)


@dataclass(frozen=True)
class CommitInfo(Record):
    id: str | None = text()
    dirty: bool | None = flag()


@dataclass(frozen=True)
class Run(Record):
    """A saved run: pytest-benchmark's JSON with fmnist-bench's records in it."""

    machine_info: MachineInfo | None = nested(MachineInfo, null=False, required=True)
    benchmarks: list = raw("array", required=True, doc="each case: a Benchmark")
    datetime: str | None = text()
    commit_info: CommitInfo | None = nested(CommitInfo)

    def cases(self) -> list[Benchmark]:
        """The run's benchmarks of fmnist-bench's families (another suite's are passed over)."""
        benchmarks = self.benchmarks if isinstance(self.benchmarks, list) else []
        found = [Benchmark.read(b) for b in benchmarks if isinstance(b, Mapping)]
        return [b for b in found if b.group in FAMILIES]

    @property
    def default_threads(self) -> int | None:
        """torch's own thread count on the machine of the run: what every format-1 case ran at, and the CPU
        baseline (from its plan where machine_info.torch does not say)."""
        torch = self.machine_info.torch if self.machine_info is not None else None
        plan = self.ours.plan
        return (torch.threads if torch is not None else None) or (
            plan.default_threads if plan is not None else None
        )

    @property
    def ours(self) -> FmnistBench:
        info = self.machine_info or MachineInfo()
        return info.fmnist_bench or FmnistBench()


# ---------------------------------------------------------------- the journal's lines (bench/format/journal.py)


@dataclass(frozen=True)
class JournalHeader(Record):
    """A journal's first line, {"header": ...}: what a saved run needs besides its benchmarks."""

    machine_info: dict | None = raw("object", null=False, required=True, doc="as in a saved run")
    commit_info: dict | None = raw("object")
    save_name: str | None = text(None, doc="the saved file's name after its number")
    version: str | None = text(None, doc="pytest-benchmark's version")
    started: str | None = text(None, doc="when the run started (UTC, ISO 8601)")


@dataclass(frozen=True)
class DataUsed(Record):
    """{"data_used": ...}: the images each split had, once the data was loaded."""

    train: int | None = integer(0, 10**9)
    test: int | None = integer(0, 10**9)


@dataclass(frozen=True)
class JournalNotes(Record):
    """What a journal's other lines said, gathered: each line {"<field>": value}, the last one of a field kept
    (skipped and failed: each line one more)."""

    pid: int | None = integer(0, 2**31, null=False, doc="the running process")
    planned_cases: int | None = integer(0, 1_000_000, null=False, doc="the cases it planned")
    saved: str | None = text(4095, pattern=r"[\s\S]", null=False, doc="where its run was saved")
    ended: str | None = text(300, pattern=r"[\s\S]", doc="how the run ended, where it said so")
    data_used: DataUsed | None = nested(DataUsed, null=False)
    skipped: list | None = items(Lost, doc="each skipped case")
    failed: list | None = items(Lost, doc="each failed case")


# ---------------------------------------------------------------- writing: each part built through its type


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
    """machine_info.fmnist_bench.run: what happened to the planned cases and how the run ended (format 2 on).
    outside_cases_s (imports, data, trained weights, machine facts, saving: what the cost model adds to the
    cases) is said only with the run's wall time."""
    return RunState(
        complete=complete,
        planned_cases=planned_cases,
        finished_cases=finished_cases,
        skipped=skipped,
        failed=failed,
        wall_s=wall_s,
        outside_cases_s=outside_cases_s if wall_s is not None else None,
        ended=ended or None,
        journal=journal or None,
        recovered=recovered or None,
    ).write()


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
    machine was and how the run went (null id: a recovered run of an older suite, or none could be kept; null
    name: not named, and reports label the machine by what it is)."""
    setting = (
        Setting(state="off") if telemetry_period_s is None else Setting("on", telemetry_period_s)
    )
    return FmnistBench(
        format=FORMAT_VERSION,
        machine_key=machine_key,
        machine_id=machine_id,
        machine_name=machine_name,
        load=Load.read(load) if load is not None else Load(available=False, reason="not measured"),
        plan=SavedPlan.read(plan),
        budget_options=budget_options,
        telemetry=setting,
        host_allocator=HostAllocator.read(host_allocator),
        run=RunState.read(run),
    ).write()


def transfer_figures(*, images: int, nbytes: int) -> dict:
    """A copy's extra_info: the units that turn its time into a rate."""
    return TransferExtra(images=images, bytes=nbytes).write()


def train_figures(*, epochs: list, batches: int, dataset: str, pipeline_config: dict) -> dict:
    """A training case's extra_info: its units, the sanity figures of its last epoch and of every round's
    (`epochs`: each round's result, with images, mean_loss and accuracy), and what its step ran."""
    return TrainExtra(
        images=epochs[-1].images,
        batches=batches,
        dataset=dataset,
        loss=epochs[-1].mean_loss,
        accuracy=epochs[-1].accuracy,
        losses=[e.mean_loss for e in epochs],
        accuracies=[e.accuracy for e in epochs],
        pipeline_config=PipelineConfig.read(pipeline_config),
    ).write()


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
    agreement = Agreement(
        reference=reference, share=agree / images, differ=images - agree, matrix=matrix
    )
    return InferenceExtra(
        images=images,
        batches=batches,
        dataset=dataset,
        accuracy=accuracy,
        pipeline_config=PipelineConfig.read(pipeline_config),
        agreement=agreement,
    ).write()


def prepare_record(seconds: float, prepared: dict) -> dict:
    """extra_info.prepare: what a step took to compile or capture its shapes before its rounds."""
    return Prepare.read({**prepared, "seconds": seconds}).write()


def step_parts(
    *, prepare_s: float, prepared: dict | None, work: dict | None, **explaining: dict | None
) -> dict:
    """What a training or inference case adds to its figures where it measured them, in the order saved: the
    time to compile or capture its shapes (prepare), what explains its time (a profiled epoch's breakdown, a
    latency sample), and the work it counted. A part not measured is left out, not written null."""
    parts = {"prepare": prepare_record(prepare_s, prepared)} if prepared else {}
    parts.update({name: part for name, part in explaining.items() if part is not None})
    if work is not None:
        parts["work"] = work
    return parts


def rounds_record(*, warmup: dict, warm_s: float, budget, round_s: float, rounds: int) -> dict:
    """extra_info.warmup and .budget: what the case warmed up with and how its rounds were chosen (format 2 on)."""
    chosen = Budget(budget.min_rounds, budget.max_time, budget.max_rounds, round_s, rounds)
    return {"warmup": Warmup.read({**warmup, "seconds": warm_s}).write(), "budget": chosen.write()}


# ---------------------------------------------------------------- reading


def read_run(run: Mapping) -> Run:
    """A saved run as its records (what is missing or malformed reads as None: the schema says what)."""
    return Run.read(run)
