"""What the GPU did in a profiled epoch, from the profiler's events (made here: no GPU needed)."""

from types import SimpleNamespace

import pytest
import torch

from bench.measure.breakdown import device_work, host_work, profile_epoch

CPU, CUDA = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA


def event(name, device_type, start_us, end_us, annotation=False):
    span = SimpleNamespace(elapsed_us=lambda: end_us - start_us)
    return SimpleNamespace(
        name=name, device_type=device_type, time_range=span, is_user_annotation=annotation
    )


def test_device_work_counts_the_gpus_operations_not_the_host_or_the_named_ranges():
    events = [
        event("aten::conv2d", CPU, 0, 900),  # the host's side: not the GPU's work
        event(
            "forward", CUDA, 0, 800
        ),  # a phase's span on the GPU (older torch: no annotation flag)
        event("Optimizer.step#Adam.step", CUDA, 800, 1000, annotation=True),
        event("void cudnn::conv_fwd_kernel", CUDA, 10, 110),
        event("Memcpy HtoD (Pageable -> Device)", CUDA, 200, 250),
        event("void at::native::vectorized_elementwise_kernel", CUDA, 300, 350),
    ]
    work = device_work(events, epoch_s=0.001)
    assert work["ops"] == 3
    assert work["busy_s"] == pytest.approx(200e-6)
    assert work["busy_share"] == pytest.approx(0.2)
    assert [(t["name"], t["count"]) for t in work["top"]] == [
        ("void cudnn::conv_fwd_kernel", 1),
        ("Memcpy HtoD (Pageable -> Device)", 1),
        ("void at::native::vectorized_elementwise_kernel", 1),
    ]


def test_the_costliest_operations_are_summed_by_name_and_only_the_first_few_kept():
    events = [
        event(f"kernel_{i % 10}", CUDA, 0, 1 + i % 10) for i in range(100)
    ]  # kernel_9 costs most
    events.append(event("k" * 300, CUDA, 0, 1))
    top = device_work(events, epoch_s=1.0)["top"]
    assert len(top) == 8 and top[0] == {
        "name": "kernel_9",
        "count": 10,
        "seconds": pytest.approx(100e-6),
    }
    assert all(len(t["name"]) <= 120 for t in top)


def test_device_work_of_an_epoch_with_no_gpu_operations():
    assert device_work([event("aten::add", CPU, 0, 5)], epoch_s=0.0) == {
        "ops": 0,
        "busy_s": 0.0,
        "busy_share": None,
        "top": [],
    }


def average(name, self_us, count=1, device_type=CPU, annotation=False):
    return SimpleNamespace(
        key=name,
        count=count,
        self_cpu_time_total=self_us,
        device_type=device_type,
        is_user_annotation=annotation,
    )


def test_host_work_ranks_the_cpus_operations_by_their_own_time_not_the_ranges():
    averages = [
        average("forward", 900_000, annotation=True),  # a phase: a span, not an operation
        average("Optimizer.step#Adam.step", 50_000, annotation=True),  # the optimizer's range
        average("aten::convolution_backward", 300_000, count=40),
        average("aten::max_pool2d_with_indices", 250_000, count=40),
        average(
            "## Call CompiledFxGraph abc", 400_000, count=20
        ),  # inductor's generated code: its own time counts
        average("void some_kernel", 999_000, device_type=CUDA),
        *(average(f"aten::op{i}", 10 - i) for i in range(10)),
    ]
    top = host_work(averages, epoch_s=2.0)["top"]
    assert len(top) == 8
    assert [t["name"] for t in top[:3]] == [
        "## Call CompiledFxGraph abc",
        "aten::convolution_backward",
        "aten::max_pool2d_with_indices",
    ]
    assert top[1] == {
        "name": "aten::convolution_backward",
        "count": 40,
        "seconds": 0.3,
        "share": 0.15,
    }
    assert host_work([average("aten::add", 5)], epoch_s=0.0)["top"][0]["share"] is None


def test_a_real_cpu_profile_names_its_costliest_operation():
    a = torch.ones(512, 512)  # made outside the epoch: its only costly operation is the product

    def epoch():
        with torch.profiler.record_function("forward"):
            a @ a

    out = profile_epoch(iter([0.0, 0.1, 0.6, 2.0]).__next__, "cpu", epoch)
    names = [t["name"] for t in out["host_work"]["top"]]
    assert "forward" not in names and names[0] == "aten::mm"


def test_a_cpu_profile_names_its_phases_and_no_device_work():
    def epoch():
        with torch.profiler.record_function("forward"):
            torch.ones(64, 64) @ torch.ones(64, 64)

    clock = iter(
        [0.0, 0.1, 0.6, 2.0]
    ).__next__  # before the profiler, the epoch's two ends, after its processing
    out = profile_epoch(clock, "cpu", epoch)
    assert (
        out["epoch_s"] == 0.5 and out["wall_s"] == 2.0
    )  # what the profile cost the run, not only the epoch
    assert set(out["host_s"]) == {"forward"} and out["host_s"]["forward"] > 0
    assert out["device_s"] is None and out["device_work"] is None
