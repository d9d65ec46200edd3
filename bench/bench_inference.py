"""Inference family: predicted labels for the test split, per device, CPU threads, batch size, mode and pipeline (the ladder)."""

from __future__ import annotations

import math
import statistics

import torch

from bench.format import records as fmt
from bench.measure.clock import sample_calls, timed_call
from bench.measure.guard import skip_on_out_of_memory
from bench.measure.rounds import latency_summary, run_rounds, warmup_size
from bench.run import data, pbench
from fmnist_model import NUM_CLASSES, accuracy, confusion_matrix
from fmnist_model.ladder import inference_config
from fmnist_model.predictor import Predictor
from fmnist_model.work import inference_copies, inference_work

FAMILY = "inference"
REFERENCE = "cpu float32 inference_mode, the same weights"


def test_inference(
    benchmark,
    plan,
    clock,
    telemetry,
    model,
    device,
    cpu_threads,
    batch_size,
    mode,
    pipeline,
    test_split,
    trained_state,
    reference_labels,
):
    """compute: float input already on the device, labels left there.
    end_to_end: float input on the host (as ToTensor leaves it), each batch moved to the
    device, the labels brought back to the host: what serving a request costs.
    pipeline: a step of fmnist_model.ladder.INFERENCE_LADDER (eager: autograd on;
    inference_mode; then channels_last, bf16, compile, cuda_graph on top of inference_mode, and
    channels_last_bf16 on top of channels_last).

    Throughput: each round is a pass over the test split (its first `plan.pass_batches`
    batches at the smallest batch sizes). Latency: single batches timed one at a time, a
    bounded sample; where a pass is a single batch, the rounds are that sample. Agreement:
    the share of labels equal to float32 inference_mode's on the CPU with the same weights."""
    benchmark.group = FAMILY
    config = inference_config(pipeline)
    images_in_pass = min(len(test_split), batch_size * plan.pass_batches)
    batches = math.ceil(images_in_pass / batch_size)
    full_batches = images_in_pass // batch_size
    warm_images, warm_batches = warmup_size(images_in_pass, batch_size, plan.warmup_batches)
    with skip_on_out_of_memory(device, f"batch size {batch_size}"):
        network = data.build(model)
        network.load_state_dict(trained_state)
        predictor = Predictor(config, network, batch_size, device)
        host_images = test_split.images[:images_in_pass].float().div_(255.0)
        end_to_end = mode == "end_to_end"
        images = host_images if end_to_end else host_images.to(device)
        # Compile or capture each batch shape of a pass before the warm-up: its own figure.
        prepare_s, prepared = timed_call(clock, lambda: predictor.prepare(images))

        def run(x):
            return predictor(x, device=end_to_end)

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
                clock,
                one_batch,
                min_calls=sample.min_batches,
                max_calls=sample.max_batches,
                max_time=sample.max_time,
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
        # The work it did, counted on the pipeline's own short passes (after the rounds: never
        # timed).
        copies = inference_copies(
            device, mode, images_in_pass, batch_size, host_images[0].numel() * 4
        )
        work = (
            None
            if benchmark.disabled
            else inference_work(
                config,
                device,
                mode,
                host_images,
                data.builder(model),
                model.label if model else "",
            ).record(batch_size, copies)
        )
    if latency is None and not benchmark.disabled:
        latency = latency_summary(pbench.round_times(benchmark), "rounds")  # one batch per round

    # Labels stay where the work ran (compute) or come back to the host (end to end).
    # By type: an "mps" tensor reports itself as mps:0.
    assert preds.device.type == (torch.device(device).type if mode == "compute" else "cpu")
    reference = reference_labels[:images_in_pass]
    # The notes' confusion matrix, as agreement: rows the reference's label, columns this case's.
    classes = model.classes if model is not None else NUM_CLASSES
    versus = confusion_matrix(preds.cpu(), reference, classes)
    agree = int(versus.diagonal().sum())
    benchmark.extra_info.update(data.model_part(model))
    benchmark.extra_info.update(
        fmt.inference_figures(
            images=images_in_pass,
            batches=batches,
            dataset=test_split.name,
            accuracy=accuracy(preds, test_split.labels[:images_in_pass]),
            pipeline_config=config.record(),
            reference=REFERENCE,
            agree=agree,
            matrix=versus.tolist(),
        )
    )
    benchmark.extra_info.update(
        fmt.step_parts(prepare_s=prepare_s, prepared=prepared, work=work, latency=latency)
    )
