"""Machine facts: NVML mocked present, absent and failing; PCIe arithmetic; the machine key; torch facts."""

import sys
from types import SimpleNamespace

import pynvml
import pytest

from bench.measure import machine
from bench.measure.machine import PCIE_LANE_GBPS, machine_key, nvml_info, pcie_gbps, torch_info

H100 = {
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-8f3c1b2a-0000-1111-2222-333344445555",
    "bus": "00000000:19:00.0",
    "memory": 85_520_809_984,
    "clocks": {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619},
    "power_mw": 700_000,
    "gen": (5, 1),  # max, current: an idle H100 trains its link down
    "width": (16, 16),
    "temp": 31,
}


@pytest.fixture
def fake_nvml(monkeypatch):
    """The real pynvml binding with its C calls replaced: one H100 plus one GPU that supports little."""
    unsupported = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    gpus = [
        H100,
        {"name": b"Old GPU", "uuid": b"GPU-aaaa", "bus": b"0000:3b:00.0", "memory": 8 << 30},
    ]
    calls = []

    def field(key, index=None):
        def get(handle, *args):
            value = gpus[handle].get(key)
            if value is None:
                raise unsupported
            return value[index] if index is not None else value

        return get

    fakes = {
        "nvmlInit": lambda: calls.append("init"),
        "nvmlShutdown": lambda: calls.append("shutdown"),
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlSystemGetDriverVersion": lambda: "560.35.03",
        "nvmlSystemGetCudaDriverVersion": lambda: 12060,
        "nvmlDeviceGetHandleByIndex": lambda i: i,
        "nvmlDeviceGetName": field("name"),
        "nvmlDeviceGetUUID": field("uuid"),
        "nvmlDeviceGetPciInfo": lambda h: SimpleNamespace(busId=gpus[h]["bus"]),
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(
            total=gpus[h]["memory"], free=0, used=0
        ),
        "nvmlDeviceGetMaxClockInfo": lambda h, kind: field("clocks")(h)[kind],
        "nvmlDeviceGetPowerManagementLimit": field("power_mw"),
        "nvmlDeviceGetMaxPcieLinkGeneration": field("gen", 0),
        "nvmlDeviceGetCurrPcieLinkGeneration": field("gen", 1),
        "nvmlDeviceGetMaxPcieLinkWidth": field("width", 0),
        "nvmlDeviceGetCurrPcieLinkWidth": field("width", 1),
        "nvmlDeviceGetTemperature": lambda h, sensor: field("temp")(h),
    }
    for name, fake in fakes.items():
        monkeypatch.setattr(pynvml, name, fake)
    # torch sees one CUDA device, the H100, listed by UUID without NVML's "GPU-" prefix.
    monkeypatch.setattr(
        machine,
        "cuda_devices",
        lambda: [{"device": "cuda:0", "uuid": "8f3c1b2a-0000-1111-2222-333344445555"}],
    )
    return calls


def test_nvml_present_gives_one_entry_per_gpu(fake_nvml):
    nvml, gpus = nvml_info()
    assert nvml == {
        "available": True,
        "driver_version": "560.35.03",
        "cuda_driver_version": "12.6",
        "device_count": 2,
    }
    h100 = gpus[0]
    assert h100["name"] == "NVIDIA H100 80GB HBM3"
    assert h100["uuid"] == H100["uuid"] and h100["cuda_device"] == "cuda:0"
    assert h100["pci_bus_id"] == "00000000:19:00.0"
    assert h100["driver_version"] == "560.35.03" and h100["cuda_driver_version"] == "12.6"
    assert h100["memory_total"] == 85_520_809_984
    assert h100["max_sm_clock_mhz"] == 1980 and h100["max_memory_clock_mhz"] == 2619
    assert h100["power_limit_w"] == 700.0
    assert (h100["pcie_generation_max"], h100["pcie_width_max"]) == (5, 16)
    assert (h100["pcie_generation_current"], h100["pcie_width_current"]) == (1, 16)
    assert h100["pcie_gbps_max"] == pytest.approx(63.008)  # 16 lanes x 3.938 GB/s
    assert h100["pcie_gbps_current"] == pytest.approx(4.0)  # Gen1 x16 while idle
    assert h100["temperature_c"] == 31
    assert fake_nvml == ["init", "shutdown"]


