"""The one device-aware clock: wait for the device, then read perf_counter. No other module reads a clock."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.measure.devices import synchronizer

__all__ = [
    "DeviceClock",
    "Stopwatch",
    "every",
    "process_age",
    "sample_calls",
    "synchronizer",
    "timed_call",
]


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


def timed_call(clock: Callable[[], float], fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call, between two reads of `clock` (a DeviceClock waits for the device)."""
    start = clock()
    result = fn()
    return clock() - start, result


def sample_calls(
    clock: Callable[[], float],
    fn: Callable[[int], object],
    *,
    min_calls: int,
    max_calls: int,
    max_time: float,
) -> list[float]:
    """Time `fn(0)`, `fn(1)`, ... one call at a time: at least `min_calls`, then while the
    calls so far took under `max_time` seconds, at most `max_calls`. Returns each call's seconds.

    Each call is its own timed region, so with a DeviceClock each one ends when the device
    has finished it: a request's latency, not a share of a pipelined pass.
    """
    times: list[float] = []
    while len(times) < max_calls and (len(times) < min_calls or sum(times) < max_time):
        index = len(times)
        seconds, _ = timed_call(clock, lambda: fn(index))  # noqa: B023 - called at once, in this iteration
        times.append(seconds)
    return times


class Stopwatch:
    """Wall-clock seconds since it was made (plus `already` seconds): for progress and costs, not for results."""

    def __init__(
        self, clock: Callable[[], float] = time.perf_counter, already: float = 0.0
    ) -> None:
        self._clock = clock
        self._start = clock() - already

    def __call__(self) -> float:
        return self._clock() - self._start


def every(
    period_s: float,
    stop: threading.Event,
    fn: Callable[[], None],
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Call `fn()` every `period_s` seconds, on a fixed schedule, until `stop` is set; returns the calls made.

    The schedule is kept from the start, not from each call's end, so a slow call does not
    stretch the period; ticks missed while a call ran are skipped, not made up in a burst.
    """
    start = clock()
    tick = 1
    calls = 0
    while not stop.wait(max(0.0, start + tick * period_s - clock())):
        fn()
        calls += 1
        tick = max(tick + 1, int((clock() - start) / period_s) + 1)
    return calls


def process_age(proc: Path = Path("/proc")) -> float:
    """Seconds since this process started, from Linux's /proc; 0.0 where that is not known.

    A run's wall time starts when the command does, before Python has imported torch (a few
    seconds that no hook of the run sees), so that is where the run's stopwatch starts.
    """
    try:
        # Field 22 of /proc/self/stat is the start time in clock ticks since boot; the name
        # (field 2) is in parentheses and may hold spaces, so count from its closing one.
        start_ticks = int((proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float((proc / "uptime").read_text().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
