"""What the hardware did while a case was timed: energy, power, clocks, utilisation, throttling, CPU load and memory."""

from __future__ import annotations

import math
import statistics
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.format import records as fmt
from bench.format.devices import device_kind
from bench.measure.clock import Stopwatch, every
from bench.measure.host import OUTSIDE_SHARE, Host, spread

__all__ = [
    "OUTSIDE_SHARE",
    "PERIOD_S",
    "THROTTLE_REASONS",
    "THROTTLING",
    "Telemetry",
    "add_per_images",
    "case_flags",
]

# NVML refreshes power, utilisation and the energy counter every 20-100 ms (issue 10, measured
# on the H100 host): sampling faster re-reads the same values. At 0.1 s a second-long epoch
# gets 10 samples, and the sampler wakes 10 times a second for well under a millisecond each
# (python -m bench check-telemetry measures that it does not move the timings).
PERIOD_S = 0.1
# The energy counter's worst update interval (issue 10): each end of the span can be this
# stale, so a span under 2 s can be off by more than 10% (2 x 0.1 s / 2 s).
COUNTER_UPDATE_S = 0.1
RELIABLE_SPAN_S = 2 * COUNTER_UPDATE_S / 0.10
# How long the end of a case waits for the sampler to stop: a wedged NVML call must not hang the
# run.
_JOIN_S = 2.0

# NVML's clocks-event (formerly throttle) reason bits, from nvml.h (nvmlClocksEventReason*).
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# The reasons that mean "clocks held below what the work asked for, by power or heat": a
# throttled case. Not counted: gpu_idle (no work to clock up for: a launch-bound case waits
# between kernels), applications/display clock settings (what the administrator set, recorded
# with the machine), sync_boost (clocks matched to other GPUs of a group, not this one's state).
THROTTLING = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)


