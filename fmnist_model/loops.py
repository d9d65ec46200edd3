"""Training epochs (seed and resident pipelines), batched inference and the confusion matrix."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .model import NUM_CLASSES

__all__ = [
    "LEARNING_RATE",
    "EpochResult",
    "accuracy",
    "confusion_matrix",
    "epoch_order",
    "make_optimizer",
    "phase",
    "predict",
    "seed_loader",
    "train_epoch_resident",
    "train_epoch_seed",
]

LEARNING_RATE = 0.01  # the notes' Adam(lr=0.01)


@dataclass(frozen=True)
class EpochResult:
    """What one epoch did, so a time can be recorded beside proof that training worked."""

    loss: float  # summed over images: sum of (batch-mean loss x batch size)
    correct: int  # images whose prediction (during training) matched the label
    images: int

    @property
    def mean_loss(self) -> float:
        return self.loss / self.images

    @property
    def accuracy(self) -> float:
        return self.correct / self.images


def make_optimizer(
    model: nn.Module, lr: float = LEARNING_RATE, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """The notes' optimizer: Adam at lr 0.01 (`capturable`: its state on the device, for a CUDA graph)."""
    return torch.optim.Adam(model.parameters(), lr=lr, capturable=capturable)


def epoch_order(n: int, seed: int) -> torch.Tensor:
    """An epoch's shuffled order on the CPU: what a DataLoader with shuffle=True and a generator
    seeded with `seed` yields (RandomSampler draws `torch.randperm(n, generator=...)`), so every
    pipeline can see the images in the same order and their losses can be compared."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def phase(name: str, annotate: bool):
    """A torch.profiler range named `name` when `annotate`, else nothing: the timed epochs pay no profiler cost."""
    return torch.profiler.record_function(name) if annotate else contextlib.nullcontext()


def _step(
    model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, annotate: bool, autocast=None
):
    """One training step, the same in every loop, its phases named for the profiler: forward and the loss
    (under `autocast` where given), backward (zero_grad included), the optimizer. Returns (preds,
    loss)."""
    with phase("forward", annotate), autocast or contextlib.nullcontext():
        preds = model(x)
        loss = F.cross_entropy(preds, y)
    with phase("backward", annotate):
        optimizer.zero_grad()
        loss.backward()
    with phase("optimizer", annotate):
        optimizer.step()
    return preds, loss


def seed_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool = True, generator=None
) -> DataLoader:
    """The notes' DataLoader, as written: default workers (none), no pinning."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def train_epoch_seed(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    device: torch.device | str,
    *,
    non_blocking: bool = False,
    sync_per_batch: bool = True,
    annotate: bool = False,
) -> EpochResult:
    """One epoch of the notes' loop: DataLoader batch -> .to(device) -> step.

    Benchmarked exactly as people run it, `.item()` every batch included (it waits for the
    device each time: part of what this pipeline costs). The tuned-loader pipeline runs the
    same loop with `non_blocking` copies (from pinned batches) and `sync_per_batch=False`:
    its totals stay on the device, as a blocking `.item()` would undo an asynchronous copy.
    """
    model.train()
    total_loss, total_correct, total_images = 0.0, 0, 0
    device_loss = torch.zeros((), device=device)
    device_correct = torch.zeros((), dtype=torch.int64, device=device)
    batches = iter(loader)
    while True:
        with phase("data", annotate):
            batch = next(batches, None)
        if batch is None:
            break
        images, labels = batch
        with phase("h2d", annotate):
            images, labels = (
                images.to(device, non_blocking=non_blocking),
                labels.to(device, non_blocking=non_blocking),
            )
        preds, loss = _step(model, optimizer, images, labels, annotate)
        if sync_per_batch:
            total_loss += loss.item() * len(labels)
            total_correct += preds.argmax(dim=1).eq(labels).sum().item()
        else:
            device_loss += loss.detach() * len(labels)
            device_correct += preds.argmax(dim=1).eq(labels).sum()
        total_images += len(labels)
    if not sync_per_batch:
        total_loss, total_correct = device_loss.item(), int(device_correct.item())
    return EpochResult(total_loss, total_correct, total_images)


def train_epoch_resident(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    order: torch.Tensor | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    autocast_dtype: torch.dtype | None = None,
    annotate: bool = False,
) -> EpochResult:
    """One epoch over a uint8 set that already lives on the model's device.

    Shuffled by a `randperm` (drawn on the CPU from `generator`, or given as `order`, so that
    the DataLoader pipelines can see the same order; 60,000 indices are a 480 kB copy) and
    sliced into batches on the device, converted to float per batch (the uint8 set is a
    quarter the size of float32), and the running totals stay on the device: one host sync at
    the end instead of two per batch. `memory_format` and `autocast_dtype` are the ladder's
    channels_last and bf16 steps: the batch in that layout, the forward pass under autocast.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"resident images must be uint8, got {images.dtype}")
    model.train()
    device = images.device
    n = len(labels)
    if order is None:
        order = torch.randperm(n, generator=generator)
    order = order.to(device)
    total_loss = torch.zeros((), device=device)
    total_correct = torch.zeros((), dtype=torch.int64, device=device)
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    for start in range(0, n, batch_size):
        with phase("data", annotate):
            idx = order[start : start + batch_size]
            x = images[idx].float().div_(255.0)  # what ToTensor does, on the device
            if memory_format is not torch.contiguous_format:
                x = x.contiguous(memory_format=memory_format)
            y = labels[idx]
        preds, loss = _step(model, optimizer, x, y, annotate, autocast)
        total_loss += loss.detach() * len(idx)
        total_correct += preds.argmax(dim=1).eq(y).sum()
    return EpochResult(total_loss.item(), int(total_correct.item()), n)


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Predicted labels for `images` (uint8 or float [N,1,28,28]), `batch_size` at a time.

    With `device`, each batch is moved there and its labels come back to where `images`
    are (end to end); without it the work runs where `images` already are (compute only).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model.eval()
    target = images.device if device is None else torch.device(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(target)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        out.append(model(x).argmax(dim=1))
    preds = torch.cat(out) if out else torch.empty(0, dtype=torch.int64, device=target)
    return preds.to(images.device)


def accuracy(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of predictions that match their labels."""
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    return preds.eq(labels.to(preds.device)).float().mean().item() if len(labels) else float("nan")


def confusion_matrix(
    preds: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_CLASSES
) -> torch.Tensor:
    """[true, predicted] counts, built in one bincount: no per-sample Python loop."""
    if preds.shape != labels.shape:
        raise ValueError(
            f"preds {tuple(preds.shape)} and labels {tuple(labels.shape)} differ in shape"
        )
    labels = labels.to(preds.device)
    flat = labels.to(torch.int64) * num_classes + preds.to(torch.int64)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )
