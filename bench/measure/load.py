"""How busy the whole machine was with other work across a run: /proc/stat sampled in a thread from start to end.

A case's own telemetry (bench/measure/host.py) cannot tell for a short case: a 2 ms copy spans under
one tick of /proc/stat. This sampler runs for the whole run, so every case is judged over at least
MIN_TICKS of CPU time (and 10 a CPU) around it: its own span, widened back into the samples before
it.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from bench.measure.clock import Stopwatch
from bench.measure.host import MIN_TICKS, OUTSIDE_SHARE, own_ticks

__all__ = ["PERIOD_S", "MachineLoad", "load_average"]

# Half a second: on 2 CPUs at Linux's 100 ticks a second each interval holds 100 ticks, over
# MIN_TICKS, and a read of /proc costs well under a millisecond, so the sampler takes under 0.1%
# of one core.
PERIOD_S = 0.5


def load_average(proc: Path = Path("/proc")) -> tuple[float, int] | None:
    """(the 1-minute load average, the CPUs online) before anything runs, or None where /proc has none."""
    try:
        one = float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return one, os.cpu_count() or 1


class MachineLoad:
    """Samples of (time, all CPU ticks, busy ticks, this process's and its children's ticks), every PERIOD_S."""

    def __init__(self, proc: Path = Path("/proc"), period_s: float = PERIOD_S, clock=None) -> None:
        # Seconds since the sampler was made, from the timing module's clock (the only module that
        # reads one).
        self.proc, self.period_s, self.clock = proc, period_s, clock or Stopwatch()
        self.samples: list[tuple[float, int, int, int]] = []
        self.cpus: int | None = None
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> tuple[int, int, int]:
        lines = (self.proc / "stat").read_text().splitlines()
        # user nice system idle iowait irq softirq steal
        fields = [int(x) for x in lines[0].split()[1:9]]
        self.cpus = sum(1 for line in lines if re.match(r"cpu\d+ ", line))
        total = sum(fields)
        return total, total - fields[3] - fields[4], own_ticks(self.proc)

    def mark(self) -> float:
        """A sample now (a case's start or end), besides the thread's: clock, read and append under one lock, so
        the samples stay in order whichever thread takes them. Returns its time (on this clock)."""
        with self._lock:
            now = self.clock()
            if self.reason is not None:
                return now
            try:
                reading = self._read()
            except (OSError, ValueError, IndexError) as exc:
                self.reason = f"/proc could not be read: {exc}"
                return now
            self.samples.append((now, *reading))
            return now

    def _needed(self) -> int:
        # Each CPU's counter rounds to whole ticks: over 10 ticks a CPU, those roundings stay under
        # a tenth.
        return max(MIN_TICKS, 10 * (self.cpus or 1))

    def start(self) -> None:
        self.mark()
        if self.reason is None:
            self._thread = threading.Thread(
                target=self._loop, name="fmnist-bench-load", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.mark()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.period_s)
        self.mark()

    def _share(self, first: int, last: int) -> dict:
        with self._lock:
            a, b = self.samples[first], self.samples[last]
        total, busy, own = b[1] - a[1], b[2] - a[2], b[3] - a[3]
        outside = max(busy - own, 0) / total if total > 0 else 0.0
        return {
            "available": True,
            "outside_share": outside,  # of all the machine's CPU time: other processes, the hypervisor's steal
            "window_s": b[0] - a[0],
            "busy": outside > OUTSIDE_SHARE,
        }

    def case(self, started: float) -> dict:
        """The machine's other work over a case that began at `started` (this clock) and ends now: over its
        own span, or, where that holds under MIN_TICKS, widened back into the samples before it."""
        self.mark()
        if self.reason is not None or len(self.samples) < 2:
            return {"available": False, "reason": self.reason or "one sample: no span to tell"}
        needed = self._needed()
        with self._lock:
            last = len(self.samples) - 1
            first = max((i for i, s in enumerate(self.samples) if s[0] <= started), default=0)
            while first > 0 and (
                first == last or self.samples[last][1] - self.samples[first][1] < needed
            ):
                first -= 1
            ticks = self.samples[last][1] - self.samples[first][1]
        if ticks < needed:
            return {
                "available": False,
                "reason": f"too short to tell: {ticks} ticks of /proc/stat since the run began, under {needed}",
            }
        return self._share(first, last)

    def record(self) -> dict:
        """The whole run's: its outside share, and the share of its intervals that were busy."""
        if self.reason is not None or len(self.samples) < 2:
            return {"available": False, "reason": self.reason or "one sample: no span to tell"}
        with self._lock:
            samples = list(self.samples)
        needed = self._needed()
        if samples[-1][1] - samples[0][1] < needed:
            return {
                "available": False,
                "reason": f"too short to tell: {samples[-1][1] - samples[0][1]} ticks of "
                f"/proc/stat across the run, under {needed}",
            }
        whole = self._share(0, len(samples) - 1)
        # The run cut into spans of at least MIN_TICKS each (a case's marks make some samples close
        # together).
        steps, anchor = [], samples[0]
        for sample in samples[1:]:
            total = sample[1] - anchor[1]
            if total >= needed:
                steps.append((total, max((sample[2] - anchor[2]) - (sample[3] - anchor[3]), 0)))
                anchor = sample
        return {
            **whole,
            "cpus": self.cpus,
            "period_s": self.period_s,
            "intervals": len(steps),  # of at least max(MIN_TICKS, 10 ticks a CPU) each
            "busy_intervals": sum(outside / total > OUTSIDE_SHARE for total, outside in steps),
            "busiest_share": max((outside / total for total, outside in steps), default=None),
            "busy_above": OUTSIDE_SHARE,
        }
