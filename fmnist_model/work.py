"""The work a step does, counted, not written by hand: FLOPs by torch's flop counter, operations by a dispatch count."""

from __future__ import annotations

import contextlib
import functools

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from . import loops
from .model import Network

__all__ = ["COUNTED_ON", "counted", "inference_work", "train_work"]

# The batch the counts are taken on. Every counted operation (convolution, matrix product) is linear in
# the batch, so FLOPs per image do not depend on it (the same at 1 and at 64: tests/test_limits.py), and a
# step runs the same operations at any batch size; a small batch keeps counting cheap on any device.
COUNTED_ON = 8


class _Operations(TorchDispatchMode):
    """Counts the ATen operations that do work (views are left out: they only relabel memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops += 1
        return func(*args, **(kwargs or {}))


def _counted(run, device: torch.device) -> tuple[int, int]:
    """(FLOPs, operations) of one call of `run`, counted under torch's flop counter and a dispatch count."""
    flops = FlopCounterMode(display=False)
    ops = _Operations()
    with flops, ops:
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return flops.get_total_flops(), ops.ops


def _formats(memory_format: str, precision: str, device: torch.device):
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bfloat16" else contextlib.nullcontext()
    return fmt, cast


def _record(counts: tuple[float, int]) -> dict:
    """A step's counted work as its case saves it (a fresh dict: the counts are cached per device and step)."""
    return {"flops_per_image": counts[0], "ops_per_step": counts[1], "counted_on": COUNTED_ON, "counter": _COUNTER}


def counted(config, device: str) -> dict:
    """A pipeline's step counted in its config's layout and precision (a TrainConfig counts a training step,
    an InferenceConfig a batch); its operations left uncounted under torch.compile, whose generated kernels
    fuse them (its FLOPs are the eager step's)."""
    count = train_work if hasattr(config, "data") else inference_work
    work = count(device, config.memory_format, config.precision)
    if config.compile_mode is not None:
        work["ops_per_step"] = None
    return work


def train_work(device: str, memory_format: str = "contiguous", precision: str = "float32") -> dict:
    """One training step's counted work on `device`: see _train_counts."""
    return _record(_train_counts(device, memory_format, precision))


def inference_work(device: str, memory_format: str = "contiguous", precision: str = "float32") -> dict:
    """One inference batch's counted work on `device`: see _inference_counts."""
    return _record(_inference_counts(device, memory_format, precision))


@functools.lru_cache(maxsize=64)
def _train_counts(device: str, memory_format: str, precision: str) -> tuple[float, int]:
    """One training step of the resident loop on `device` (gather, forward, loss, backward, Adam, running
    totals), in the pipeline's memory format and precision: FLOPs per image (forward and backward) and
    the operations a step runs. A second step is counted, after a first has made Adam's state."""
    where = torch.device(device)
    fmt, _ = _formats(memory_format, precision, where)
    dtype = torch.bfloat16 if precision == "bfloat16" else None
    torch.manual_seed(0)
    model = Network().to(where, memory_format=fmt)
    optimizer = loops.make_optimizer(model)
    images = torch.randint(0, 256, (COUNTED_ON, 1, 28, 28), dtype=torch.uint8, device=where)
    labels = torch.randint(0, 10, (COUNTED_ON,), device=where)

    def step():
        order = torch.arange(COUNTED_ON)
        loops.train_epoch_resident(
            model, optimizer, images, labels, COUNTED_ON, order=order, memory_format=fmt, autocast_dtype=dtype
        )

    step()
    flops, ops = _counted(step, where)
    return flops / COUNTED_ON, ops


@functools.lru_cache(maxsize=64)
def _inference_counts(device: str, memory_format: str, precision: str) -> tuple[float, int]:
    """One inference batch on `device` (layout, forward under inference_mode, argmax), in the pipeline's
    memory format and precision: FLOPs per image and the operations a batch runs."""
    where = torch.device(device)
    fmt, cast = _formats(memory_format, precision, where)
    torch.manual_seed(0)
    model = Network().to(where, memory_format=fmt).eval()
    x = torch.rand(COUNTED_ON, 1, 28, 28, device=where)

    def batch():
        with torch.inference_mode(), cast:
            model(x.contiguous(memory_format=fmt)).argmax(dim=1)

    batch()
    flops, ops = _counted(batch, where)
    return flops / COUNTED_ON, ops


# What counted: FlopCounterMode counts convolutions and matrix products (2 FLOPs a multiply-add), not
# element-wise operations or Adam's update; the operations are ATen's, views left out.
_COUNTER = "torch.utils.flop_counter (convolutions and matrix products, 2 FLOPs a multiply-add); ATen operations"
