"""Telemetry: a fake NVML (counters that advance, a throttle that appears, calls that fail), a fake RAPL tree and /proc."""

import os
import threading

import pynvml
import pytest

from bench.measure import telemetry as tm
from bench.measure.clock import every
from bench.measure.plan import Budget
from bench.measure.rounds import run_rounds
from bench.measure.telemetry import (
    THROTTLE_REASONS,
    THROTTLING,
    Telemetry,
    add_per_images,
    case_flags,
)
from tests.test_measure import FakeBenchmark

MAX_RANGE = 262_143_328_850  # a real Intel package's max_energy_range_uj


def rapl_tree(root, packages):
    """A powercap folder: one intel-rapl:N per package (with a core sub-domain that must not be counted)."""
    for n, energy in enumerate(packages):
        pkg = root / f"intel-rapl:{n}"
        (pkg / f"intel-rapl:{n}:0").mkdir(parents=True)
        (pkg / "name").write_text(f"package-{n}\n")
        (pkg / "energy_uj").write_text(f"{energy}\n")
        (pkg / "max_energy_range_uj").write_text(f"{MAX_RANGE}\n")
        (pkg / f"intel-rapl:{n}:0" / "energy_uj").write_text("999999999\n")
        (root / f"intel-rapl:{n}:0").mkdir()  # sysfs lists sub-domains beside packages too
        (root / f"intel-rapl:{n}:0" / "energy_uj").write_text("999999999\n")
    (root / "intel-rapl").mkdir(exist_ok=True)  # the control type itself: no energy
    return root


def set_energy(root, n, value):
    (root / f"intel-rapl:{n}" / "energy_uj").write_text(f"{value}\n")


class FakeProc:
    """/proc/stat, /proc/self/{stat,statm,status,clear_refs} with counters a test moves."""

    def __init__(self, root, cpus=2):
        self.root = root
        self.cpus = cpus
        (root / "self").mkdir(parents=True)
        self.set(user=0, idle=0, own=0, rss_kb=1000)

    def set(self, *, user, idle, own, rss_kb, steal=0, faults=0):
        cpu_lines = "".join(f"cpu{i} 0 0 0 0 0 0 0 0 0 0\n" for i in range(self.cpus))
        (self.root / "stat").write_text(
            f"cpu  {user} 0 0 {idle} 0 0 0 {steal} 0 0\n{cpu_lines}intr 0\n"
        )
        # minflt is field 10, utime field 14: faults and own ticks
        fields = ["S"] + ["0"] * 6 + [str(faults)] + ["0"] * 3 + [str(own), "0"] + ["0"] * 30
        (self.root / "self" / "stat").write_text(f"4242 (python (x)) {' '.join(fields)}\n")
        (self.root / "self" / "statm").write_text(f"100000 {rss_kb // 4} 0 0 0 0 0\n")
        (self.root / "self" / "status").write_text(
            f"Name:\tpython\nVmHWM:\t{rss_kb} kB\nVmRSS:\t{rss_kb} kB\n"
        )


@pytest.fixture
def proc(tmp_path):
    return FakeProc(tmp_path / "proc")


def observed(telemetry, during, rounds=3):
    with telemetry.observe():
        during()
    return telemetry.record(rounds)


def quiet(proc, tmp_path, **kwargs):
    """A Telemetry whose sampler never ticks on its own (a long period): the test makes every reading."""
    return Telemetry("cpu", period_s=3600, proc=proc.root, powercap=tmp_path / "powercap", **kwargs)


# RAPL


def test_rapl_counts_packages_only_and_handles_a_wrap(tmp_path, proc):
    root = rapl_tree(tmp_path / "powercap", [MAX_RANGE - 1_000_000, 5_000_000])
    t = quiet(proc, tmp_path)

    def during():
        set_energy(root, 0, 2_000_000)  # wrapped: 1 J to the top, then 2 J
        set_energy(root, 1, 9_000_000)  # 4 J

    energy = observed(t, during)["host"]["energy"]
    assert energy["available"] is True and energy["domains"] == ["package-0", "package-1"]
    assert energy["energy_j"] == pytest.approx(7.0)  # sub-domains' 999 J never counted
    assert energy["energy_per_round_j"] == pytest.approx(7.0 / 3)


