"""The data and weights a run's cases share: the real set or the synthetic one, checked before any case, and the
weights inference is timed with."""

from __future__ import annotations

import sys

import pytest
import torch

from bench.format import records as fmt
from bench.measure.plan import ModelPlan, Plan
from fmnist_model import (
    SPLIT_SIZES,
    DataError,
    DataNotFoundError,
    Network,
    check_fashion_mnist,
    download_fashion_mnist,
    load_split,
    make_optimizer,
    predict,
    resolve_source,
    train_epoch_resident,
)
from fmnist_model.data import fake_split

__all__ = [
    "build",
    "builder",
    "check_data",
    "model_part",
    "data_for",
    "reference_labels",
    "split",
    "trained_state",
]

# Images the untimed training behind the inference cases sees: enough for a sane accuracy
# (0.98 on the synthetic set after 6,000), a fraction of an epoch's cost.
WEIGHTS_IMAGES = 10_000


def data_for(opt, download_timeout: float) -> str:
    """The data this run will use, downloaded first if asked: every data error is a usage error here."""
    try:
        name = resolve_source(opt.dataset, opt.data_root, opt.download)
    except DataError as exc:  # the folder cannot be looked into
        raise pytest.UsageError(f"--data-root: {exc}") from None
    if name == "fashion-mnist" and opt.download:
        try:
            download_fashion_mnist(
                opt.data_root,
                timeout=download_timeout,
                say=lambda line: print(line, file=sys.stderr),
            )
        except DataError as exc:
            raise pytest.UsageError(f"--download: {exc}") from None
    return name


def check_data(plan: Plan) -> dict | None:
    """Before any case: the real files hold what this run's plan needs, or it does not start.

    A run is never silently smaller than its plan: files with fewer images than the plan uses
    (60,000 and 10,000; 2,000 and 1,000 with --quick) are a usage error. Returns the files' counts.
    """
    if plan.dataset_name != "fashion-mnist":
        return None
    try:
        counts = check_fashion_mnist(plan.data_root)
    except DataNotFoundError as exc:
        raise pytest.UsageError(
            f"--dataset fashion-mnist: {exc} (The suite's options: --download, --dataset synthetic.)"
        ) from None
    except DataError as exc:
        raise pytest.UsageError(f"--data-root: {exc}") from None
    for split, planned in (
        ("train", plan.train_images or SPLIT_SIZES[True]),
        ("test", plan.test_images or SPLIT_SIZES[False]),
    ):
        if counts[split] < planned:
            raise pytest.UsageError(
                f"--data-root: the FashionMNIST {split} files under {plan.data_root}/FashionMNIST/raw hold "
                f"{counts[split]:,} images; this run's plan uses {planned:,}{' (--quick)' if plan.quick else ''}. "
                "Put the complete files there (or remove these and add --download), or use --dataset synthetic."
            )
    return counts


def split(plan: Plan, train: bool, model: ModelPlan | None = None):
    """The training or test split as this run's plan has it (downloaded and checked before the run: no download
    here): the notes' data for the CNN, torchvision's FakeData of its input shape for any other model."""
    if model is not None and not model.is_cnn:
        return fake_split(
            model.input_shape,
            model.classes,
            train=train,
            images=model.train_images if train else model.test_images,
        )
    return load_split(
        plan.dataset_name,
        train=train,
        root=plan.data_root,
        limit=plan.train_images if train else plan.test_images,
    )


def build(model: ModelPlan | None):
    """A fresh instance of the case's model (None: the notes' CNN), torch seeded first by the caller."""
    return builder(model)()


def builder(model: ModelPlan | None):
    """What makes a fresh instance of the case's model: the notes' Network, or the model's spec built."""
    if model is None or model.is_cnn:
        return Network
    return model.spec.build


def model_part(model: ModelPlan | None) -> dict:
    """What a case of a run that names models adds to its extra_info: which model, and its size (nothing for a run
    of the CNN alone: its cases are saved as they always were)."""
    return {} if model is None else {"model": fmt.ModelInfo.read(model.record()).write()}


def trained_state(plan: Plan, train_split, model: ModelPlan | None = None) -> dict:
    """Weights after one untimed resident epoch over the first 10,000 training images on the CPU
    at torch's default threads, so inference accuracy means something."""
    before = torch.get_num_threads()
    torch.set_num_threads(plan.default_threads)
    try:
        torch.manual_seed(0)
        network = build(model)
        n = min(len(train_split), WEIGHTS_IMAGES)
        train_epoch_resident(
            network, make_optimizer(network), train_split.images[:n], train_split.labels[:n], 100
        )
    finally:
        torch.set_num_threads(before)
    return network.state_dict()


def reference_labels(
    plan: Plan, test_split, trained_state: dict, model: ModelPlan | None = None
) -> torch.Tensor:
    """What every inference pipeline's labels are compared with: float32 eager (inference_mode) on
    the CPU, the trained weights, the whole test split (the notes' predictions, before any step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(plan.default_threads)
    try:
        network = build(model)
        network.load_state_dict(trained_state)
        return predict(network, test_split.images, 1000)
    finally:
        torch.set_num_threads(before)
