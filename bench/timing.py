"""The one device-aware clock: wait for the device, then read perf_counter. No other module reads a clock."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["DeviceClock", "synchronizer"]


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """A zero-argument call that returns only when `device` has finished all queued work.

    CUDA and MPS run kernels asynchronously: without this, a timer would stop when the
    host finished *launching* work, not when the device finished doing it.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    if device.type == "cpu":
        return lambda: None  # CPU ops are done when they return
    raise ValueError(f"no synchronizer for device type {device.type!r}")


class DeviceClock:
    """A pytest-benchmark timer for one device: synchronize, then read the clock.

    pytest-benchmark reads its timer at the start and at the end of each round, so with
    this clock a round starts only after earlier work (setup's copies, say) is done and
    ends only when the round's own work is. As torch.utils.benchmark's Timer does for CUDA.
    `clock` and `synchronize` are injectable so the ordering is tested without a GPU.
    """

    def __init__(
        self,
        device: torch.device | str,
        *,
        clock: Callable[[], float] = time.perf_counter,
        synchronize: Callable[[], None] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self._clock = clock
        self._synchronize = synchronize if synchronize is not None else synchronizer(self.device)
        # pytest-benchmark saves the timer's __name__ in each benchmark's options.
        self.__name__ = f"DeviceClock({self.device})"

    def __call__(self) -> float:
        self._synchronize()
        return self._clock()

    def __repr__(self) -> str:
        return self.__name__