def test_rapl_read_at_every_sample_counts_more_than_one_wrap(tmp_path, proc):
    root = rapl_tree(tmp_path / "powercap", [0])
    t = quiet(proc, tmp_path)
    host = None

    def during():
        nonlocal host
        host = t._parts[0]
        for value in (MAX_RANGE - 10, 5, MAX_RANGE - 10, 5):  # two trips round the counter
            set_energy(root, 0, value)
            host.sample()

    energy = observed(t, during)["host"]["energy"]
    assert energy["energy_j"] == pytest.approx((2 * MAX_RANGE + 5) / 1e6)


def test_rapl_absent_is_a_reason(tmp_path, proc):
    energy = observed(quiet(proc, tmp_path), lambda: None)["host"]["energy"]
    assert energy["available"] is False and "no RAPL here" in energy["reason"]


def test_rapl_without_a_package_is_a_reason(tmp_path, proc):
    (tmp_path / "powercap" / "intel-rapl").mkdir(parents=True)
    energy = observed(quiet(proc, tmp_path), lambda: None)["host"]["energy"]
    assert energy["available"] is False and "no RAPL package domain" in energy["reason"]


def test_rapl_unreadable_is_a_reason_naming_the_file(tmp_path, proc, monkeypatch):
    root = rapl_tree(tmp_path / "powercap", [100])
    denied = root / "intel-rapl:0" / "energy_uj"
    real = type(denied).read_text

    def read_text(path, *args, **kwargs):
        if path == denied:  # (chmod 000 does not stop root, who runs the tests here)
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(type(denied), "read_text", read_text)
    energy = observed(quiet(proc, tmp_path), lambda: None)["host"]["energy"]
    assert energy["available"] is False
    assert "root only since Linux 5.10" in energy["reason"] and str(denied) in energy["reason"]


# CPU load and memory from /proc


def test_work_from_outside_the_benchmark_is_flagged_busy(tmp_path, proc):
    t = quiet(proc, tmp_path)
    # 200 ticks of both CPUs: 160 busy, 60 of them this process's: 100 (50%) from elsewhere.
    record = observed(t, lambda: proc.set(user=160, idle=40, own=60, rss_kb=2000, faults=3_000))
    cpu = record["host"]["cpu"]
    assert record["host"]["minor_faults_per_round"] == 1_000  # 3,000 over 3 rounds
    assert cpu["cpus"] == 2
    assert cpu["machine_busy_share"] == pytest.approx(0.8)
    assert cpu["process_share"] == pytest.approx(0.3)
    assert cpu["outside_share"] == pytest.approx(0.5) and cpu["busy"] is True
    assert record["flags"] == ["busy"]


def test_a_quiet_machine_is_not_busy_and_steal_counts_as_outside(tmp_path, proc):
    t = quiet(proc, tmp_path)
    assert observed(t, lambda: proc.set(user=100, idle=100, own=95, rss_kb=1000))["flags"] == []
    t = quiet(proc, tmp_path)
    # The hypervisor gave our CPUs to another guest for 30 of 200 ticks.
    record = observed(t, lambda: proc.set(user=200, idle=170, own=195, rss_kb=1000, steal=30))
    assert record["host"]["cpu"]["outside_share"] == pytest.approx(30 / 200) and record[
        "flags"
    ] == ["busy"]


def test_a_span_too_short_for_proc_stat_tells_no_share(tmp_path, proc):
    record = observed(quiet(proc, tmp_path), lambda: proc.set(user=10, idle=0, own=0, rss_kb=1000))
    cpu = record["host"]["cpu"]
    assert cpu["available"] is False and "too short to tell" in cpu["reason"]
    assert record["flags"] == []


