"""The optimisation ladder: what each training and inference pipeline runs, as a config its case saves, and where it can run."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass

import torch

from bench.format.devices import device_kind
from bench.format.names import BUILDS_ON, INFERENCE_LADDER, TRAIN_LADDER

__all__ = [
    "BUILDS_ON",
    "COMPILE_MODE",
    "DATA_SEED",
    "GRAPH_WARMUP_STEPS",
    "INFERENCE_LADDER",
    "LOSS_TOLERANCE",
    "TRAIN_LADDER",
    "InferenceConfig",
    "TrainConfig",
    "inference_config",
    "loader_workers",
    "train_config",
    "unsupported_reason",
]

# The order a ladder is read in. Each step is the step it builds on (BUILDS_ON, per family) plus
# one change, so what that change buys is the step's speedup over it: seed -> loader -> resident
# is the data path, the steps after resident change one thing each, and channels_last_bf16 is bf16
# on channels_last: on the 2-core VM bf16 paid only there (epochs at batch 1,000 in run 0004:
# resident 1.62 s, bf16 2.01 s, channels_last 1.50 s, channels_last_bf16 1.21 s).
# The names and the order are bench.format.names' (importable without torch, so the report reads
# the same ones); this module builds each step from them.
# Every pipeline starts from the same weights (torch.manual_seed before Network()) and sees the
# images in the same order (epoch_order(n, DATA_SEED)), so their epoch-1 losses can be compared.
DATA_SEED = 0
# How far a pipeline's epoch-1 mean loss may rise above the resident pipeline's, relative to it,
# with the same weights and the same order (one-sided: a step that learns more is no fault; one
# that learns less is not a result). float32 steps differ from resident only in summation order:
# on the 2-core VM (synthetic set) the DataLoader pipelines matched it exactly, channels_last and
# compile were 0.04% off at 6,000 images (batch 100) and 0.10% at a whole epoch (batch 1,000);
# Adam makes such differences grow over an epoch, so 2% leaves room. bf16 autocast rounds to 8
# bits of mantissa (2^-9 relative, not float32's 2^-24): its loss was 8.7% and 4.1% *below*
# resident's in those two runs, so it is allowed 10%. Half the steps over the same images
# (batch 200 for 100) left the loss far more than 10% higher: tests/test_pipelines.py.
LOSS_TOLERANCE = {"float32": 0.02, "bfloat16": 0.10}
# The tuned loader's worker processes: half the machine's cores, at most 8. 8 workers on the
# 16-core H100 host took the seed epoch from 4.53 s to 0.60-0.72 s (issue 9, measured by hand);
# the other half of the cores run the training step's own threads. On 2 cores: 1 worker.
MAX_LOADER_WORKERS = 8
# torch.compile's mode: inductor's default. "reduce-overhead" adds CUDA graphs, which the
# cuda_graph step measures on its own; "max-autotune" compiles for minutes on a 2-core CPU.
COMPILE_MODE = "default"
# Training steps run on a side stream before a CUDA graph is captured, as torch's CUDA graphs
# notes do ("whole network capture"): lazy state (Adam's, cuBLAS workspaces) exists before capture.
GRAPH_WARMUP_STEPS = 3


def loader_workers(cpus: int | None = None) -> int:
    """The tuned DataLoader's workers on a machine with `cpus` cores (default: this one's)."""
    return min(MAX_LOADER_WORKERS, max(1, (cpus or os.cpu_count() or 1) // 2))


@dataclass(frozen=True)
class TrainConfig:
    """Exactly what one training pipeline runs: every field is saved with its case."""

    pipeline: str
    data: str  # "dataloader" (per-sample dataset, a batch copied per step) or "resident" (uint8 set on the device)
    workers: int | None  # DataLoader worker processes (None: no DataLoader)
    pin_memory: bool  # pinned host batches (needs an accelerator: never on the CPU)
    non_blocking: bool  # asynchronous host-to-device copies
    persistent_workers: bool  # workers kept between epochs
    sync_per_batch: bool  # `.item()` every batch, as the notes do
    memory_format: str  # "contiguous" or "channels_last"
    precision: str  # "float32", or the autocast dtype: "bfloat16"
    compile_mode: str | None  # torch.compile's mode, None when eager
    cuda_graph: bool  # each training step replayed as one CUDA graph
    ragged: str  # how an epoch's last, smaller batch runs: "eager", "recompiled" or "second graph"

    def record(self) -> dict:
        return asdict(self)

    @property
    def loss_tolerance(self) -> float:
        return LOSS_TOLERANCE[self.precision]


# The steps after resident (train) and inference_mode (inference): each is the step it builds on
# plus this one change, the same in both families. compile: dynamic=False, one static-shape
# compile per batch shape; the last, smaller batch of an epoch (60,000 % batch size > 0) is a
# second compile, made before the timed epochs. cuda_graph: a second graph for that batch.
_ONE_CHANGE = {
    "channels_last": {"memory_format": "channels_last"},
    "bf16": {"precision": "bfloat16"},
    "channels_last_bf16": {"precision": "bfloat16"},
    "compile": {"compile_mode": COMPILE_MODE, "ragged": "recompiled"},
    "cuda_graph": {"cuda_graph": True, "ragged": "second graph"},
    # The graph of the compiled step (compiled, then captured): the fastest pipeline on the H100
    # host, 37-42 ms an epoch at batch 1,000 against cuda_graph's 44-48 ms, interleaved in two
    # runs of check-gpu. Training only: inference's compiled step was the slower one there.
    "compile_cuda_graph": {"compile_mode": COMPILE_MODE, "ragged": "recompiled, second graph"},
}


# The fields the changes above set, as the base step of either family has them: eager, float32,
# contiguous, no graph.
_UNCHANGED = dict(
    memory_format="contiguous",
    precision="float32",
    compile_mode=None,
    cuda_graph=False,
    ragged="eager",
)


def _changes(family: str, pipeline: str) -> dict:
    """Every change from the family's base step to `pipeline`: its own, and those of the steps it builds on."""
    chain = []
    while pipeline in _ONE_CHANGE:
        chain.append(_ONE_CHANGE[pipeline])
        pipeline = BUILDS_ON[family][pipeline]
    return {k: v for change in reversed(chain) for k, v in change.items()}


