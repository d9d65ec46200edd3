"""A device running out of memory in one case becomes a recorded skip, with its memory released."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

__all__ = ["OUT_OF_MEMORY", "skip_on_out_of_memory"]

# torch.OutOfMemoryError since 2.5; torch.cuda.OutOfMemoryError (the same class) before.
OUT_OF_MEMORY: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@contextmanager
def skip_on_out_of_memory(device: str, what: str) -> Iterator[None]:
    """Run a case; if the device runs out of memory, free what it held and skip with the reason.

    The skip is raised after the except block ends, so the traceback (and every tensor its
    frames hold) is gone before the cache is emptied: the next case starts with the memory back.
    """
    reason = None
    try:
        yield
    except OUT_OF_MEMORY as exc:
        reason = f"{device}: out of memory at {what}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"
    if reason is None:
        return
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    pytest.skip(reason)
