"""Option parsing and device availability: what is a usage error, what is a skip."""

import pytest
import torch

from bench.plan import (
    available_devices,
    device_unavailable_reason,
    parse_batch_sizes,
    parse_devices,
    plan_from_options,
)


@pytest.mark.parametrize(
    "text, devices",
    [
        ("cpu", ("cpu",)),
        ("cpu,cuda:0", ("cpu", "cuda:0")),
        (" cpu , cuda ", ("cpu", "cuda:0")),  # bare cuda means cuda:0
        ("cuda,cuda:0,cuda:3", ("cuda:0", "cuda:3")),
        ("mps", ("mps",)),
    ],
)
def test_devices_parse(text, devices):
    assert parse_devices(text) == devices


@pytest.mark.parametrize(
    "text, bad", [("tpu", "'tpu'"), ("cuda:x", "'cuda:x'"), ("cpu,,cuda", "empty"), ("meta", "'meta'")]
)
def test_bad_device_names_the_value(text, bad):
    with pytest.raises(ValueError, match=bad):
        parse_devices(text)


def test_batch_sizes_parse():
    assert parse_batch_sizes("100, 1000,100") == (100, 1000)


@pytest.mark.parametrize("text, bad", [("0", "'0'"), ("-5", "'-5'"), ("10,abc", "'abc'"), ("1.5", "'1.5'"), ("", "''")])
def test_bad_batch_size_names_the_value(text, bad):
    with pytest.raises(ValueError, match=f"{bad} is not a positive integer"):
        parse_batch_sizes(text)


def test_cpu_is_always_available():
    assert available_devices()[0] == "cpu"
    assert device_unavailable_reason("cpu") is None


def test_missing_cuda_says_why(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "CUDA is not available" in device_unavailable_reason("cuda:0")
    assert "cuda:0" not in available_devices()


def test_a_gpu_index_the_machine_lacks_says_how_many_it_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_unavailable_reason("cuda:0") is None
    assert device_unavailable_reason("cuda:3") == "cuda:3: this machine has 1 CUDA device"
    assert available_devices()[:2] == ("cpu", "cuda:0")


def test_default_plan_is_the_issue_sweep():
    plan = plan_from_options(
        devices=("cpu",),
        batch_sizes=None,
        quick=False,
        dataset="auto",
        data_root="data",
        download=False,
        dataset_name="synthetic",
    )
    assert plan.batch_sizes("train") == (100, 1000, 10_000)
    assert plan.batch_sizes("inference") == (1, 10, 100, 1000, 10_000)
    assert plan.transfer_sizes == (1, 100, 1000, 10_000, 60_000)
    assert plan.train_images is None and plan.test_images is None  # whole splits
    assert plan.warmup_rounds >= 1


def test_quick_plan_is_small_and_batch_sizes_override_both_families():
    plan = plan_from_options(
        devices=None,
        batch_sizes=(64,),
        quick=True,
        dataset="synthetic",
        data_root="data",
        download=False,
        dataset_name="synthetic",
    )
    assert plan.quick and set(plan.rounds.values()) == {1}
    assert plan.batch_sizes("train") == plan.batch_sizes("inference") == (64,)
    assert plan.devices == available_devices()
    assert plan.summary()["train_batch_sizes"] == [64]
    with pytest.raises(ValueError, match="transfer"):
        plan.batch_sizes("transfer")