def test_unsupported_queries_are_none_not_a_crash(fake_nvml):
    _, gpus = nvml_info()
    old = gpus[1]
    assert old["name"] == "Old GPU" and old["uuid"] == "GPU-aaaa"  # bytes from old bindings decoded
    assert old["cuda_device"] is None  # not one torch sees
    assert old["memory_total"] == 8 << 30
    for key in (
        "max_sm_clock_mhz",
        "power_limit_w",
        "pcie_generation_max",
        "pcie_gbps_max",
        "temperature_c",
    ):
        assert old[key] is None, key


@pytest.mark.parametrize(
    "code, words",
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVML library"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "driver is not loaded"),
        (pynvml.NVML_ERROR_UNKNOWN, "NVML failed to start"),
    ],
)
def test_nvml_that_cannot_start_says_why(monkeypatch, code, words):
    def fail():
        raise pynvml.NVMLError(code)

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    nvml, gpus = nvml_info()
    assert nvml["available"] is False and words in nvml["reason"]
    assert gpus == []


def test_no_gpu_is_not_available_with_a_reason(monkeypatch):
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "560.35.03")
    monkeypatch.setattr(pynvml, "nvmlSystemGetCudaDriverVersion", lambda: 12060)
    nvml, gpus = nvml_info()
    assert nvml["available"] is False and nvml["reason"] == "NVML found no GPU" and gpus == []


def test_pynvml_missing_is_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    nvml, gpus = nvml_info()
    assert nvml["available"] is False and "nvidia-ml-py" in nvml["reason"] and gpus == []


def test_this_machine_never_crashes():
    nvml, gpus = nvml_info()
    assert isinstance(nvml["available"], bool)
    assert nvml["available"] or nvml["reason"]


@pytest.mark.parametrize(
    "gen, width, gbps",
    [
        (3, 16, 15.76),
        (4, 16, 31.504),
        (5, 16, 63.008),
        (4, 8, 15.752),
        (None, 16, None),
        (5, None, None),
        (9, 16, None),
    ],
)
def test_pcie_theoretical_bandwidth(gen, width, gbps):
    assert pcie_gbps(gen, width) == (pytest.approx(gbps) if gbps else None)


def test_lane_rates_are_the_issue_figures():
    assert (PCIE_LANE_GBPS[3], PCIE_LANE_GBPS[4], PCIE_LANE_GBPS[5]) == (0.985, 1.969, 3.938)


def test_machine_key_is_folder_safe_and_names_what_the_machine_is():
    key = machine_key("node-7", "AMD EPYC 9654 96-Core Processor", ["NVIDIA H100 80GB HBM3"] * 8)
    assert key == "node-7_AMD-EPYC-9654-96-Core-Processor_8x-NVIDIA-H100-80GB-HBM3"
    assert machine_key("box", "Intel(R) Xeon(R) CPU", []) == "box_Intel-R-Xeon-R-CPU_no-gpu"
    assert "/" not in machine_key("a/b", "../c", ["d/e"])
    # A name given with --machine-name takes the host's place: two cloud VMs called "vm" get two folders.
    assert machine_key("vm", "AMD EPYC", [], "lab-a") == "lab-a_AMD-EPYC_no-gpu"
    assert machine_key("vm", "AMD EPYC", [], None) == "vm_AMD-EPYC_no-gpu"


def test_torch_info_has_the_build_facts():
    info = torch_info()
    for key in ("version", "cuda_runtime", "cudnn", "threads", "cpu_capability", "cuda_available"):
        assert key in info
    assert info["threads"] >= 1


def test_one_lost_gpu_keeps_the_others(fake_nvml, monkeypatch):
    def handle(index):
        if index == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return index

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", handle)
    nvml, gpus = nvml_info()
    assert nvml["available"] is True
    assert gpus[0]["name"] == "NVIDIA H100 80GB HBM3"
    assert gpus[1]["index"] == 1 and gpus[1]["name"] is None and "lost" in gpus[1]["error"].lower()
