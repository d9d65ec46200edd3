"""End to end: a quick run of the real suite in a subprocess, its saved JSON, option errors and skips."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# The axes every benchmark of a family must name in its params, and the units in its extra_info.
PARAMS = {
    "transfer": {"device", "direction", "memory", "size", "dtype"},
    "train": {"device", "batch_size", "pipeline"},
    "inference": {"device", "batch_size", "mode"},
}
EXTRA = {
    "transfer": {"images", "bytes"},
    "train": {"images", "batches", "dataset", "loss", "accuracy", "losses", "accuracies"},
    "inference": {"images", "batches", "dataset", "accuracy"},
}


def run_suite(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quick")
    store = tmp / "store"
    # An empty data root: "auto" must fall back to the synthetic set without the network.
    result = run_suite(
        "--quick",
        "--data-root",
        str(tmp / "no-data"),
        "--benchmark-autosave",
        f"--benchmark-storage=file://{store}",
        f"--benchmark-json={tmp / 'run.json'}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"json": json.loads((tmp / "run.json").read_text()), "store": store, "output": result.stdout}


def test_all_three_families_ran(quick_run):
    groups = {b["group"] for b in quick_run["json"]["benchmarks"]}
    assert groups == {"transfer", "train", "inference"}


def test_every_benchmark_names_its_axes_and_units(quick_run):
    for bench in quick_run["json"]["benchmarks"]:
        family = bench["group"]
        assert set(bench["params"]) == PARAMS[family], bench["name"]
        assert EXTRA[family] <= set(bench["extra_info"]), bench["name"]
        assert bench["stats"]["rounds"] >= 1 and bench["stats"]["median"] > 0
        assert len(bench["stats"]["data"]) == bench["stats"]["rounds"]  # per-round times are kept
        assert bench["options"]["timer"] == f"DeviceClock({bench['params']['device']})"


def test_train_records_loss_and_accuracy_beside_the_time(quick_run):
    for bench in quick_run["json"]["benchmarks"]:
        if bench["group"] == "train":
            info = bench["extra_info"]
            assert info["dataset"] == "synthetic"
            assert info["loss"] > 0 and 0 <= info["accuracy"] <= 1
            assert len(info["losses"]) == bench["stats"]["rounds"]


def test_transfer_bytes_follow_size_and_dtype(quick_run):
    for bench in quick_run["json"]["benchmarks"]:
        if bench["group"] == "transfer":
            p = bench["params"]
            per_image = 784 * (4 if p["dtype"] == "float32" else 1)
            assert bench["extra_info"]["bytes"] == p["size"] * per_image
            if p["device"] == "cpu":
                assert (p["direction"], p["memory"]) == ("h2h", "pageable")


def test_machine_info_carries_torch_nvml_gpus_and_dataset(quick_run):
    info = quick_run["json"]["machine_info"]
    assert info["torch"]["version"]
    assert isinstance(info["nvml"]["available"], bool)
    assert info["nvml"]["available"] or info["nvml"]["reason"]
    assert isinstance(info["gpus"], list)
    assert info["dataset"]["name"] == "synthetic" and info["dataset"]["requested"] == "auto"
    assert info["fmnist_bench"]["format"] == 1 and info["fmnist_bench"]["plan"]["quick"] is True
    assert info["fmnist_bench"]["machine_key"]


def test_autosave_writes_pytest_benchmark_storage_and_compare_reads_it(quick_run):
    saved = list(quick_run["store"].glob("*/0001_*.json"))
    assert len(saved) == 1
    compare = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_benchmark",
            "--storage",
            f"file://{quick_run['store']}",
            "compare",
            "--group-by=group",
        ],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0, compare.stderr
    assert "test_train_epoch[cpu-100-seed]" in compare.stdout


def test_default_storage_is_results_per_machine(tmp_path):
    result = run_suite("--quick", "--collect-only")
    assert result.returncode == 0, result.stderr
    assert f"saves to file://{REPO / 'results'}/" in result.stdout


@pytest.mark.parametrize(
    "option, message",
    [
        (["--devices", "tpu"], "--devices: 'tpu' is not a device"),
        (["--devices", "cpu,cuda:x"], "--devices: 'cuda:x' is not a device"),
        (["--batch-sizes", "0"], "--batch-sizes: '0' is not a positive integer"),
        (["--batch-sizes", "100,big"], "--batch-sizes: 'big' is not a positive integer"),
        (["--dataset", "mnist"], "--dataset: invalid choice: 'mnist'"),
    ],
)
def test_bad_options_are_usage_errors_naming_option_and_value(option, message):
    result = run_suite("--quick", *option)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr


def test_missing_real_files_are_a_usage_error_naming_the_path(tmp_path):
    result = run_suite("--quick", "--dataset", "fashion-mnist", "--data-root", str(tmp_path))
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert str(tmp_path) in result.stderr and "--download" in result.stderr


def test_a_device_the_machine_lacks_is_a_skip_with_the_reason():
    # Well formed, and one past the GPUs this machine has (cuda:0 where it has none).
    missing = f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"
    result = run_suite("--quick", "--devices", f"cpu,{missing}", "-k", "train and 100-", "-rs")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "2 passed, 2 skipped" in result.stdout
    assert "SKIPPED" in result.stdout and f"{missing}:" in result.stdout
