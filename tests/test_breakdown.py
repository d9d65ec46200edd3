"""What the GPU did in a profiled epoch, from the profiler's events (made here: no GPU needed)."""

from types import SimpleNamespace

import pytest
import torch

from bench.breakdown import device_work, profile_epoch

CPU, CUDA = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA


def event(name, device_type, start_us, end_us, annotation=False):
    span = SimpleNamespace(elapsed_us=lambda: end_us - start_us)
    return SimpleNamespace(name=name, device_type=device_type, time_range=span, is_user_annotation=annotation)


def test_device_work_counts_the_gpus_operations_not_the_host_or_the_named_ranges():
    events = [
        event("aten::conv2d", CPU, 0, 900),  # the host's side: not the GPU's work
        event("forward", CUDA, 0, 800),  # a phase's span on the GPU (older torch: no annotation flag)
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
    events = [event(f"kernel_{i % 10}", CUDA, 0, 1 + i % 10) for i in range(100)]  # kernel_9 costs most
    events.append(event("k" * 300, CUDA, 0, 1))
    top = device_work(events, epoch_s=1.0)["top"]
    assert len(top) == 8 and top[0] == {"name": "kernel_9", "count": 10, "seconds": pytest.approx(100e-6)}
    assert all(len(t["name"]) <= 120 for t in top)


def test_device_work_of_an_epoch_with_no_gpu_operations():
    assert device_work([event("aten::add", CPU, 0, 5)], epoch_s=0.0) == {
        "ops": 0,
        "busy_s": 0.0,
        "busy_share": None,
        "top": [],
    }


def test_a_cpu_profile_names_its_phases_and_no_device_work():
    def epoch():
        with torch.profiler.record_function("forward"):
            torch.ones(64, 64) @ torch.ones(64, 64)

    clock = iter([0.0, 0.1, 0.6, 2.0]).__next__  # before the profiler, the epoch's two ends, after its processing
    out = profile_epoch(clock, "cpu", epoch)
    assert out["epoch_s"] == 0.5 and out["wall_s"] == 2.0  # what the profile cost the run, not only the epoch
    assert set(out["host_s"]) == {"forward"} and out["host_s"]["forward"] > 0
    assert out["device_s"] is None and out["device_work"] is None
