"""What the device table (bench/format/devices.py) needs torch for: waiting for a device, whether this machine has it,
which profiler activities see it, and handing its cached memory back."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.format.devices import KINDS, device_kind

__all__ = [
    "available_devices",
    "profiler_activities",
    "release_memory",
    "synchronizer",
    "unavailable_reason",
]

# How to wait until each kind has finished its queued work (CUDA and MPS run kernels asynchronously:
# without it a timer would stop when the host finished launching work, not when the device finished
# it).
_SYNCHRONIZE: dict[str, Callable[[torch.device], Callable[[], None]]] = {
    "cpu": lambda _device: lambda: None,  # CPU ops are done when they return
    "cuda": lambda device: lambda: torch.cuda.synchronize(device),
    "mps": lambda _device: torch.mps.synchronize,
}
# Whether this machine has a kind, and how many of it.
_COUNT: dict[str, Callable[[], int]] = {
    "cpu": lambda: 1,
    "cuda": lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0,
    "mps": lambda: 1 if torch.backends.mps.is_available() else 0,
}
_ABSENT = {
    "cuda": lambda: (
        f"CUDA is not available here (torch {torch.__version__}, built with {torch.version.cuda or 'no CUDA'})"
    ),
    "mps": lambda: "Apple's Metal backend is not available here",
}
_RELEASE = {"cuda": lambda: torch.cuda.empty_cache(), "mps": lambda: torch.mps.empty_cache()}
assert set(_SYNCHRONIZE) == set(_COUNT) == set(KINDS), "every kind of the table has its calls here"


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """A zero-argument call that returns only when `device` has finished all queued work."""
    where = torch.device(device)
    if where.type not in _SYNCHRONIZE:
        raise ValueError(f"no synchronizer for device type {where.type!r}")
    return _SYNCHRONIZE[where.type](where)


def available_devices() -> tuple[str, ...]:
    """Every device this machine can run on, by the table's order: the CPU, each CUDA GPU, Apple's MPS."""
    out = []
    for name, kind in KINDS.items():
        count = _COUNT[name]()
        out += [f"{name}:{i}" for i in range(count)] if kind.indexed else [name] * min(count, 1)
    return tuple(out)


def unavailable_reason(device: str) -> str | None:
    """Why this machine cannot run on `device`, or None when it can."""
    kind = device_kind(device)
    count = _COUNT[kind.name]()
    if count == 0:
        return f"{device}: {_ABSENT[kind.name]()}"
    index = torch.device(device).index or 0
    if kind.indexed and index >= count:
        return f"{device}: this machine has {count} {kind.name.upper()} device{'s' if count != 1 else ''}"
    return None


def profiler_activities(device: str) -> list:
    """torch.profiler's activities that see the work of `device`."""
    return [getattr(torch.profiler.ProfilerActivity, name) for name in device_kind(device).profiler]


def release_memory(device: str) -> None:
    """Hand the device's cached, unused memory back (after an out-of-memory, before the next case)."""
    release = _RELEASE.get(device_kind(device).name)
    if release is not None:
        release()
