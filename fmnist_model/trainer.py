"""A training pipeline on one device, built once per case: its first weights put back each round, its epochs, its graphs."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from . import loops
from .graphs import capture, compiled
from .ladder import DATA_SEED, TrainConfig, unsupported_reason
from .loops import EpochResult, epoch_order, make_optimizer, phase
from .model import Network

__all__ = ["Trainer"]


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
    tensors (the resident ones; moved to `device` here, once). `build` makes the model (the notes' CNN
    by default; fmnist_model/models.py for any other), after torch is seeded with `seed`.
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
        build: Callable[[], nn.Module] = Network,
    ) -> None:
        reason = unsupported_reason(config.pipeline, device)
        if reason is not None:
            raise RuntimeError(reason)
        self.config, self.device, self.batch_size, self.seed = (
            config,
            torch.device(device),
            batch_size,
            seed,
        )
        self.n = len(labels)
        self._memory_format = (
            torch.channels_last
            if config.memory_format == "channels_last"
            else torch.contiguous_format
        )
        self._autocast = torch.bfloat16 if config.precision == "bfloat16" else None
        torch.manual_seed(seed)
        self.model = build().to(self.device, memory_format=self._memory_format)
        self._initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.optimizer = make_optimizer(self.model, capturable=config.cuda_graph)
        # dynamic=False: shapes are few and fixed (a batch, and the last one): static kernels.
        self.forward = (
            compiled(self.model, config.compile_mode)
            if config.compile_mode is not None
            else self.model
        )
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
            # One training step per shape compiles its forward and backward.
            for size in self.shapes:
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

    torch's documented whole-network capture (graphs.capture): static inputs (here the batch's
    indices into the resident set), Adam with capturable=True, grads set to None before capture so
    that replays write them afresh. The running totals are accumulated inside the graph, so an epoch
    is one small index copy and one replay per batch, and one sync at the end. `model` may be a
    compiled forward (compiled before capture), and the step runs in the config's memory format and
    autocast dtype, as the resident loop does.
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

        def step(idx: torch.Tensor) -> None:
            x = images[idx].float().div_(255.0)
            if memory_format is not torch.contiguous_format:
                x = x.contiguous(memory_format=memory_format)
            y = labels[idx]
            with (
                torch.autocast(device.type, dtype=autocast_dtype)
                if autocast_dtype
                else contextlib.nullcontext()
            ):
                preds = model(x)
                loss = F.cross_entropy(preds, y)
            loss.backward()
            optimizer.step()
            self.total_loss.add_(loss.detach() * idx.numel())
            self.total_correct.add_(preds.argmax(dim=1).eq(y).sum())

        self.graphs = {
            size: graph
            for size, (graph, _out) in capture(
                device,
                shapes,
                lambda size: step(self.index[size]),
                before=lambda _size: optimizer.zero_grad(set_to_none=True),
            ).items()
        }

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
