"""Train family: one epoch of the CNN per round, per device, CPU threads, batch size and pipeline."""

from __future__ import annotations

import math

import torch
from torch.utils.data import Subset

from fmnist_model import Network, make_optimizer, seed_loader, train_epoch_resident, train_epoch_seed

from .guard import skip_on_out_of_memory
from .measure import run_rounds, warmup_size

FAMILY = "train"


def test_train_epoch(benchmark, plan, clock, telemetry, device, cpu_threads, batch_size, pipeline, train_split):
    """seed: the notes' DataLoader + ToTensor + .to(device) loop, as written.
    resident: the uint8 set copied to the device once (untimed: the transfer family times
    that copy), shuffled and batched there."""
    benchmark.group = FAMILY
    images_in_epoch = len(train_split)
    batches = math.ceil(images_in_epoch / batch_size)
    warm_images, warm_batches = warmup_size(images_in_epoch, batch_size, plan.warmup_batches)
    epoch_fn = train_epoch_seed if pipeline == "seed" else train_epoch_resident
    epochs = []

    with skip_on_out_of_memory(device, f"batch size {batch_size}"):
        if pipeline == "resident":
            images, labels = train_split.images.to(device), train_split.labels.to(device)

        def fresh_model(count: int = images_in_epoch):
            # Every round trains a new model from the same seed: each round is the same
            # work, and its loss and accuracy are an epoch-1 figure comparable across devices.
            torch.manual_seed(0)
            model = Network().to(device)
            optimizer = make_optimizer(model)
            if pipeline == "seed":
                data = train_split.dataset if count == images_in_epoch else Subset(train_split.dataset, range(count))
                return (model, optimizer, seed_loader(data, batch_size), device), {}
            return (model, optimizer, images[:count], labels[:count], batch_size), {}

        def epoch(*args):
            result = epoch_fn(*args)
            epochs.append(result)
            return result

        run_rounds(
            benchmark,
            clock,
            plan.budgets[FAMILY],
            telemetry=telemetry,
            target=epoch,
            setup=fresh_model,
            # The warm-up is a short epoch on a fresh model: the same code on the same shapes.
            warmup=lambda: epoch_fn(*fresh_model(warm_images)[0]),
            scale=batches / warm_batches,
            warmup_record={"batches": warm_batches, "images": warm_images},
        )

    # The warm-up calls the epoch directly, so `epochs` holds the timed rounds only (with
    # --benchmark-disable, the one untimed epoch pytest-benchmark runs).
    benchmark.extra_info.update(
        images=epochs[-1].images,
        batches=batches,
        dataset=train_split.name,
        loss=epochs[-1].mean_loss,
        accuracy=epochs[-1].accuracy,
        losses=[e.mean_loss for e in epochs],
        accuracies=[e.accuracy for e in epochs],
    )
    # A fast epoch that broke training is not a result.
    assert all(math.isfinite(e.mean_loss) for e in epochs), f"non-finite loss on {device}: {epochs}"
