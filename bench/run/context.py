"""What a `pytest bench` session is, as typed values: the machine and the run's context, fixed once the options
are checked, and the one handle by which the fixtures reach the session (so they need not import the plugin)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pytest

from bench.format.records import Gpu
from bench.measure.plan import Plan

__all__ = ["SESSION", "Machine", "RunContext", "Session", "session_of"]


@dataclass(frozen=True)
class Machine:
    """The machine as it is at the start of the run."""

    key: str  # its results folder's name (bench/measure/machine.py machine_key)
    name: str | None  # --machine-name; None where it was not named
    id: str | None  # made once per installation; None where none could be kept
    id_from: str  # where the id came from, as the header says it
    nvml: dict  # whether NVML answered, and why not
    gpus: list[dict] = field(default_factory=list)  # each GPU as NVML reports it

    @property
    def links(self) -> dict[str, float]:
        """Each CUDA device's PCIe link, its theoretical GB/s a direction, where NVML gave it."""
        found = (Gpu.read(g) for g in self.gpus)
        return {g.cuda_device: g.pcie_gbps_max for g in found if g.cuda_device}


@dataclass(frozen=True)
class RunContext:
    """What the options and the machine say this run is: nothing in it changes once the first case runs."""

    plan: Plan
    machine: Machine
    budget_source: (
        dict  # which of pytest-benchmark's round options were given (they replace every family's)
    )
    data_files: dict | None  # images in the real files, when they are used
    telemetry: bool  # --telemetry: each case's timed rounds observed
    host_allocator: (
        dict  # what the C library's allocator was held to, for every case (--host-allocator)
    )


class Session(Protocol):
    """The session as the fixtures see it: its context, and where a split's images are said."""

    context: RunContext

    def data_used(self, split: str, images: int) -> None: ...


SESSION = pytest.StashKey[Session]()


def session_of(config: pytest.Config) -> Session:
    """The session of a `pytest bench` run (bench/run/plugin.py puts it there before collection)."""
    return config.stash[SESSION]
