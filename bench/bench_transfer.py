"""Transfer family: moving 1 to 60,000 images host<->device, pageable and pinned, float32 and uint8."""

from __future__ import annotations

import math

import torch

from bench.format import records as fmt
from bench.measure.clock import timed_call
from bench.measure.guard import skip_on_out_of_memory
from bench.measure.rounds import run_rounds
from bench.run import data

FAMILY = "transfer"
# uint8 is what the files hold and a quarter of float32's bytes: the cheapest form to move.
DTYPES = {"float32": torch.float32, "uint8": torch.uint8}
_HOST = torch.device("cpu")
IMAGE_SHAPE = (1, 28, 28)  # the notes' FashionMNIST image


def _buffer(
    size: int,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    where: torch.device,
    pinned: bool,
    fill: torch.Tensor,
) -> torch.Tensor:
    # Written through, so a pageable buffer's pages are really mapped before any round.
    tensor = torch.empty(size, *shape, dtype=dtype, device=where)
    tensor.copy_(fill.expand_as(tensor))
    return tensor.pin_memory() if pinned else tensor


def test_transfer(
    benchmark, plan, clock, telemetry, model, device, cpu_threads, direction, memory, size, dtype
):
    """`size` images of the model's input shape (the notes' 1x28x28 unless --model names another)."""
    benchmark.group = FAMILY
    target = torch.device(device)
    source, destination = {"h2d": (_HOST, target), "d2h": (target, _HOST), "h2h": (_HOST, _HOST)}[
        direction
    ]
    pinned = memory == "pinned"
    with skip_on_out_of_memory(device, f"{size} images of {dtype}"):
        # The source holds a pattern and the destination zeros, so the check below sees a copy that
        # did not happen.
        shape = tuple(model.input_shape) if model is not None else IMAGE_SHAPE
        pattern = (torch.arange(math.prod(shape)) % 251).reshape(1, *shape)
        src = _buffer(size, shape, DTYPES[dtype], source, pinned and source == _HOST, pattern)
        dst = _buffer(
            size,
            shape,
            DTYPES[dtype],
            destination,
            pinned and destination == _HOST,
            torch.zeros(1),
        )
        benchmark.extra_info.update(data.model_part(model))
        benchmark.extra_info.update(
            fmt.transfer_figures(images=size, nbytes=src.numel() * src.element_size())
        )
        # A copy into a buffer allocated once: the round times the link, not the allocator.
        # non_blocking only matters with pinned host memory; the device clock waits for the copy.
        copy = lambda: dst.copy_(src, non_blocking=pinned)  # noqa: E731
        # Warm-up: two copies, the second one timed as the round estimate (the first maps
        # pages, registers the pinned buffer and starts the copy engines).
        run_rounds(
            benchmark,
            clock,
            plan.budgets[FAMILY],
            telemetry=telemetry,
            target=copy,
            warmup=copy,
            scale=1.0,
            calibrate=lambda _first_s: timed_call(clock, copy)[0],
            warmup_record={"copies": 2},
        )
    assert torch.equal(dst[[0, -1]].cpu(), src[[0, -1]].cpu()), (
        f"{direction} copy of {size} images did not arrive"
    )
