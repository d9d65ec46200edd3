"""The optimisation ladder: each training and inference pipeline as a recorded config, and the one place that builds it."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from bench.record.names import BUILDS_ON, INFERENCE_LADDER, TRAIN_LADDER

from . import loops
from .loops import EpochResult, epoch_order, make_optimizer, phase
from .model import Network

__all__ = [
    "BUILDS_ON",
    "DATA_SEED",
    "INFERENCE_LADDER",
    "LOSS_TOLERANCE",
    "TRAIN_LADDER",
    "InferenceConfig",
    "Predictor",
    "TrainConfig",
    "Trainer",
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
# The names and the order are bench.record.names' (importable without torch, so the report reads
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
    # runs of bench.check_gpu. Training only: inference's compiled step was the slower one there.
    "compile_cuda_graph": {"compile_mode": COMPILE_MODE, "ragged": "recompiled, second graph"},
}


def _changes(family: str, pipeline: str) -> dict:
    """Every change from the family's base step to `pipeline`: its own, and those of the steps it builds on."""
    chain = []
    while pipeline in _ONE_CHANGE:
        chain.append(_ONE_CHANGE[pipeline])
        pipeline = BUILDS_ON[family][pipeline]
    return {k: v for change in reversed(chain) for k, v in change.items()}


