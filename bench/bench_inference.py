"""Inference family: predicted labels for the test split, per device, CPU threads and batch size, compute-only and end to end."""

from __future__ import annotations

import math
import statistics

import torch

from fmnist_model import Network, accuracy, predict

from .guard import skip_on_out_of_memory
from .measure import latency_summary, run_rounds, warmup_size
from .timing import sample_calls

FAMILY = "inference"


def test_inference(benchmark, plan, clock, telemetry, device, cpu_threads, batch_size, mode, test_split, trained_state):
    """compute: float input already on the device, labels left there.
    end_to_end: float input on the host (as ToTensor leaves it), each batch moved to the
    device, the labels brought back to the host: what serving a request costs.

    Throughput: each round is a pass over the test split (its first `plan.pass_batches`
    batches at the smallest batch sizes). Latency: single batches timed one at a time, a
    bounded sample; where a pass is a single batch, the rounds are that sample."""
    benchmark.group = FAMILY
    images_in_pass = min(len(test_split), batch_size * plan.pass_batches)
    batches = math.ceil(images_in_pass / batch_size)
    full_batches = images_in_pass // batch_size
    warm_images, warm_batches = warmup_size(images_in_pass, batch_size, plan.warmup_batches)
    with skip_on_out_of_memory(device, f"batch size {batch_size}"):
        model = Network().to(device)
        model.load_state_dict(trained_state)
        host_images = test_split.images[:images_in_pass].float().div_(255.0)
        if mode == "compute":
            images = host_images.to(device)

            def run(x):
                return predict(model, x, batch_size)
        else:
            images = host_images

            def run(x):
                return predict(model, x, batch_size, device=device)

        latency = None

        def calibrate(warm_s: float) -> float:
            """After the warm-up: time single batches (the latency sample); a pass is `batches` of them."""
            nonlocal latency
            if batches == 1:
                return warm_s  # the warm-up was one whole pass; the rounds will be the sample
            sample = plan.latency

            def one_batch(i: int):
                start = (i % max(full_batches, 1)) * batch_size
                return run(images[start : start + batch_size])

            times = sample_calls(
                clock, one_batch, min_calls=sample.min_batches, max_calls=sample.max_batches, max_time=sample.max_time
            )
            latency = latency_summary(times, "sample")
            # Less the syncs between batches that a pass does not make: an upper bound.
            return statistics.median(times) * batches

        preds = run_rounds(
            benchmark,
            clock,
            plan.budgets[FAMILY],
            telemetry=telemetry,
            target=lambda: run(images),
            warmup=lambda: run(images[:warm_images]),
            scale=batches / warm_batches,
            calibrate=calibrate,
            warmup_record={"batches": warm_batches, "images": warm_images},
        )
    if latency is None and not benchmark.disabled:
        latency = latency_summary(benchmark.stats.stats.data, "rounds")  # one batch per round

    # Labels stay where the work ran (compute) or come back to the host (end to end).
    # By type: an "mps" tensor reports itself as mps:0.
    assert preds.device.type == (torch.device(device).type if mode == "compute" else "cpu")
    benchmark.extra_info.update(
        images=images_in_pass,
        batches=batches,
        dataset=test_split.name,
        accuracy=accuracy(preds, test_split.labels[:images_in_pass]),
    )
    if latency is not None:
        benchmark.extra_info["latency"] = latency