def test_peak_memory_is_the_kernels_high_water_mark_after_a_reset(tmp_path, proc):
    record = observed(quiet(proc, tmp_path), lambda: proc.set(user=0, idle=100, own=0, rss_kb=5000))
    assert (proc.root / "self" / "clear_refs").read_text() == "5"
    assert record["host"]["peak_rss_bytes"] == 5000 * 1024
    assert record["host"]["peak_rss_method"] == "VmHWM after clear_refs"


def test_peak_memory_falls_back_to_sampled_rss(tmp_path, proc, monkeypatch):
    (proc.root / "self" / "clear_refs").mkdir()  # cannot be written: no reset
    t = quiet(proc, tmp_path)

    def during():
        proc.set(user=0, idle=100, own=0, rss_kb=8000)
        t._parts[0].sample()
        proc.set(user=0, idle=100, own=0, rss_kb=4000)

    host = observed(t, during)["host"]
    assert host["peak_rss_method"] == "largest sampled RSS (statm)"
    assert host["peak_rss_bytes"] == 8000 // 4 * os.sysconf("SC_PAGE_SIZE")


# NVML


class FakeGpu:
    """NVML's C calls for one GPU: the energy counter and power advance each sample; a throttle can appear."""

    def __init__(self, energy_counter=True):
        self.energy_mj = 1_000_000
        self.power_mw = 150_000
        self.reasons = pynvml.nvmlClocksEventReasonGpuIdle
        self.energy_counter = energy_counter
        self.fail_after = None  # samples after which every call raises
        self.samples = 0
        self.calls = []

    def tick(self, mj, mw=None, reasons=None):
        self.energy_mj += mj
        self.power_mw = mw if mw is not None else self.power_mw
        self.reasons = reasons if reasons is not None else self.reasons

    def install(self, monkeypatch):
        def gate(fn):
            def call(*args):
                if self.fail_after is not None and self.samples > self.fail_after:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
                return fn(*args)

            return call

        def energy(h):
            if not self.energy_counter:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return self.energy_mj

        def power(h):
            self.samples += 1
            return self.power_mw

        fakes = {
            "nvmlInit": lambda: self.calls.append("init"),
            "nvmlShutdown": lambda: self.calls.append("shutdown"),
            "nvmlDeviceGetHandleByIndex": lambda i: i,
            "nvmlDeviceGetTotalEnergyConsumption": gate(energy),
            "nvmlDeviceGetPowerUsage": gate(power),
            "nvmlDeviceGetClockInfo": gate(
                lambda h, kind: 1980 if kind == pynvml.NVML_CLOCK_SM else 2619
            ),
            "nvmlDeviceGetUtilizationRates": gate(
                lambda h: type("U", (), {"gpu": 40, "memory": 10})()
            ),
            "nvmlDeviceGetTemperature": gate(lambda h, sensor: 45),
            "nvmlDeviceGetCurrentClocksEventReasons": gate(lambda h: self.reasons),
        }
        for name, fake in fakes.items():
            monkeypatch.setattr(pynvml, name, fake)
        return self


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def gpu_case(tmp_path, proc, **kwargs):
    clock = FakeClock()
    t = Telemetry(
        "cuda:0",
        period_s=3600,
        nvml_index=0,
        proc=proc.root,
        powercap=tmp_path / "powercap",
        clock=clock,
        **kwargs,
    )
    return t, clock


def test_gpu_energy_comes_from_the_counter_across_the_timed_rounds(tmp_path, proc, monkeypatch):
    gpu = FakeGpu().install(monkeypatch)
    t, clock = gpu_case(tmp_path, proc)

    def during():
        for _ in range(3):  # three rounds of 1 s at 160 W
            gpu.tick(160_000, mw=160_000)
            clock.now += 1.0
            t._parts[1].sample(clock.now)

    record = observed(t, during)
    g = record["gpu"]
    assert g["available"] is True and g["energy_source"] == "total-energy counter"
    assert g["energy_j"] == pytest.approx(480.0) and g["energy_per_round_j"] == pytest.approx(160.0)
    assert g["mean_power_w"] == pytest.approx(160.0) and g["peak_power_w"] == pytest.approx(160.0)
    assert g["energy_reliable"] is True  # 3 s span: the counter's 0.1 s steps are under 10%
    assert g["sm_clock_mhz"] == {"min": 1980, "mean": 1980, "max": 1980}
    assert g["gpu_util_pct"]["mean"] == 40 and g["temperature_c"]["max"] == 45
    assert (
        g["clocks_event_reasons"] == {"gpu_idle": 5} and g["throttled"] is False
    )  # idle is not a throttle
    assert record["samples"] == 2 and g["samples"] == 5  # the ends, and the three this test made
    assert gpu.calls == ["init", "shutdown"] and record["flags"] == []


