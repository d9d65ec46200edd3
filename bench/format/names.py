"""The names every stage shares, defined once and importable without torch: families, axes, case ids, ladders."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AXES",
    "BUILDS_ON",
    "FAMILIES",
    "FAMILY_AXES",
    "INFERENCE_LADDER",
    "FAMILY_LADDERS",
    "FLOORS",
    "LIMITS",
    "NOISY_IQR_SHARE",
    "OUTSIDE_SHARE",
    "PHASES",
    "SPEEDUP_FAMILIES",
    "TRAIN_LADDER",
    "CNN_MODEL",
    "case_id",
    "model_label",
    "model_options",
    "variant",
]

# In the order a run takes them: the cheapest first, so an interrupted run has kept the most cases.
# The limits come first for a second reason: every later case is held against them
# (bench/analysis/limits.py).
FAMILIES = ("limits", "transfer", "inference", "train")
# The families a GPU's speedup over the CPU compares (a copy has no CPU counterpart to be faster
# than).
SPEEDUP_FAMILIES = ("train", "inference")
# Every case of a family names these params, in this order (its test id follows it).
FAMILY_AXES = {
    "limits": ("device", "cpu_threads", "limit", "dtype"),
    "transfer": ("device", "cpu_threads", "direction", "memory", "size", "dtype"),
    "inference": ("device", "cpu_threads", "batch_size", "mode", "pipeline"),
    "train": ("device", "cpu_threads", "batch_size", "pipeline"),
}
# Every axis a benchmark can name; a family leaves the ones it has no use for empty. model is named only by
# a run of a model other than the notes' CNN (--model): a run of the CNN alone keeps the ids it always had.
AXES = (
    "model",
    "device",
    "cpu_threads",
    "pipeline",
    "batch_size",
    "size",
    "direction",
    "memory",
    "dtype",
    "mode",
    "limit",
)
# What the limits family measures of each device (bench/bench_limits.py): an operation's fixed cost,
# eager and replayed from a CUDA graph, the arithmetic peak (a matrix product, per dtype) and the
# device's own memory bandwidth (a copy within it; the CPU's is the transfer family's host-to-host
# copy).
LIMITS = ("operation", "operation_graph", "matmul", "device_copy")
# The floors a training or inference case is held against (bench/analysis/limits.py): what one limit alone
# says it must take at least: its FLOPs over the peak, its operations times one's cost, its copies.
FLOORS = ("arithmetic", "operations", "copies")

# The optimisation ladders' order and the step each one builds on: the report lists steps in that
# order and gives each step's speedup over the step it builds on, which is what its one change buys.
# fmnist_model/ladder.py builds each step from these (what it changes of the step it builds on).
TRAIN_LADDER = (
    "seed",
    "loader",
    "resident",
    "channels_last",
    "bf16",
    "channels_last_bf16",
    "compile",
    "cuda_graph",
    "compile_cuda_graph",
)
INFERENCE_LADDER = (
    "eager",
    "inference_mode",
    "channels_last",
    "bf16",
    "channels_last_bf16",
    "compile",
    "cuda_graph",
)
FAMILY_LADDERS = {"train": TRAIN_LADDER, "inference": INFERENCE_LADDER}
BUILDS_ON = {
    "train": {
        "loader": "seed",
        "resident": "loader",
        **{step: "resident" for step in ("channels_last", "bf16", "compile", "cuda_graph")},
        "channels_last_bf16": "channels_last",
        "compile_cuda_graph": "cuda_graph",
    },
    "inference": {
        "inference_mode": "eager",
        **{step: "inference_mode" for step in ("channels_last", "bf16", "compile", "cuda_graph")},
        "channels_last_bf16": "channels_last",
    },
}

# The phases a profiled epoch is summed by (torch.profiler record_function ranges in fmnist_model's
# loops).
PHASES = ("data", "h2d", "forward", "backward", "optimizer", "graph")

# docs/design.md (honest timing): a result whose IQR is over 10% of its median is flagged as noisy.
NOISY_IQR_SHARE = 0.10
# Work from outside the benchmark is flagged when it took more than a tenth of the machine's CPU
# time over the case: the same 10% docs/design.md allows a case's spread before calling it noisy,
# and a case that uses every core can lose about that much of its time to such work.
OUTSIDE_SHARE = 0.10


# The notes' CNN: the default model, the one a case that names no model ran.
CNN_MODEL = "cnn"


def model_label(name: str, input_shape, classes) -> str:
    """How a model is named in rows, tables and the answer: its name, and for any but the CNN the shape of
    its images and (when not 10) its classes, which change its work as much as its layers do."""
    if name == CNN_MODEL:
        return CNN_MODEL
    shape = "x".join(str(int(v)) for v in input_shape or ())
    label = f"{name} {shape}" if shape else name
    return label if classes in (None, 10) else f"{label}, {int(classes)} classes"


def model_options(name: str, input_shape, classes) -> str:
    """The options that measure this model again (nothing for the CNN: the default)."""
    if name == CNN_MODEL:
        return ""
    out = f"--model {name}"
    if input_shape:
        out += f" --input-shape {','.join(str(int(v)) for v in input_shape)}"
    return out if classes in (None, 10) else f"{out} --classes {int(classes)}"


def case_id(params: Mapping) -> str:
    """A case's pytest id: its param values in FAMILY_AXES order; threads shown on the CPU only.

    Values that are missing (None or empty) are left out, so a row read back from a saved run
    names its case as the run's progress line did.
    """
    parts: list[str] = []
    for key, value in params.items():
        if value is None or value == "":
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if key == "cpu_threads":
            if params.get("device") == "cpu" and parts:
                parts[-1] += f"-{value}t"
            continue
        parts.append(str(value))
    return "-".join(parts)


def variant(family: str, params: Mapping) -> str | None:
    """What a speedup pairs and a table row names: a training pipeline, or an inference mode with its ladder
    step where that is not the plain inference_mode pass (runs of format 2 ran inference_mode); None
    for copies. A channels_last pass is never compared with an inference_mode one."""
    if family == "train":
        return params.get("pipeline")
    if family != "inference":
        return None
    step = params.get("pipeline") or "inference_mode"
    return params.get("mode") if step == "inference_mode" else f"{params.get('mode')} {step}"
