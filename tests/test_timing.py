"""The device clock: it waits for the device before every read, tested with a fake asynchronous device."""

import json

import pytest
import torch

from bench.measure.clock import DeviceClock, synchronizer

pytest_plugins = ["pytester"]


class FakeDevice:
    """An asynchronous device with a fake clock: launches return at once, work finishes later."""

    def __init__(self):
        self.now = 0.0
        self.busy_until = 0.0
        self.log = []

    def launch(self, seconds):
        self.log.append("launch")
        self.busy_until = max(self.now, self.busy_until) + seconds

    def synchronize(self):
        self.log.append("sync")
        self.now = max(self.now, self.busy_until)

    def clock(self):
        self.log.append("read")
        return self.now


def test_clock_waits_for_the_device_before_each_read():
    dev = FakeDevice()
    clock = DeviceClock("cuda:0", clock=dev.clock, synchronize=dev.synchronize)
    start = clock()
    dev.launch(5.0)
    end = clock()
    assert end - start == 5.0
    assert dev.log == ["sync", "read", "launch", "sync", "read"]


def test_work_queued_before_the_region_is_not_counted():
    dev = FakeDevice()
    clock = DeviceClock("cuda:0", clock=dev.clock, synchronize=dev.synchronize)
    dev.launch(3.0)  # e.g. setup's copy, still running when the round starts
    start = clock()
    dev.launch(0.5)
    assert clock() - start == 0.5


def test_clock_names_its_device_for_the_saved_run():
    assert DeviceClock("cpu").__name__ == "DeviceClock(cpu)"
    assert (
        DeviceClock(torch.device("cuda", 1), synchronize=lambda: None).__name__
        == "DeviceClock(cuda:1)"
    )


def test_cpu_clock_reads_a_real_increasing_clock():
    clock = DeviceClock("cpu")
    a, b = clock(), clock()
    assert b >= a


def test_synchronizer_refuses_an_unknown_device_type():
    with pytest.raises(ValueError, match="meta"):
        synchronizer("meta")


def test_pytest_benchmark_times_rounds_with_the_device_clock(pytester):
    # The real pytest-benchmark plugin, given a DeviceClock through its mark, as bench/conftest.py does:
    # each round must measure the device's work (0.25 s), not setup's (1 s) nor the launch (0 s).
    pytester.makepyfile(
        test_fake="""
        import pytest
        from bench.measure.clock import DeviceClock
        from tests.test_timing import FakeDevice

        dev = FakeDevice()

        @pytest.mark.benchmark(timer=DeviceClock("cuda:0", clock=dev.clock, synchronize=dev.synchronize))
        def test_round(benchmark):
            benchmark.pedantic(lambda: dev.launch(0.25), setup=lambda: dev.launch(1.0), rounds=4, warmup_rounds=2)
        """
    )
    result = pytester.runpytest("--benchmark-json=out.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    stats = json.loads((pytester.path / "out.json").read_text())["benchmarks"][0]["stats"]
    assert stats["rounds"] == 4  # warm-up rounds are not among them
    assert stats["min"] == stats["max"] == 0.25