def test_a_throttle_that_appears_flags_the_case(tmp_path, proc, monkeypatch):
    gpu = FakeGpu().install(monkeypatch)
    t, clock = gpu_case(tmp_path, proc)

    def during():
        gpu.tick(100_000)
        t._parts[1].sample(0.5)
        gpu.tick(100_000, mw=700_000, reasons=pynvml.nvmlClocksEventReasonSwPowerCap)
        t._parts[1].sample(1.0)

    record = observed(t, during)
    assert record["gpu"]["clocks_event_reasons"] == {"gpu_idle": 2, "sw_power_cap": 2}
    assert record["gpu"]["throttled"] is True and record["flags"] == ["throttled"]
    assert record["gpu"]["energy_reliable"] is False  # a zero-length span: no precision claimed


def test_a_gpu_without_the_energy_counter_integrates_sampled_power(tmp_path, proc, monkeypatch):
    gpu = FakeGpu(energy_counter=False).install(monkeypatch)
    t, clock = gpu_case(tmp_path, proc)

    def during():
        for _ in range(4):
            clock.now += 0.5
            t._parts[1].sample(clock.now)
        gpu.tick(0, mw=250_000)
        clock.now += 0.5

    g = observed(t, during)["gpu"]
    assert (
        g["energy_source"] == "sampled power" and "no total-energy counter" in g["energy_counter"]
    )
    # 2 s at 150 W, then a 0.5 s step from 150 to 250 W (a trapezoid): 300 + 100 J.
    assert g["energy_j"] == pytest.approx(400.0) and g["peak_power_w"] == pytest.approx(250.0)


def test_nvml_failing_half_way_keeps_the_case_and_says_what_failed(tmp_path, proc, monkeypatch):
    gpu = FakeGpu().install(monkeypatch)
    gpu.fail_after = 2  # the GPU is lost after its third reading of power
    t, clock = gpu_case(tmp_path, proc)

    def during():
        for _ in range(4):
            gpu.tick(50_000)
            clock.now += 1.0
            t._parts[1].sample(clock.now)

    g = observed(t, during)["gpu"]
    # Readings: 1 at the start, 2-5 during the rounds, 6 at the end; the 4th is the first to fail.
    assert g["errors"]["power"]["count"] == 3 and g["errors"]["power"]["first_sample"] == 4
    assert "GPU is lost" in g["errors"]["power"]["error"] and "energy" in g["errors"]
    # The end reading of the counter failed: the energy is integrated from the power read before.
    assert g["energy_source"] == "sampled power (the counter failed during the case)"
    assert g["energy_j"] == pytest.approx(300.0)  # 150 W from t=0 to the last good reading at t=2
    assert g["energy_reliable"] is False


def test_a_wedged_nvml_call_does_not_hang_the_case(tmp_path, proc, monkeypatch):
    gpu = FakeGpu().install(monkeypatch)
    release = threading.Event()
    sampled = threading.Event()

    def wedged(h):
        sampled.set()
        release.wait()  # until the test ends
        return 0

    monkeypatch.setattr(tm, "_JOIN_S", 0.05)
    t = Telemetry(
        "cuda:0", period_s=0.001, nvml_index=0, proc=proc.root, powercap=tmp_path / "powercap"
    )
    try:
        with t.observe():
            monkeypatch.setattr(pynvml, "nvmlDeviceGetTemperature", lambda h, s: wedged(h))
            sampled.wait()
        record = t.record(1)
    finally:
        release.set()
    assert "still in a call" in record["sampler"]
    assert record["gpu"]["available"] is True and gpu.calls == ["init", "shutdown"]


