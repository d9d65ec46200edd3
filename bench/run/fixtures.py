"""The fixtures the suite's cases ask for (registered as a plugin by bench/run/plugin.py for a `pytest bench`
session); they reach the session by its handle (bench/run/context.py), never by the plugin."""

from __future__ import annotations

import pytest
import torch

from bench.measure.clock import DeviceClock
from bench.measure.plan import Plan
from bench.measure.telemetry import Telemetry
from bench.run import data
from bench.run.context import session_of


@pytest.fixture(scope="session")
def plan(pytestconfig: pytest.Config) -> Plan:
    return session_of(pytestconfig).context.plan


@pytest.fixture
def clock(device: str) -> DeviceClock:
    """The case's device clock, for what the suite times itself (warm-up, the latency sample)."""
    return DeviceClock(device)


@pytest.fixture
def telemetry(pytestconfig: pytest.Config, device: str) -> Telemetry:
    """The case's observer of the hardware across its timed rounds (--telemetry off: it records only that)."""
    context = session_of(pytestconfig).context
    machine = context.machine
    return Telemetry.for_case(device, machine.gpus, machine.nvml, enabled=context.telemetry)


@pytest.fixture
def cpu_threads(request: pytest.FixtureRequest, device: str):
    """Run the case at its CPU thread count (torch.set_num_threads), and put torch's back after."""
    threads = request.param
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def _split(config: pytest.Config, train: bool):
    session = session_of(config)
    split = data.split(session.context.plan, train)
    session.data_used("train" if train else "test", len(split))
    return split


@pytest.fixture(scope="session")
def train_split(pytestconfig: pytest.Config):
    return _split(pytestconfig, train=True)


@pytest.fixture(scope="session")
def test_split(pytestconfig: pytest.Config):
    return _split(pytestconfig, train=False)


@pytest.fixture(scope="session")
def trained_state(plan: Plan, train_split) -> dict:
    """Weights after one untimed resident epoch over 10,000 training images (bench/run/data.py)."""
    return data.trained_state(plan, train_split)


@pytest.fixture(scope="session")
def reference_labels(plan: Plan, test_split, trained_state) -> torch.Tensor:
    """The float32 eager CPU labels every inference pipeline is compared with (bench/run/data.py)."""
    return data.reference_labels(plan, test_split, trained_state)
