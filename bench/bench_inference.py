"""Inference family: predicted labels for the test split, per device and batch size, compute-only and end to end."""

from __future__ import annotations

import math

import pytest
import torch

from fmnist_model import Network, accuracy, predict

from .guard import skip_on_out_of_memory

FAMILY = "inference"


@pytest.mark.parametrize("mode", ["compute", "end_to_end"])
def test_inference(benchmark, plan, device, batch_size, mode, test_split, trained_state):
    """compute: float input already on the device, labels left there.
    end_to_end: float input on the host (as ToTensor leaves it), each batch moved to the
    device, the labels brought back to the host: what serving a request costs."""
    benchmark.group = FAMILY
    with skip_on_out_of_memory(device, f"batch size {batch_size}"):
        model = Network().to(device)
        model.load_state_dict(trained_state)
        host_images = test_split.images.float().div_(255.0)
        if mode == "compute":
            images = host_images.to(device)
            run = lambda: predict(model, images, batch_size)  # noqa: E731
        else:
            run = lambda: predict(model, host_images, batch_size, device=device)  # noqa: E731
        preds = benchmark.pedantic(run, rounds=plan.rounds[FAMILY], warmup_rounds=plan.warmup_rounds)

    # Labels stay where the work ran (compute) or come back to the host (end to end).
    # By type: an "mps" tensor reports itself as mps:0.
    assert preds.device.type == (torch.device(device).type if mode == "compute" else "cpu")
    benchmark.extra_info.update(
        images=len(test_split),
        batches=math.ceil(len(test_split) / batch_size),
        dataset=test_split.name,
        accuracy=accuracy(preds, test_split.labels),
    )