def test_nvml_absent_is_a_reason(tmp_path, proc):
    t = Telemetry.for_case("cuda:0", [], {"available": False, "reason": "no NVML library"})
    assert t.record(1) == {"state": "not run", "reason": "no timed rounds were observed"}
    t._proc, t._powercap = proc.root, tmp_path / "powercap"
    g = observed(t, lambda: None)["gpu"]
    assert g == {
        "device": "cuda:0",
        "nvml_index": None,
        "available": False,
        "reason": "no NVML library",
    }


def test_the_nvml_gpu_is_found_by_the_cuda_device_it_is():
    gpus = [{"index": 0, "cuda_device": "cuda:1"}, {"index": 1, "cuda_device": "cuda:0"}]
    assert Telemetry.for_case("cuda:0", gpus, {"available": True})._nvml == (1, None)
    assert Telemetry.for_case("cuda:2", gpus, {"available": True})._nvml == (
        None,
        "no NVML GPU matched to cuda:2 by UUID",
    )
    assert Telemetry.for_case("cpu", gpus, {"available": True})._nvml == (None, None)


def test_throttle_bits_are_nvmls_own():
    for bit, name in THROTTLE_REASONS.items():
        words = "".join(w.capitalize() for w in name.split("_"))
        assert getattr(pynvml, f"nvmlClocksEventReason{words}") == bit, name
    assert "gpu_idle" not in THROTTLING and THROTTLING <= set(THROTTLE_REASONS.values())


# The sampler, the case and the record


def test_the_sampler_keeps_its_period_until_stopped():
    stop = threading.Event()
    seen = []

    def fn():
        seen.append(1)
        if len(seen) == 3:
            stop.set()

    assert every(0.001, stop, fn) == 3


def test_run_rounds_observes_only_the_timed_rounds(tmp_path, proc):
    bench = FakeBenchmark()
    t = quiet(proc, tmp_path)
    order = []
    real_observe = t.observe

    def observe():
        order.append("observe")
        return real_observe()

    t.observe = observe
    run_rounds(
        bench, lambda: 0.0, Budget(1, 0.0, 1), target=lambda: order.append("round"),
        warmup=lambda: order.append("warmup"), scale=1.0, warmup_record={}, telemetry=t,
    )  # fmt: skip
    assert order == ["warmup", "observe", "round"]
    assert (
        bench.extra_info["telemetry"]["state"] == "on"
        and bench.extra_info["telemetry"]["rounds"] == 1
    )


def test_off_says_off():
    bench = FakeBenchmark()
    t = Telemetry("cpu", enabled=False)
    run_rounds(bench, lambda: 0.0, Budget(1, 0.0, 1), target=lambda: 1, warmup=lambda: 1, scale=1.0,
               warmup_record={}, telemetry=t)  # fmt: skip
    assert bench.extra_info["telemetry"] == {"state": "off"}


def test_energy_per_1000_images_and_images_per_joule():
    extra = {
        "images": 2_000,
        "telemetry": {
            "host": {"energy": {"energy_per_round_j": 4.0}},
            "gpu": {"energy_per_round_j": None},
        },
    }
    add_per_images(extra)
    assert extra["telemetry"]["host"]["energy"]["energy_per_1000_images_j"] == pytest.approx(2.0)
    assert extra["telemetry"]["host"]["energy"]["images_per_j"] == pytest.approx(500.0)
    assert "energy_per_1000_images_j" not in extra["telemetry"]["gpu"]


def test_flags_name_throttling_and_outside_load():
    assert case_flags({"gpu": {"throttled": True}, "host": {"cpu": {"busy": True}}}) == [
        "throttled",
        "busy",
    ]
    assert case_flags({"host": {"cpu": {"available": False}}}) == []