def _checked(pipeline: str, ladder: tuple[str, ...], what: str) -> None:
    """Raises ValueError for a pipeline that is not a step of `ladder`."""
    if pipeline not in ladder:
        raise ValueError(
            f"{pipeline!r} is not {what} pipeline: expected one of {', '.join(ladder)}"
        )


def train_config(pipeline: str, device: torch.device | str, cpus: int | None = None) -> TrainConfig:
    """The config of a training pipeline on `device`. Raises ValueError for an unknown pipeline."""
    _checked(pipeline, TRAIN_LADDER, "a training")
    accelerator = not device_kind(str(torch.device(device))).host
    base = dict(
        pipeline=pipeline,
        data="resident",
        workers=None,
        pin_memory=False,
        non_blocking=False,
        persistent_workers=False,
        sync_per_batch=False,
        **_UNCHANGED,
    )
    if pipeline == "seed":
        base.update(data="dataloader", workers=0, sync_per_batch=True)
    elif pipeline == "loader":
        # pin_memory only helps a copy to an accelerator; on the CPU the workers are the change.
        base.update(
            data="dataloader",
            workers=loader_workers(cpus),
            pin_memory=accelerator,
            non_blocking=accelerator,
            persistent_workers=True,
        )
    base.update(_changes("train", pipeline))
    return TrainConfig(**base)


def _compiler_missing() -> str | None:
    if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++", "cl")):
        return "torch.compile's CPU backend (inductor) needs a C++ compiler, and none is on PATH"
    return None


def unsupported_reason(pipeline: str, device: torch.device | str) -> str | None:
    """Why `pipeline` (of either family) cannot run on `device`, or None when it can (bench/format/devices.py)."""
    kind = device_kind(str(torch.device(device)))
    if pipeline in ("cuda_graph", "compile_cuda_graph") and not kind.graphs:
        return f"a CUDA graph captures CUDA kernels: {kind.name} has none to capture (torch.cuda.graph)"
    if pipeline == "compile" and kind.compiles_cxx:
        return _compiler_missing()
    if pipeline in ("bf16", "channels_last_bf16") and kind.no_bf16:
        return kind.no_bf16
    return None


@dataclass(frozen=True)
class InferenceConfig:
    """Exactly what one inference pipeline runs: every field is saved with its case."""

    pipeline: str
    autograd: str  # "enabled" (a plain call), "inference_mode"
    memory_format: str
    precision: str
    compile_mode: str | None
    cuda_graph: bool
    ragged: str  # how a pass's last, smaller batch runs

    def record(self) -> dict:
        return asdict(self)


def inference_config(pipeline: str) -> InferenceConfig:
    """The config of an inference pipeline. Raises ValueError for an unknown one."""
    _checked(pipeline, INFERENCE_LADDER, "an inference")
    base = dict(pipeline=pipeline, autograd="inference_mode", **_UNCHANGED)
    if pipeline == "eager":
        # the model called as a first attempt does: autograd records
        base.update(autograd="enabled")
    base.update(_changes("inference", pipeline))
    return InferenceConfig(**base)
