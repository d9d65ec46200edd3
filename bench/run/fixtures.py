"""The fixtures the suite's cases ask for (registered as a plugin by bench/run/plugin.py for a `pytest bench`
session); they reach the session by its handle (bench/run/context.py), never by the plugin."""

from __future__ import annotations

import pytest
import torch

from bench.measure.clock import DeviceClock
from bench.measure.plan import ModelPlan, Plan
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


@pytest.fixture
def model(request: pytest.FixtureRequest, plan: Plan) -> ModelPlan | None:
    """The case's model (--model, a case's first axis where the run names models); None: the notes' CNN in a run
    of it alone."""
    return plan.model(getattr(request, "param", None))


class _Workloads:
    """Each model's splits, trained weights and reference labels, made once a run when its first case asks."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.made: dict[tuple, object] = {}

    def _once(self, key: tuple, make):
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def split(self, model: ModelPlan | None, train: bool):
        def make():
            session = session_of(self.config)
            found = data.split(session.context.plan, train, model)
            if model is None or model.is_cnn:  # the run's dataset record is the CNN's data
                session.data_used("train" if train else "test", len(found))
            return found

        return self._once(("split", _name(model), train), make)

    def trained_state(self, model: ModelPlan | None) -> dict:
        plan = session_of(self.config).context.plan
        return self._once(
            ("weights", _name(model)),
            lambda: data.trained_state(plan, self.split(model, True), model),
        )

    def reference_labels(self, model: ModelPlan | None) -> torch.Tensor:
        plan = session_of(self.config).context.plan
        return self._once(
            ("labels", _name(model)),
            lambda: data.reference_labels(
                plan, self.split(model, False), self.trained_state(model), model
            ),
        )


def _name(model: ModelPlan | None) -> str | None:
    return None if model is None else model.name


@pytest.fixture(scope="session")
def workloads(pytestconfig: pytest.Config) -> _Workloads:
    return _Workloads(pytestconfig)


@pytest.fixture
def train_split(workloads: _Workloads, model: ModelPlan | None):
    return workloads.split(model, train=True)


@pytest.fixture
def test_split(workloads: _Workloads, model: ModelPlan | None):
    return workloads.split(model, train=False)


@pytest.fixture
def trained_state(workloads: _Workloads, model: ModelPlan | None) -> dict:
    """Weights after one untimed resident epoch over 10,000 training images (bench/run/data.py)."""
    return workloads.trained_state(model)


@pytest.fixture
def reference_labels(workloads: _Workloads, model: ModelPlan | None) -> torch.Tensor:
    """The float32 eager CPU labels every inference pipeline is compared with (bench/run/data.py)."""
    return workloads.reference_labels(model)
