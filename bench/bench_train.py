"""Train family: one epoch of the CNN per round, per device, CPU threads, batch size and pipeline (the ladder)."""

from __future__ import annotations

import math

from bench.format import records as fmt
from bench.measure.breakdown import profile_epoch
from bench.measure.clock import timed_call
from bench.measure.guard import skip_on_out_of_memory
from bench.measure.rounds import profile_size, run_rounds, warmup_size
from bench.run import data
from fmnist_model.ladder import train_config
from fmnist_model.trainer import Trainer
from fmnist_model.work import train_copies, train_work

FAMILY = "train"


def test_train_epoch(
    benchmark, plan, clock, telemetry, model, device, cpu_threads, batch_size, pipeline, train_split
):
    """One step of the ladder (fmnist_model.ladder.TRAIN_LADDER): seed is the notes' DataLoader +
    ToTensor + .to(device) loop as written; loader tunes its DataLoader; resident keeps the uint8
    set on the device (copied once, untimed: the transfer family times that copy); each step after
    it changes one thing of the step it builds on (BUILDS_ON). Every round is epoch 1 of the same
    model (same weights, same image order), so each pipeline's loss is comparable with resident's.

    compile and cuda_graph compile or capture every batch shape before the warm-up: that time
    is recorded on its own (extra_info.prepare), never inside an epoch.

    model (--model): the notes' CNN on its data, or any other model on FakeData of its input shape,
    its epoch bounded by its FLOPs (bench/measure/plan.py bounded_images)."""
    benchmark.group = FAMILY
    config = train_config(pipeline, device)
    images_in_epoch = len(train_split)
    batches = math.ceil(images_in_epoch / batch_size)
    warm_images, warm_batches = warmup_size(images_in_epoch, batch_size, plan.warmup_batches)
    epochs = []

    with skip_on_out_of_memory(device, f"batch size {batch_size}"):
        trainer = Trainer(
            config,
            device,
            batch_size,
            dataset=train_split.dataset,
            images=train_split.images,
            labels=train_split.labels,
            build=data.builder(model),
        )
        prepare_s, prepared = timed_call(clock, trainer.prepare)

        def epoch():
            result = trainer.epoch()
            epochs.append(result)
            return result

        def warmup():
            trainer.reset()
            return trainer.epoch(warm_images)  # a short epoch: the same code on the same shapes

        run_rounds(
            benchmark,
            clock,
            plan.budgets[FAMILY],
            telemetry=telemetry,
            target=epoch,
            setup=lambda: (trainer.reset(), ((), {}))[1],
            warmup=warmup,
            scale=batches / warm_batches,
            warmup_record={"batches": warm_batches, "images": warm_images},
        )
        breakdown = None
        if plan.breakdown_for(batch_size, model) and not benchmark.disabled:
            trainer.reset()
            most = (
                plan.profile_loader_images if config.data == "dataloader" else plan.profile_images
            )
            profiled = profile_size(images_in_epoch, batch_size, most)
            breakdown = profile_epoch(clock, device, lambda: trainer.epoch(profiled, annotate=True))
            # the first `profiled` images of an epoch: shares, not the epoch's sum
            breakdown["images"] = profiled
        # The work it did, counted on the pipeline's own short epochs (after the rounds: never
        # timed).
        image_bytes = train_split.images[0].numel() * 4  # as float32, as ToTensor makes it
        copies = train_copies(config, device, images_in_epoch, batch_size, image_bytes)
        work = (
            None
            if benchmark.disabled
            else train_work(
                config, device, train_split, data.builder(model), model.label if model else ""
            ).record(batch_size, copies)
        )

    benchmark.extra_info.update(data.model_part(model))
    # The warm-up calls the epoch directly, so `epochs` holds the timed rounds only (with
    # --benchmark-disable, the one untimed epoch pytest-benchmark runs).
    benchmark.extra_info.update(
        fmt.train_figures(
            epochs=epochs,
            batches=batches,
            dataset=train_split.name,
            # What this step ran, and how far its loss may be from resident's (same weights, same
            # order).
            pipeline_config={**config.record(), "loss_tolerance": config.loss_tolerance},
        )
    )
    benchmark.extra_info.update(
        fmt.step_parts(prepare_s=prepare_s, prepared=prepared, work=work, breakdown=breakdown)
    )
    # A fast epoch that broke training is not a result.
    assert all(math.isfinite(e.mean_loss) for e in epochs), f"non-finite loss on {device}: {epochs}"