class _Gpu:
    """One GPU through NVML (power, energy, clocks, utilisation, temperature, throttling) and torch (peak memory)."""

    def __init__(self, device: str, nvml_index: int | None, reason: str | None) -> None:
        self.device = device
        self.index = nvml_index
        self.reason = reason
        self.pynvml = None
        self.handle = None
        self.samples = 0
        self.series: dict[str, list[float]] = {
            k: []
            for k in (
                "power_w",
                "sm_clock_mhz",
                "memory_clock_mhz",
                "gpu_util_pct",
                "memory_util_pct",
            )
        }
        self.series["temperature_c"] = []
        # (seconds, watts) for integrating without the counter
        self.power_at: list[tuple[float, float]] = []
        self.reasons: dict[str, int] = {}
        self.errors: dict[str, dict] = {}
        self.energy0: int | None = None
        self.energy1: int | None = None
        self.counter_note: str | None = None
        self.cuda = device_kind(device).nvml

    def _call(self, name: str, fn: Callable[[], object]):
        """One NVML query; None and a note of the first failure when it raises (a GPU lost half-way keeps the case)."""
        try:
            return fn()
        # NVMLError, or anything a broken driver raises: the case's timing stands
        except Exception as exc:
            # first_sample: the reading that failed first (1 is the one just before the first
            # round).
            slot = self.errors.setdefault(
                name,
                {"error": str(exc) or type(exc).__name__, "count": 0, "first_sample": self.samples},
            )
            slot["count"] += 1
            return None

    def begin(self, at: float) -> None:
        if self.cuda:
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats(self.device)
        if self.index is None:
            return
        try:
            import pynvml
        except ImportError as exc:
            self.reason = f"pynvml (nvidia-ml-py) is not installed: {exc}"
            return
        try:
            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception as exc:
            self.reason = f"NVML failed to start for GPU {self.index}: {exc}"
            return
        self.pynvml = pynvml
        try:
            # mJ since the driver loaded
            self.energy0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as exc:  # pre-Volta GPUs have no counter: integrate sampled power instead
            self.counter_note = f"no total-energy counter: {exc}"
        self.sample(at)

    def sample(self, at: float) -> None:
        if self.pynvml is None:
            return
        nv, h = self.pynvml, self.handle
        self.samples += 1
        power = self._call("power", lambda: nv.nvmlDeviceGetPowerUsage(h))
        if power is not None:
            self.series["power_w"].append(power / 1000)
            self.power_at.append((at, power / 1000))
        for key, kind in (
            ("sm_clock_mhz", nv.NVML_CLOCK_SM),
            ("memory_clock_mhz", nv.NVML_CLOCK_MEM),
        ):
            value = self._call(key, lambda kind=kind: nv.nvmlDeviceGetClockInfo(h, kind))
            if value is not None:
                self.series[key].append(value)
        util = self._call("utilization", lambda: nv.nvmlDeviceGetUtilizationRates(h))
        if util is not None:
            self.series["gpu_util_pct"].append(util.gpu)
            self.series["memory_util_pct"].append(util.memory)
        temp = self._call(
            "temperature", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
        )
        if temp is not None:
            self.series["temperature_c"].append(temp)
        # Renamed "clocks event reasons" in NVML 12.x; older bindings have only the throttle name.
        query = (
            getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        mask = self._call("clocks_event_reasons", lambda: query(h))
        if mask is not None:
            for bit, name in THROTTLE_REASONS.items():
                if mask & bit:
                    self.reasons[name] = self.reasons.get(name, 0) + 1

    def end(self, at: float, sampled: bool) -> None:
        if self.pynvml is None:
            return
        # (not when the sampler is wedged in a call: this thread must not join it there)
        if sampled:
            self.sample(at)
        if self.energy0 is not None:
            self.energy1 = self._call(
                "energy", lambda: self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            )
        self._call("shutdown", self.pynvml.nvmlShutdown)

    def record(self, span_s: float, rounds: int) -> dict:
        out: dict = {"device": self.device, "nvml_index": self.index}
        if self.cuda:
            import torch

            if torch.cuda.is_available():
                out["peak_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(self.device)
                out["peak_memory_reserved_bytes"] = torch.cuda.max_memory_reserved(self.device)
        if self.pynvml is None:
            out.update(available=False, reason=self.reason or "no NVML for this device")
            return out
        energy, source = None, None
        if self.energy0 is not None and self.energy1 is not None:
            energy, source = (self.energy1 - self.energy0) / 1000, "total-energy counter"
        elif len(self.power_at) >= 2:
            # Trapezoids between samples: a power swing shorter than the period is missed.
            energy = sum(
                (t1 - t0) * (p0 + p1) / 2
                for (t0, p0), (t1, p1) in zip(self.power_at, self.power_at[1:], strict=False)
            )
            source = "sampled power" + (
                " (the counter failed during the case)" if self.energy0 is not None else ""
            )
        power = self.series["power_w"]
        reliable = (
            span_s >= RELIABLE_SPAN_S
            if source == "total-energy counter"
            else len(self.power_at) >= 10
        )
        out.update(
            available=True,
            energy_j=energy,
            energy_source=source,
            energy_per_round_j=energy / rounds if energy is not None and rounds else None,
            # The counter updates every 20-100 ms: each end may be one update stale.
            energy_reliable=energy is not None and reliable,
            mean_power_w=energy / span_s
            if energy is not None and span_s > 0
            else (statistics.fmean(power) if power else None),
            peak_power_w=max(power) if power else None,
            samples=self.samples,
            **{key: spread(values) for key, values in self.series.items() if key != "power_w"},
            clocks_event_reasons=dict(sorted(self.reasons.items())),
            throttled=any(name in THROTTLING for name in self.reasons),
        )
        if self.counter_note is not None:
            out["energy_counter"] = self.counter_note
        if self.errors:
            out["errors"] = self.errors
        return out


class Telemetry:
    """One case's observer: a sampler thread across the timed rounds, and a record of what the hardware did.

    Host part on every case (CPU load, peak memory, RAPL energy); GPU part on a CUDA case.
    `proc`, `powercap` and `clock` are injectable so every part is tested without the hardware.
    """

    def __init__(
        self,
        device: str,
        *,
        enabled: bool = True,
        period_s: float = PERIOD_S,
        nvml_index: int | None = None,
        nvml_reason: str | None = None,
        proc: Path = Path("/proc"),
        powercap: Path = Path("/sys/class/powercap"),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.device = device
        self.enabled = enabled
        self.period_s = period_s
        self._nvml = (nvml_index, nvml_reason)
        self._proc = proc
        self._powercap = powercap
        self._clock = clock
        self._parts: tuple[Host, _Gpu | None] | None = None
        self._span_s = 0.0
        self._samples = 0
        self._sampler_note: str | None = None

    @classmethod
    def for_case(
        cls, device: str, gpus: list[dict], nvml: dict, *, enabled: bool = True
    ) -> Telemetry:
        """The observer for a case on `device`, its NVML GPU found from the run's machine facts (by UUID)."""
        index, reason = None, None
        if device_kind(device).nvml:  # NVML reports it: find its GPU
            name = device if ":" in device else "cuda:0"
            match = [g for g in map(fmt.Gpu.read, gpus) if g.cuda_device == name]
            if match:
                index = match[0].index
            else:
                said = fmt.Nvml.read(nvml)
                reason = (
                    said.reason if not said.available else f"no NVML GPU matched to {name} by UUID"
                )
        return cls(device, enabled=enabled, nvml_index=index, nvml_reason=reason)

    @contextmanager
    def observe(self) -> Iterator[None]:
        """Around the timed rounds: read the counters, sample every period in a thread, read them again."""
        if not self.enabled:
            yield
            return
        host = Host(self._proc, self._powercap)
        gpu = _Gpu(self.device, *self._nvml) if device_kind(self.device).nvml else None
        self._parts = (host, gpu)
        watch = Stopwatch(self._clock) if self._clock is not None else Stopwatch()
        host.begin()
        if gpu is not None:
            gpu.begin(0.0)
        stop = threading.Event()
        counted = [0]

        def tick() -> None:
            host.sample()
            if gpu is not None:
                gpu.sample(watch())
            counted[0] += 1

        thread = threading.Thread(
            target=every, args=(self.period_s, stop, tick), name="fmnist-telemetry", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            self._span_s = watch()
            stop.set()
            thread.join(_JOIN_S)
            stopped = not thread.is_alive()
            if not stopped:
                self._sampler_note = (
                    f"the sampler was still in a call {_JOIN_S:g} s after the case: left behind"
                )
            host.sample()
            if gpu is not None:
                gpu.end(self._span_s, sampled=stopped)
            self._samples = counted[0] + 2  # the periodic ones, and the readings at each end

    def record(self, rounds: int) -> dict:
        """The case's `extra_info["telemetry"]`: {"state": "off"} when it was turned off."""
        if not self.enabled:
            return {"state": "off"}
        if self._parts is None:
            return {"state": "not run", "reason": "no timed rounds were observed"}
        host, gpu = self._parts
        out: dict = {
            "state": "on",
            "period_s": self.period_s,
            "samples": self._samples,
            "span_s": self._span_s,  # from before the first timed round to after the last (setups between them included)
            "rounds": rounds,
            "host": host.record(self._span_s, rounds),
        }
        if gpu is not None:
            out["gpu"] = gpu.record(self._span_s, rounds)
        if self._sampler_note is not None:
            out["sampler"] = self._sampler_note
        out["flags"] = case_flags(out)
        return out


def case_flags(telemetry: dict) -> list[str]:
    """The warnings a case's telemetry carries: "throttled" (GPU clocks held down), "busy" (other work on the CPU)."""
    flags = []
    said = fmt.Telemetry.read(telemetry)
    if said.gpu is not None and said.gpu.throttled:
        flags.append("throttled")
    host = said.host
    if host is not None and host.cpu is not None and host.cpu.busy:
        flags.append("busy")
    return flags


def add_per_images(extra_info: dict) -> None:
    """Energy per 1,000 images beside energy per round, once the case has said how many images a round is."""
    # (a writer: the figures are added to the parts where they lie, as Energy and GpuTelemetry declare them)
    telemetry, images = extra_info.get("telemetry"), extra_info.get("images")
    if not isinstance(telemetry, dict) or not images:
        return
    for part in ((telemetry.get("host") or {}).get("energy"), telemetry.get("gpu")):
        per_round = (part or {}).get("energy_per_round_j")
        if per_round is not None and math.isfinite(per_round):
            part["energy_per_1000_images_j"] = per_round / images * 1000
            part["images_per_j"] = images / per_round if per_round > 0 else None
