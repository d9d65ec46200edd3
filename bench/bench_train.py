"""Train family: one epoch of the CNN per round, per device, batch size and pipeline."""

from __future__ import annotations

import math

import pytest
import torch

from fmnist_model import Network, make_optimizer, seed_loader, train_epoch_resident, train_epoch_seed

from .guard import skip_on_out_of_memory

FAMILY = "train"


@pytest.mark.parametrize("pipeline", ["seed", "resident"])
def test_train_epoch(benchmark, plan, device, batch_size, pipeline, train_split):
    """seed: the notes' DataLoader + ToTensor + .to(device) loop, as written.
    resident: the uint8 set copied to the device once (untimed: the transfer family times
    that copy), shuffled and batched there."""
    benchmark.group = FAMILY
    epochs = []

    with skip_on_out_of_memory(device, f"batch size {batch_size}"):
        if pipeline == "resident":
            images, labels = train_split.images.to(device), train_split.labels.to(device)

        def fresh_model():
            # Every round trains a new model from the same seed: each round is the same
            # work, and its loss and accuracy are an epoch-1 figure comparable across devices.
            torch.manual_seed(0)
            model = Network().to(device)
            optimizer = make_optimizer(model)
            if pipeline == "seed":
                return (model, optimizer, seed_loader(train_split.dataset, batch_size), device), {}
            return (model, optimizer, images, labels, batch_size), {}

        def epoch(*args):
            result = (train_epoch_seed if pipeline == "seed" else train_epoch_resident)(*args)
            epochs.append(result)
            return result

        benchmark.pedantic(epoch, setup=fresh_model, rounds=plan.rounds[FAMILY], warmup_rounds=plan.warmup_rounds)

    # The timed epochs are the last ones: warm-up epochs ran first and are not in the figures
    # (with --benchmark-disable pytest-benchmark runs one untimed epoch and no warm-up).
    timed = epochs[-plan.rounds[FAMILY] :]
    benchmark.extra_info.update(
        images=timed[-1].images,
        batches=math.ceil(timed[-1].images / batch_size),
        dataset=train_split.name,
        loss=timed[-1].mean_loss,
        accuracy=timed[-1].accuracy,
        losses=[e.mean_loss for e in timed],
        accuracies=[e.accuracy for e in timed],
    )
    # A fast epoch that broke training is not a result.
    assert all(math.isfinite(e.mean_loss) for e in timed), f"non-finite loss on {device}: {timed}"
