"""The work a case does, counted as its pipeline runs it: FLOPs by torch's flop counter, operations by a dispatch
count of the pipeline's own epoch or pass (its DataLoader, copies and .item() included), copies as
the loops make them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import Subset
from torch.utils.flop_counter import FlopCounterMode

from bench.format.devices import device_kind

from .ladder import InferenceConfig, TrainConfig
from .model import Network
from .predictor import Predictor
from .trainer import Trainer

__all__ = ["COUNTED_ON", "Work", "inference_copies", "inference_work", "train_copies", "train_work"]

# The batch sizes the counts are taken at. An epoch of 3 batches less one of 2 is one step; one of 2
# batches less two steps is what an epoch runs once (its order, running totals and their .item());
# the same at a second batch size gives what a step adds per image of its batch: the DataLoader
# pipelines convert and collate each image with operations of its own (ToTensor), so their steps
# grow with the batch (at batch 100 the notes' loop runs 435 operations a step, at 1,000 about
# 3,100), where a step on resident data runs the same operations at any size. Every counted
# operation (convolution, matrix product) is linear in the batch, so FLOPs per image do not depend
# on it either. Small batches keep counting cheap on any device.
COUNTED_ON = (2, 4)
# What counted: FlopCounterMode counts convolutions and matrix products (2 FLOPs a multiply-add),
# not element-wise operations or Adam's update; the operations are ATen's, views left out.
COUNTER = "torch.utils.flop_counter (convolutions and matrix products, 2 FLOPs a multiply-add); ATen operations"
# Bytes of what the loops copy between host and device: ToTensor's float32 images (of 1x28x28 for
# the notes' CNN: IMAGE_BYTES; of the model's input shape for another), int64 labels and shuffled
# indices, and the two running totals .item() reads back (a float32 loss, an int64 count).
IMAGE_BYTES = 28 * 28 * 4
INDEX_BYTES = 8
TOTALS_BYTES = (4, 8)


class _Operations(TorchDispatchMode):
    """Counts the ATen operations that do work (views are left out: they only relabel memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class Work:
    """What one step (a training step, an inference batch) and one epoch (or pass) run, counted."""

    flops_per_image: float
    # a step's operations at any batch size (None: not counted, as under torch.compile)
    ops_fixed: int | None
    # and these more for each image of its batch (the DataLoader's per-image work)
    ops_per_image: int | None
    ops_per_epoch: int | None  # once an epoch or pass, beside its steps

    def ops_at(self, batch_size: int) -> int | None:
        """The operations a step of `batch_size` images runs."""
        if self.ops_fixed is None or self.ops_per_image is None:
            return None
        return self.ops_fixed + self.ops_per_image * batch_size

    def record(self, batch_size: int, copies: list[dict]) -> dict:
        """extra_info.work of a case at `batch_size` that makes `copies` (a fresh dict: the counts are cached)."""
        return {
            "flops_per_image": self.flops_per_image,
            "ops_per_step": self.ops_at(batch_size),
            "ops_fixed": self.ops_fixed,
            "ops_per_image": self.ops_per_image,
            "ops_per_epoch": self.ops_per_epoch,
            "copies": copies,
            "counted_on": list(COUNTED_ON),
            "counter": COUNTER,
        }


def _counted(run) -> tuple[float, int]:
    """(FLOPs, operations) of one call of `run`, counted under torch's flop counter and a dispatch count as the
    operations are dispatched (nothing here waits for a device: the counts are complete when `run`
    returns)."""
    flops = FlopCounterMode(display=False)
    ops = _Operations()
    with flops, ops:
        run()
    return flops.get_total_flops(), ops.ops


def _from_epochs(prepare, epoch) -> Work:
    """Work from `epoch(batch_size, batches)`, which runs a whole epoch or pass of that many batches of that size
    once `prepare(batch_size, batches)` has set it up and run it once, uncounted (as a case's setup
    and warm-up are not timed): the first calls' one-off work (starting the DataLoader's workers, a
    kernel's choice, a lazy buffer) stays out of the counts."""
    small, large = COUNTED_ON

    def counted(batch_size: int, batches: int) -> tuple[float, int]:
        prepare(batch_size, batches)
        return _counted(lambda: epoch(batch_size, batches))

    flops_3, ops_3 = counted(small, 3)
    flops_2, ops_2 = counted(small, 2)
    _, ops_large = counted(large, 2)
    step = ops_3 - ops_2
    per_epoch = ops_2 - 2 * step
    per_image = round(((ops_large - per_epoch) / 2 - step) / (large - small))
    return Work(
        flops_per_image=(flops_3 - flops_2) / small,
        ops_fixed=step - per_image * small,
        ops_per_image=per_image,
        ops_per_epoch=per_epoch,
    )


_CACHE: dict[tuple, Work] = {}


def train_work(
    config: TrainConfig,
    device: str,
    split,
    build: Callable[[], nn.Module] = Network,
    model: str = "",
) -> Work:
    """A training pipeline's work on `device`, counted on its own epochs over the first images of `split` (a
    fmnist_model Split): its DataLoader and copies, in its memory format and precision. Under
    torch.compile its operations are left uncounted (the generated kernels fuse them; its FLOPs are
    the eager step's); a CUDA graph replays the eager step's kernels, which are what is counted.
    `build` makes the model (`model` names it). Cached per model, config and device."""
    key = ("train", model, config, device)
    if key not in _CACHE:
        eager = dataclasses.replace(config, compile_mode=None, cuda_graph=False, ragged="eager")
        where = torch.device(device)
        trainers: dict[tuple[int, int], Trainer] = {}

        def prepare(batch_size: int, batches: int) -> None:
            # A trainer whose epoch is exactly these batches (a persistent DataLoader runs whole
            # epochs only), run once, then put back to its first weights, as a case's warm-up and
            # setup do.
            n = batch_size * batches
            torch.manual_seed(0)
            trainer = Trainer(
                eager,
                where,
                batch_size,
                dataset=Subset(split.dataset, range(n)),
                images=split.images[:n],
                labels=split.labels[:n],
                build=build,
            )
            trainer.epoch()
            trainer.reset()
            trainers[batch_size, batches] = trainer

        def epoch(batch_size: int, batches: int):
            return trainers.pop((batch_size, batches)).epoch()

        work = _from_epochs(prepare, epoch)
        if config.compile_mode is not None:
            work = dataclasses.replace(work, ops_fixed=None, ops_per_image=None, ops_per_epoch=None)
        _CACHE[key] = work
    return _CACHE[key]


def inference_work(
    config: InferenceConfig,
    device: str,
    mode: str,
    images: torch.Tensor,
    build: Callable[[], nn.Module] = Network,
    model: str = "",
) -> Work:
    """An inference pipeline's work on `device` in `mode` (compute: the images already there; end_to_end: each
    batch moved there and the labels brought back), counted on its own passes over the first of
    `images` (float, on the host). Operations under torch.compile are left uncounted, as for
    training. `build` makes the model (`model` names it). Cached per model, config, device and
    mode."""
    key = ("inference", model, config, device, mode)
    if key not in _CACHE:
        eager = dataclasses.replace(config, compile_mode=None, cuda_graph=False, ragged="eager")
        where = torch.device(device)
        end_to_end = mode == "end_to_end"
        torch.manual_seed(0)
        network = build()
        first = images[: 3 * max(COUNTED_ON)]
        placed = first if end_to_end else first.to(where)
        predictors: dict[int, Predictor] = {}

        def prepare(batch_size: int, batches: int) -> None:
            predictors[batch_size] = Predictor(eager, network, batch_size, where)
            run(batch_size, batches)

        def run(batch_size: int, batches: int):
            return predictors[batch_size](placed[: batch_size * batches], device=end_to_end)

        work = _from_epochs(prepare, run)
        if config.compile_mode is not None:
            work = dataclasses.replace(work, ops_fixed=None, ops_per_image=None, ops_per_epoch=None)
        _CACHE[key] = work
    return _CACHE[key]


def _batches(images: int, batch_size: int) -> list[tuple[int, int]]:
    """[(count, batch size)] of a pass over `images`: its full batches and its last, smaller one."""
    full, rest = divmod(images, batch_size)
    return [(n, size) for n, size in ((full, batch_size), (1 if rest else 0, rest)) if n]


def _copy(direction: str, memory: str, nbytes: int, count: int) -> dict:
    return {"direction": direction, "memory": memory, "bytes": nbytes, "count": count}


def train_copies(
    config: TrainConfig, device: str, images: int, batch_size: int, image_bytes: int = IMAGE_BYTES
) -> list[dict]:
    """The copies between host and device an epoch of `config` makes, as fmnist_model/loops.py makes them:
    a DataLoader batch's images and labels each (pinned where the loader pins), and its two .item()
    every batch (the notes' loop) or at the end; the resident loop's shuffled order once, and its
    totals at the end. None on the CPU: a copy within the host is no copy between host and device.
    """
    if device_kind(device).host:
        return []
    out = []
    if config.data == "dataloader":
        memory = "pinned" if config.pin_memory else "pageable"
        for count, size in _batches(images, batch_size):
            out += [
                _copy("h2d", memory, size * image_bytes, count),
                _copy("h2d", memory, size * INDEX_BYTES, count),
            ]
        reads = math.ceil(images / batch_size) if config.sync_per_batch else 1
    else:
        # the epoch's order, to the device
        out.append(_copy("h2d", "pageable", images * INDEX_BYTES, 1))
        reads = 1
    out += [_copy("d2h", "pageable", nbytes, reads) for nbytes in TOTALS_BYTES]
    return out


def inference_copies(
    device: str, mode: str, images: int, batch_size: int, image_bytes: int = IMAGE_BYTES
) -> list[dict]:
    """The copies a pass makes (Predictor.__call__): end to end, each batch's images to the device, and the
    labels back once, concatenated on the device; compute mode none (the images are there, the
    labels stay)."""
    if device_kind(device).host or mode != "end_to_end":
        return []
    out = [
        _copy("h2d", "pageable", size * image_bytes, count)
        for count, size in _batches(images, batch_size)
    ]
    return [*out, _copy("d2h", "pageable", images * INDEX_BYTES, 1)]
