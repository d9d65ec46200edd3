"""The device kinds the suite measures, in one table every stage asks: what each one is, can run and is measured by.

Plain data, importable without torch: the report and the saved-run format ask it as the measuring
code does (bench/measure/devices.py adds what needs torch: synchronising, availability, the
profiler's activities). A new kind of device is a row here and its calls there.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "DeviceKind", "device_kind", "is_accelerator"]

_BOTH_WAYS = tuple(
    (direction, memory) for direction in ("h2d", "d2h") for memory in ("pageable", "pinned")
)


@dataclass(frozen=True)
class DeviceKind:
    """One kind of device, and what the suite does with it."""

    name: str
    # The host itself: no copy between it and the host, nothing to wait for, its thread count an
    # axis of its cases.
    host: bool
    # Several of it in one machine, named kind:N (cuda:0); else the kind's name alone.
    indexed: bool
    # The transfer family's copies: (direction, memory). The CPU's own memory is copied host to
    # host, the bandwidth reference; unified memory (mps) has no pinned kind.
    routes: tuple[tuple[str, str], ...]
    # CUDA graphs capture its kernels: the operation_graph limit and the cuda_graph steps.
    graphs: bool
    # A memory of its own to copy within (the device_copy limit); the CPU's is the transfer family's
    # h2h copy.
    own_memory: bool
    # The largest side of the matrix-product limit: three squares of float32 must fit (three 16,384 squares are
    # 3.2 GB on a GPU; three of 4,096 0.2 GB on a CPU, where a product of 4,096 takes seconds on 2 cores).
    matmul_max_side: int
    # torch.profiler activities that see its work, and whether its kernels come back as device
    # events.
    profiler: tuple[str, ...]
    # NVML reports it: power, energy, clocks, throttling, the PCIe link.
    nvml: bool
    # Why bf16 autocast is not measured on it, or None where it is.
    no_bf16: str | None = None
    # torch.compile's backend for it needs a C++ compiler on PATH (inductor's CPU code).
    compiles_cxx: bool = False

    @property
    def device_events(self) -> bool:
        return len(self.profiler) > 1


KINDS = {
    "cpu": DeviceKind(
        "cpu",
        host=True,
        indexed=False,
        routes=(("h2h", "pageable"),),
        graphs=False,
        own_memory=False,
        matmul_max_side=4_096,
        profiler=("CPU",),
        nvml=False,
        compiles_cxx=True,
    ),
    "cuda": DeviceKind(
        "cuda",
        host=False,
        indexed=True,
        routes=_BOTH_WAYS,
        graphs=True,
        own_memory=True,
        matmul_max_side=16_384,
        profiler=("CPU", "CUDA"),
        nvml=True,
    ),
    "mps": DeviceKind(
        "mps",
        host=False,
        indexed=False,
        routes=(("h2d", "pageable"), ("d2h", "pageable")),
        graphs=False,
        own_memory=True,
        matmul_max_side=8_192,
        profiler=("CPU",),
        nvml=False,
        no_bf16="bf16 autocast on mps is not measured by this suite (Metal's bf16 support depends on the macOS version)",
    ),
}


def device_kind(device: str) -> DeviceKind:
    """The kind of a device as the suite names it ('cuda:0' -> cuda's). Raises ValueError for another kind."""
    name = str(device).split(":", 1)[0]
    if name not in KINDS:
        raise ValueError(
            f"{device!r} is not a device this suite measures: expected {', '.join(KINDS)}"
        )
    return KINDS[name]


def is_accelerator(device: str) -> bool:
    """A device apart from the host (a GPU): what a speedup over the CPU is of. False for a name of no kind."""
    kind = KINDS.get(str(device).split(":", 1)[0])
    return kind is not None and not kind.host
