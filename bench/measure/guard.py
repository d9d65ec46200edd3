"""A device running out of memory in one case becomes a recorded skip, with its memory released."""

from __future__ import annotations

import gc
import traceback

import pytest
import torch

from bench.measure.devices import release_memory

__all__ = ["OUT_OF_MEMORY", "skip_on_out_of_memory"]

# torch.OutOfMemoryError since 2.5; torch.cuda.OutOfMemoryError (the same class) before.
OUT_OF_MEMORY: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class skip_on_out_of_memory:  # noqa: N801 - used as a context manager, named like one
    """`with skip_on_out_of_memory(device, what):` run a case; on out-of-memory, free and skip.

    The error's traceback holds every frame between here and the allocation that failed, and
    with them the batch's activations. Those finished frames are cleared first, then garbage
    is collected and the CUDA cache emptied, then the case is skipped with the reason: the
    next case starts with the memory back, and the suite goes on.
    """

    def __init__(self, device: str, what: str) -> None:
        self.device = device
        self.what = what

    def __enter__(self) -> skip_on_out_of_memory:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or not issubclass(exc_type, OUT_OF_MEMORY):
            return False  # success, or another error: not ours to handle
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        reason = f"{self.device}: out of memory at {self.what}: {detail}"
        # drops the locals of every finished frame (the running test's stays)
        traceback.clear_frames(tb)
        del exc, tb
        gc.collect()
        release_memory(self.device)
        pytest.skip(reason)
