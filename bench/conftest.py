"""The suite's pytest plugin: its options, the parameter matrix, machine info and where runs are saved."""

from __future__ import annotations

import platform

import pytest
import torch

from fmnist_model import (
    DEFAULT_ROOT,
    SOURCES,
    SPLIT_SIZES,
    Network,
    fashion_mnist_present,
    load_split,
    make_optimizer,
    resolve_source,
    train_epoch_resident,
)

from .machine import cpu_model, machine_key, nvml_info, torch_info
from .plan import (
    Plan,
    available_devices,
    device_unavailable_reason,
    parse_batch_sizes,
    parse_devices,
    plan_from_options,
)
from .timing import DeviceClock

# Bumped when the saved-run format changes in a way the report must know about.
# 1: first format (machine_info torch/gpus/nvml/dataset/fmnist_bench; params and extra_info per family).
FORMAT_VERSION = 1

_PLAN = pytest.StashKey[Plan]()
_MACHINE = pytest.StashKey[dict]()
_PYTEST_BENCHMARK_DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's own default


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fmnist-bench")
    group.addoption(
        "--devices",
        default=None,
        help="comma-separated devices to measure, e.g. cpu,cuda:0 (default: every device this machine has)",
    )
    group.addoption(
        "--batch-sizes",
        default=None,
        help="comma-separated batch sizes for training and inference "
        "(default: train 100,1000,10000; inference 1,10,100,1000,10000)",
    )
    group.addoption(
        "--quick",
        action="store_true",
        help="smoke run: small subsets, short sweeps, one timed round (well under a minute on 2 cores)",
    )
    group.addoption(
        "--dataset",
        choices=SOURCES,
        default="auto",
        help="auto (real FashionMNIST when its files are under --data-root, else synthetic), "
        "fashion-mnist or synthetic (default: auto)",
    )
    group.addoption("--data-root", default=str(DEFAULT_ROOT), help="where FashionMNIST/raw/ is (default: data)")
    group.addoption("--download", action="store_true", help="download FashionMNIST into --data-root if missing")


def pytest_configure(config: pytest.Config) -> None:
    # Every option is checked here, before collection: a bad value is a usage error naming it.
    opt = config.option
    parsed = {}
    for name, parse, value in (
        ("--devices", parse_devices, opt.devices),
        ("--batch-sizes", parse_batch_sizes, opt.batch_sizes),
    ):
        try:
            parsed[name] = parse(value) if value is not None else None
        except ValueError as exc:
            raise pytest.UsageError(f"{name}: {exc}") from None
    dataset_name = resolve_source(opt.dataset, opt.data_root, opt.download)
    if dataset_name == "fashion-mnist" and not opt.download and not fashion_mnist_present(opt.data_root):
        raise pytest.UsageError(
            f"--dataset fashion-mnist: the FashionMNIST files are not under {opt.data_root}/FashionMNIST/raw; "
            "add --download to fetch them, or use --dataset synthetic"
        )
    plan = plan_from_options(
        devices=parsed["--devices"],
        batch_sizes=parsed["--batch-sizes"],
        quick=opt.quick,
        dataset=opt.dataset,
        data_root=opt.data_root,
        download=opt.download,
        dataset_name=dataset_name,
    )
    config.stash[_PLAN] = plan

    # The machine as it is at the start of the run (an idle GPU's clocks, link and temperature).
    nvml, gpus = nvml_info()
    gpu_names = [d["name"] for d in torch_info()["cuda_devices"]]
    key = machine_key(platform.node(), cpu_model(), gpu_names)
    config.stash[_MACHINE] = {"nvml": nvml, "gpus": gpus, "machine_key": key}

    # Saved runs go to results/<machine key>/ unless --benchmark-storage says otherwise:
    # one folder per machine, so results/ folders from many machines merge by copying.
    # pytest-benchmark reads these options in its own pytest_configure, which runs last.
    if opt.benchmark_storage == _PYTEST_BENCHMARK_DEFAULT_STORAGE:
        opt.benchmark_storage = f"file://{config.rootpath / 'results' / key}"
    opt.benchmark_save_data = True  # keep every round's time: the report computes percentiles from them


def _device_marks(device: str) -> list:
    reason = device_unavailable_reason(device)
    if reason is not None:
        return [pytest.mark.skip(reason=reason)]
    # pytest-benchmark reads its timer from this mark: one clock per device, synchronizing it.
    return [pytest.mark.benchmark(timer=DeviceClock(device))]


def _transfer_routes(device: str) -> list[tuple[str, str]]:
    if device == "cpu":
        return [("h2h", "pageable")]  # host-to-host: the memory-bandwidth reference
    if device == "mps":
        return [("h2d", "pageable"), ("d2h", "pageable")]  # unified memory: no pinned kind
    return [(direction, memory) for direction in ("h2d", "d2h") for memory in ("pageable", "pinned")]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    plan = metafunc.config.stash.get(_PLAN, None)
    if plan is None or "device" not in metafunc.fixturenames:
        return
    family = metafunc.module.FAMILY
    if family == "transfer":
        metafunc.parametrize(
            ["device", "direction", "memory"],
            [
                pytest.param(device, direction, memory, marks=_device_marks(device))
                for device in plan.devices
                for direction, memory in _transfer_routes(device)
            ],
        )
        metafunc.parametrize("size", plan.transfer_sizes)
    else:
        metafunc.parametrize("device", [pytest.param(d, marks=_device_marks(d)) for d in plan.devices])
        metafunc.parametrize("batch_size", plan.batch_sizes(family))


def pytest_report_header(config: pytest.Config) -> list[str]:
    plan = config.stash.get(_PLAN, None)
    if plan is None:
        return []
    machine = config.stash[_MACHINE]
    return [
        f"fmnist-bench: devices {', '.join(plan.devices)} (available here: {', '.join(available_devices())}); "
        f"dataset {plan.dataset_name}; {'quick' if plan.quick else 'full'} run",
        f"fmnist-bench: machine {machine['machine_key']}; saves to {config.option.benchmark_storage}",
    ]


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    plan = config.stash[_PLAN]
    machine = config.stash[_MACHINE]
    machine_info["torch"] = torch_info()
    machine_info["nvml"] = machine["nvml"]
    machine_info["gpus"] = machine["gpus"]
    machine_info["dataset"] = {
        "name": plan.dataset_name,
        "requested": plan.dataset,
        "root": plan.data_root,
        "train_images": min(plan.train_images or SPLIT_SIZES[True], SPLIT_SIZES[True]),
        "test_images": min(plan.test_images or SPLIT_SIZES[False], SPLIT_SIZES[False]),
    }
    machine_info["fmnist_bench"] = {
        "format": FORMAT_VERSION,
        "machine_key": machine["machine_key"],
        "plan": plan.summary(),
    }


@pytest.fixture(scope="session")
def plan(pytestconfig: pytest.Config) -> Plan:
    return pytestconfig.stash[_PLAN]


@pytest.fixture(scope="session")
def train_split(plan: Plan):
    return load_split(
        plan.dataset_name, train=True, root=plan.data_root, download=plan.download, limit=plan.train_images
    )


@pytest.fixture(scope="session")
def test_split(plan: Plan):
    return load_split(
        plan.dataset_name, train=False, root=plan.data_root, download=plan.download, limit=plan.test_images
    )


@pytest.fixture(scope="session")
def trained_state(train_split) -> dict:
    """Weights after one resident epoch on the CPU (untimed), so inference accuracy means something."""
    torch.manual_seed(0)
    model = Network()
    train_epoch_resident(model, make_optimizer(model), train_split.images, train_split.labels, 100)
    return model.state_dict()
