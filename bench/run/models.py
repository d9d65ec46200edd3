"""The models of a run (--model, --input-shape, --classes): each named, built and tried on the CPU before any case,
and given its bounded work."""

from __future__ import annotations

import math

import pytest

from bench.analysis.words import flops_said
from bench.measure.plan import (
    EPOCH_TRAIN_FLOPS,
    MAX_MODEL_BYTES,
    MAX_MODEL_IMAGES,
    PASS_FLOPS,
    QUICK_SHARE,
    QUICK_TEST_IMAGES,
    QUICK_TRAIN_IMAGES,
    TRAIN_FLOPS_PER_FORWARD,
    ModelPlan,
    bounded_images,
)
from fmnist_model import NUM_CLASSES
from fmnist_model.models import (
    CNN_SHAPE,
    ModelError,
    check_model,
    parse_classes,
    parse_input_shape,
    parse_models,
    spec_of,
)

__all__ = ["model_plans", "models_said"]


def model_plans(opt) -> tuple[ModelPlan, ...]:
    """The run's models with their work, or () for the notes' CNN alone (a run as it always was). A model that
    does not import, build, take the input shape or give [batch, classes] is a usage error naming the
    option, before any case."""
    try:
        names = parse_models(opt.model)
        shape = None if opt.input_shape is None else parse_input_shape(opt.input_shape)
        classes = None if opt.classes is None else parse_classes(opt.classes)
    except ModelError as exc:  # (each names the option it is about)
        raise pytest.UsageError(f"{exc.option}: {exc}") from None
    if names == ("cnn",):
        # (the CNN's own shape and classes, given, change nothing)
        if shape not in (None, CNN_SHAPE) or classes not in (None, NUM_CLASSES):
            given = "--input-shape" if shape not in (None, CNN_SHAPE) else "--classes"
            raise pytest.UsageError(
                f"{given}: the notes' CNN takes 1x28x28 images of 10 classes; {given} is for "
                "another model (--model torchvision:NAME or module.path:callable)"
            )
        return ()
    quick = bool(opt.quick)
    plans = []
    for name in names:
        try:
            spec = spec_of(name, shape, classes)
            facts = check_model(spec)
        except ModelError as exc:
            raise pytest.UsageError(f"{exc.option}: {exc}") from None
        if spec.is_cnn:
            # The CNN's work is the notes' whole split (the quick run's subset), as in a run of it alone.
            train_images, test_images = (
                (QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES) if quick else (None, None)
            )
        else:
            share = QUICK_SHARE if quick else 1
            # at most MAX_MODEL_IMAGES, and at most MAX_MODEL_BYTES of them as uint8
            most = min(MAX_MODEL_IMAGES, MAX_MODEL_BYTES // math.prod(spec.input_shape)) // share
            train_images = bounded_images(
                TRAIN_FLOPS_PER_FORWARD * facts.flops_per_image, EPOCH_TRAIN_FLOPS / share, most
            )
            test_images = bounded_images(facts.flops_per_image, PASS_FLOPS / share, most)
        plans.append(
            ModelPlan(
                name=spec.name,
                label=spec.label,
                input_shape=spec.input_shape,
                classes=spec.classes,
                parameters=facts.parameters,
                flops_per_image=facts.flops_per_image,
                train_images=train_images,
                test_images=test_images,
            )
        )
    return tuple(plans)


def models_said(plan) -> list[str]:
    """The header's lines of a run that names models: each model, its size and what its epoch is."""
    if not plan.models:
        return []
    lines = ["fmnist-bench: models (each measured on its own; --model):"]
    for model in plan.models:
        if model.is_cnn:
            train = f"{model.train_images:,}" if model.train_images else "all 60,000"
            lines.append(
                f"    cnn: the notes' CNN on {plan.dataset_name}, an epoch {train} images "
                f"({model.parameters:,} parameters, {flops_said(model.flops_per_image)} an image forward)"
            )
            continue
        train_sizes = ", ".join(f"{n:,}" for n in plan.batch_sizes("train", model))
        test_sizes = ", ".join(f"{n:,}" for n in plan.batch_sizes("inference", model))
        lines.append(
            f"    {model.label}: {model.parameters:,} parameters, {flops_said(model.flops_per_image)} an "
            f"image forward (torch's flop counter); on torchvision's FakeData, an epoch {model.train_images:,} "
            f"images and a test pass {model.test_images:,} (bounded by its FLOPs, the same on every device); "
            f"batch sizes: train {train_sizes}; inference {test_sizes}"
        )
    return lines
