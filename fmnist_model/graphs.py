"""What the compiling and capturing ladder steps share: a model through torch.compile, and steps captured as CUDA graphs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .ladder import GRAPH_WARMUP_STEPS

__all__ = ["capture", "compiled"]


def compiled(model: nn.Module, mode: str) -> Callable:
    """`model` through torch.compile with static shapes, dynamo's caches emptied first.

    Every Network shares one forward code object, and dynamo keeps a bounded number of compiled
    entries per code object (8 in torch 2.x) before it silently runs the code uncompiled: a run
    of many compiled cases (--ladder full --pipelines all: shapes x devices x grad modes) would
    then time eager epochs recorded as compiled. Each pipeline compiles afresh (inductor's
    on-disk cache keeps that cheap), so its entries are its own.
    """
    torch._dynamo.reset()
    return torch.compile(model, mode=mode, dynamic=False)


def capture(
    device: torch.device,
    shapes: list[int],
    step: Callable[[int], object],
    *,
    before: Callable[[int], object] = lambda _size: None,
) -> dict[int, tuple[torch.cuda.CUDAGraph, object]]:
    """Each shape's `step(size)` captured as one CUDA graph: {size: (graph, what the step returned while captured,
    the static output its replays write)}. torch's documented whole-network capture (CUDA semantics
    notes, "CUDA Graphs"): each shape's step runs GRAPH_WARMUP_STEPS times on a side stream first,
    so that lazy state (Adam's, cuBLAS workspaces, cuDNN's choices) exists before capture;
    `before(size)` runs ahead of every run and of the capture (a training step sets its grads to
    None, so that replays write them afresh). The shapes share one memory pool: they never run at
    once."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for size in shapes:
            for _ in range(GRAPH_WARMUP_STEPS):
                before(size)
                step(size)
    torch.cuda.current_stream(device).wait_stream(side)
    pool, captured = None, {}
    for size in shapes:
        before(size)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            out = step(size)
        pool = graph.pool()
        captured[size] = (graph, out)
    return captured