def train_config(pipeline: str, device: torch.device | str, cpus: int | None = None) -> TrainConfig:
    """The config of a training pipeline on `device`. Raises ValueError for an unknown pipeline."""
    if pipeline not in TRAIN_LADDER:
        raise ValueError(f"{pipeline!r} is not a training pipeline: expected one of {', '.join(TRAIN_LADDER)}")
    accelerator = torch.device(device).type != "cpu"
    base = dict(
        pipeline=pipeline,
        data="resident",
        workers=None,
        pin_memory=False,
        non_blocking=False,
        persistent_workers=False,
        sync_per_batch=False,
        memory_format="contiguous",
        precision="float32",
        compile_mode=None,
        cuda_graph=False,
        ragged="eager",
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


def _compiled(model: nn.Module, mode: str) -> Callable:
    """`model` through torch.compile with static shapes, dynamo's caches emptied first.

    Every Network shares one forward code object, and dynamo keeps a bounded number of compiled
    entries per code object (8 in torch 2.x) before it silently runs the code uncompiled: a run
    of many compiled cases (--ladder full --pipelines all: shapes x devices x grad modes) would
    then time eager epochs recorded as compiled. Each pipeline compiles afresh (inductor's
    on-disk cache keeps that cheap), so its entries are its own.
    """
    torch._dynamo.reset()
    return torch.compile(model, mode=mode, dynamic=False)


def _compiler_missing() -> str | None:
    if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++", "cl")):
        return "torch.compile's CPU backend (inductor) needs a C++ compiler, and none is on PATH"
    return None


def unsupported_reason(pipeline: str, device: torch.device | str) -> str | None:
    """Why `pipeline` (of either family) cannot run on `device`, or None when it can."""
    kind = torch.device(device).type
    if pipeline in ("cuda_graph", "compile_cuda_graph") and kind != "cuda":
        return f"a CUDA graph captures CUDA kernels: {kind} has none to capture (torch.cuda.graph)"
    if pipeline == "compile" and kind == "cpu":
        return _compiler_missing()
    if pipeline in ("bf16", "channels_last_bf16") and kind == "mps":
        return "bf16 autocast on mps is not measured by this suite (Metal's bf16 support depends on the macOS version)"
    return None


class _FixedOrder(Sampler[int]):
    """A sampler that yields the same shuffled order every epoch: epoch_order(n, seed), as a
    fresh `DataLoader(shuffle=True, generator=seeded)` does for a fresh model each round."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed

    def __iter__(self):
        return iter(epoch_order(self.n, self.seed).tolist())

    def __len__(self) -> int:
        return self.n


class Trainer:
    """One training pipeline on one device, built once per case: `reset()` puts back the
    first weights and a fresh optimizer (in place, so compiled code and CUDA graphs stay
    valid), `prepare()` compiles or captures every batch shape, `epoch()` trains one epoch.

    `dataset` is the per-sample split (the DataLoader pipelines), `images`/`labels` the uint8
    tensors (the resident ones; moved to `device` here, once).
    """

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device | str,
        batch_size: int,
        *,
        dataset: Dataset,
        images: torch.Tensor,
        labels: torch.Tensor,
        seed: int = DATA_SEED,
    ) -> None:
        reason = unsupported_reason(config.pipeline, device)
        if reason is not None:
            raise RuntimeError(reason)
        self.config, self.device, self.batch_size, self.seed = config, torch.device(device), batch_size, seed
        self.n = len(labels)
        self._memory_format = (
            torch.channels_last if config.memory_format == "channels_last" else torch.contiguous_format
        )
        self._autocast = torch.bfloat16 if config.precision == "bfloat16" else None
        torch.manual_seed(seed)
        self.model = Network().to(self.device, memory_format=self._memory_format)
        self._initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.optimizer = make_optimizer(self.model, capturable=config.cuda_graph)
        # dynamic=False: shapes are few and fixed (a batch, and the last one): static kernels.
        self.forward = _compiled(self.model, config.compile_mode) if config.compile_mode is not None else self.model
        self.dataset = dataset
        if config.data == "resident":
            self.images, self.labels = images.to(self.device), labels.to(self.device)
        self._loader: DataLoader | None = None
        self._graphs: _GraphedTraining | None = None

    @property
    def shapes(self) -> list[int]:
        """The batch sizes an epoch runs: the batch, and the last, smaller one when there is one."""
        full, rest = divmod(self.n, self.batch_size)
        return ([self.batch_size] if full else []) + ([rest] if rest else [])

    def reset(self) -> None:
        """The first weights and a fresh optimizer: every epoch is epoch 1 of the same model."""
        with torch.no_grad():
            for key, value in self.model.state_dict().items():
                value.copy_(self._initial[key])
        if self.config.cuda_graph:
            # The graph holds these very tensors: zeroed in place, Adam's state is a fresh one's.
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        else:
            self.optimizer = make_optimizer(self.model)

    def prepare(self) -> dict:
        """Compile (compile) or capture (cuda_graph) each batch shape, then reset. Returns what was done."""
        done = {}
        if self.config.compile_mode is not None:
            for size in self.shapes:  # one training step per shape compiles its forward and backward
                loops.train_epoch_resident(
                    self.forward,
                    self.optimizer,
                    self.images[:size],
                    self.labels[:size],
                    size,
                    order=torch.arange(size),
                    memory_format=self._memory_format,
                    autocast_dtype=self._autocast,
                )
            done["compiled_shapes"] = self.shapes
        if self.config.cuda_graph:  # after a compile, the graph captures the compiled kernels
            self._graphs = _GraphedTraining(
                self.forward,
                self.optimizer,
                self.images,
                self.labels,
                self.shapes,
                memory_format=self._memory_format,
                autocast_dtype=self._autocast,
            )
            done["captured_shapes"] = self.shapes
        if done:
            self.reset()
        return done

    def epoch(self, images: int | None = None, *, annotate: bool = False) -> EpochResult:
        """One epoch (over the first `images` images when given: a warm-up), phases named for the profiler when `annotate`."""
        n = self.n if images is None else images
        config = self.config
        if config.data == "dataloader":
            return loops.train_epoch_seed(
                self.forward,
                self.optimizer,
                self._dataloader(n),
                self.device,
                non_blocking=config.non_blocking,
                sync_per_batch=config.sync_per_batch,
                annotate=annotate,
            )
        order = epoch_order(n, self.seed)
        if config.cuda_graph:
            if self._graphs is None:
                raise RuntimeError("prepare() captures the CUDA graphs before the first epoch")
            return self._graphs.epoch(order, self.batch_size, annotate=annotate)
        return loops.train_epoch_resident(
            self.forward,
            self.optimizer,
            self.images[:n],
            self.labels[:n],
            self.batch_size,
            order=order,
            memory_format=self._memory_format,
            autocast_dtype=self._autocast,
            annotate=annotate,
        )

    def _dataloader(self, n: int) -> DataLoader:
        config = self.config
        if not config.persistent_workers:
            # The notes' DataLoader (no workers, no pinning), a fresh one each epoch. Its shuffle
            # is the permutation shuffle=True draws, given as a sampler: with shuffle=True and a
            # generator, the DataLoader first draws its workers' base seed from that generator,
            # and the order would no longer be the resident pipelines' one.
            data = self.dataset if n == len(self.dataset) else Subset(self.dataset, range(n))
            return DataLoader(data, batch_size=self.batch_size, sampler=_FixedOrder(n, self.seed))
        if n != self.n:
            # A warm-up: the first batches of the persistent loader (its workers start here).
            return _FirstBatches(self._persistent(), math.ceil(n / self.batch_size))
        return self._persistent()

    def _persistent(self) -> DataLoader:
        if self._loader is None:
            config = self.config
            self._loader = DataLoader(
                self.dataset,
                batch_size=self.batch_size,
                sampler=_FixedOrder(len(self.dataset), self.seed),
                num_workers=config.workers,
                pin_memory=config.pin_memory,
                persistent_workers=config.persistent_workers and bool(config.workers),
            )
        return self._loader


class _FirstBatches:
    """The first `count` batches of a DataLoader, leaving its persistent workers running."""

    def __init__(self, loader: DataLoader, count: int) -> None:
        self.loader, self.count = loader, count

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.count:
                return
            yield batch


class _GraphedTraining:
    """Each training step (gather a batch, forward, backward, Adam) as one CUDA graph per batch shape.

    torch's documented whole-network capture (CUDA semantics notes, "CUDA Graphs"): static
    inputs (here the batch's indices into the resident set), Adam with capturable=True, a few
    steps on a side stream before capture, grads set to None before capture so that replays
    write them afresh. The running totals are accumulated inside the graph, so an epoch is
    one small index copy and one replay per batch, and one sync at the end. `model` may be
    a compiled forward (compiled before capture), and the step runs in the config's memory
    format and autocast dtype, as the resident loop does.
    """

    def __init__(
        self,
        model: Callable,
        optimizer: torch.optim.Optimizer,
        images: torch.Tensor,
        labels: torch.Tensor,
        shapes: list[int],
        *,
        memory_format: torch.memory_format = torch.contiguous_format,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        device = images.device
        self.total_loss = torch.zeros((), device=device)
        self.total_correct = torch.zeros((), dtype=torch.int64, device=device)
        self.index = {size: torch.arange(size, device=device) for size in shapes}
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}

        def step(idx: torch.Tensor) -> None:
            x = images[idx].float().div_(255.0)
            if memory_format is not torch.contiguous_format:
                x = x.contiguous(memory_format=memory_format)
            y = labels[idx]
            with torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext():
                preds = model(x)
                loss = F.cross_entropy(preds, y)
            loss.backward()
            optimizer.step()
            self.total_loss.add_(loss.detach() * idx.numel())
            self.total_correct.add_(preds.argmax(dim=1).eq(y).sum())

        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for size in shapes:
                for _ in range(GRAPH_WARMUP_STEPS):
                    optimizer.zero_grad(set_to_none=True)
                    step(self.index[size])
        torch.cuda.current_stream(device).wait_stream(side)
        pool = None
        for size in shapes:
            optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                step(self.index[size])
            pool = graph.pool()  # the shapes share one memory pool: they never run at once
            self.graphs[size] = graph

    def epoch(self, order: torch.Tensor, batch_size: int, *, annotate: bool = False) -> EpochResult:
        device = self.total_loss.device
        order = order.to(device)
        self.total_loss.zero_()
        self.total_correct.zero_()
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            with phase("data", annotate):
                self.index[len(idx)].copy_(idx)
            with phase("graph", annotate):
                self.graphs[len(idx)].replay()
        return EpochResult(self.total_loss.item(), int(self.total_correct.item()), len(order))


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
    if pipeline not in INFERENCE_LADDER:
        raise ValueError(f"{pipeline!r} is not an inference pipeline: expected one of {', '.join(INFERENCE_LADDER)}")
    base = dict(
        pipeline=pipeline,
        autograd="inference_mode",
        memory_format="contiguous",
        precision="float32",
        compile_mode=None,
        cuda_graph=False,
        ragged="eager",
    )
    if pipeline == "eager":
        base.update(autograd="enabled")  # the model called as a first attempt does: autograd records
    base.update(_changes("inference", pipeline))
    return InferenceConfig(**base)


class Predictor:
    """Predicted labels for a float [N,1,28,28] tensor, `batch_size` at a time, by one inference pipeline.

    With `device`, each batch is moved there and the labels come back to where the images
    are (end to end); without it the work runs where the images are (compute only), as
    `loops.predict` does. `prepare(images)` compiles or captures each batch shape of a pass.
    """

    def __init__(self, config: InferenceConfig, model: nn.Module, batch_size: int, device: torch.device | str) -> None:
        reason = unsupported_reason(config.pipeline, device)
        if reason is not None:
            raise RuntimeError(reason)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.config, self.batch_size, self.device = config, batch_size, torch.device(device)
        self._memory_format = (
            torch.channels_last if config.memory_format == "channels_last" else torch.contiguous_format
        )
        self.model = model.to(self.device, memory_format=self._memory_format).eval()
        self.forward: Callable = (
            _compiled(self.model, config.compile_mode) if config.compile_mode is not None else self.model
        )
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        if self._memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self._memory_format)
        if self.config.precision == "bfloat16":
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.forward(x).argmax(dim=1)
        return self.forward(x).argmax(dim=1)

    def prepare(self, images: torch.Tensor) -> dict:
        """Compile or capture every batch shape a pass over `images` runs (on the device)."""
        full, rest = divmod(len(images), self.batch_size)
        shapes = ([self.batch_size] if full else []) + ([rest] if rest else [])
        done = {}
        if self.config.compile_mode is not None:
            with torch.inference_mode():
                for size in shapes:
                    self._labels(images[:size].to(self.device))
            done["compiled_shapes"] = shapes
        if self.config.cuda_graph:  # after a compile, the graph captures the compiled kernels
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            pool = None
            for size in shapes:
                static_in = images[:size].to(self.device).clone()
                with torch.inference_mode():
                    with torch.cuda.stream(side):
                        for _ in range(GRAPH_WARMUP_STEPS):
                            self._labels(static_in)
                    torch.cuda.current_stream(self.device).wait_stream(side)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, pool=pool):
                        static_out = self._labels(static_in)
                pool = graph.pool()
                self._graphs[size] = (graph, static_in, static_out)
            done["captured_shapes"] = shapes
        return done

    def __call__(self, images: torch.Tensor, *, device: bool = False) -> torch.Tensor:
        """Labels for `images`; `device=True` moves each batch to the device and the labels back (end to end)."""
        target = self.device if device else images.device
        grad = torch.inference_mode() if self.config.autograd == "inference_mode" else torch.enable_grad()
        out = []
        with grad:
            for start in range(0, len(images), self.batch_size):
                x = images[start : start + self.batch_size].to(target)
                if self.config.cuda_graph:
                    graph, static_in, static_out = self._graphs[len(x)]
                    static_in.copy_(x)
                    graph.replay()
                    out.append(static_out.clone())
                else:
                    out.append(self._labels(x).detach())
        preds = torch.cat(out) if out else torch.empty(0, dtype=torch.int64, device=target)
        return preds.to(images.device)
