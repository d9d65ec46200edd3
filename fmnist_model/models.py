"""Which model a run measures: the notes' CNN, a torchvision classifier or a user's own; named, built and checked.

`--model cnn` (the default) is the study notes' network on FashionMNIST. `--model torchvision:NAME`
is any classification model torchvision has, built without weights (nothing is downloaded).
`--model package.module:callable` is a callable of the user's that returns an `nn.Module`,
imported from the current directory or the environment; it is called with `num_classes=N` where
it takes that argument, else with none. Every model but the CNN trains on torchvision's own
`FakeData` of its input shape (fmnist_model/data.py: fake_split).

`check_model` builds the model and runs one forward pass on the CPU at batch 2 before any case: a
module that does not import, a callable that raises or does not return a module, a name
torchvision does not have, an input shape the model rejects and an output that is not
[batch, classes] are a ModelError naming what was wrong.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.format.names import CNN_MODEL, model_label

from .model import NUM_CLASSES, Network

__all__ = [
    "CNN",
    "CNN_SHAPE",
    "ModelError",
    "ModelFacts",
    "ModelSpec",
    "check_model",
    "parse_input_shape",
    "parse_models",
]

CNN = CNN_MODEL
# The notes' CNN takes FashionMNIST's images: one channel of 28x28.
CNN_SHAPE = (1, 28, 28)
TORCHVISION = "torchvision:"
# The input shape of a torchvision model when --input-shape is not given: 3 channels at the crop size its
# default weights' transforms use (224 for most, 299 for inception_v3), read from torchvision's
# weights registry without downloading them.
TORCHVISION_CHANNELS = 3
FALLBACK_SIDE = 224
# FakeData makes each image through PIL (ToPILImage): 1 to 4 channels (L, LA, RGB, RGBA).
MAX_CHANNELS = 4
# A side past this is a typo, not a plan: the trial pass alone holds two images and their activations
# (a 3x2048x2048 float image is 50 MB, resnet18's first activations 16x that).
MAX_SIDE = 2048
MAX_CLASSES = 1_000_000
# The trial forward pass: 2 images, as a training step's BatchNorm needs more than one value a channel.
TRIAL_BATCH = 2
# torchvision models whose default builds return auxiliary outputs in training mode (a tuple, not
# logits): built without them, as a classifier's training step needs.
_AUX_LOGITS = ("googlenet", "inception_v3")


class ModelError(ValueError):
    """A --model, --input-shape or --classes that cannot be measured: the message names what was wrong, and
    `option` the option to change."""

    def __init__(self, message: str, option: str = "--model") -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class ModelSpec:
    """One model as the run measures it: its name as given, the shape of one input image and its classes."""

    name: str  # "cnn", "torchvision:NAME" or "package.module:callable"
    input_shape: tuple[int, int, int]  # C, H, W of one image
    classes: int

    @property
    def is_cnn(self) -> bool:
        return self.name == CNN

    @property
    def label(self) -> str:
        """How records, tables and the answer name it (bench/format/names.py model_label)."""
        return model_label(self.name, self.input_shape, self.classes)

    @property
    def image_bytes(self) -> int:
        """Bytes of one float32 image of its input shape (what ToTensor makes)."""
        c, h, w = self.input_shape
        return c * h * w * 4

    def build(self) -> nn.Module:
        """A fresh, untrained instance (seed torch first for the same first weights). A model with lazy layers
        (nn.LazyConv2d, nn.LazyLinear) gets its weights from one forward pass of zeros, as torch's docs ask
        before an optimizer is made."""
        if self.is_cnn:
            return Network()
        if self.name.startswith(TORCHVISION):
            model = _torchvision_model(self.name[len(TORCHVISION) :], self.classes)
        else:
            model = _called(self.name, self.classes)
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
            with torch.no_grad():
                model(torch.zeros(TRIAL_BATCH, *self.input_shape))
        return model


@dataclass(frozen=True)
class ModelFacts:
    """What the trial pass found: parameters and forward FLOPs an image, as torch's flop counter counts them."""

    parameters: int
    flops_per_image: (
        float  # forward only: 2 FLOPs a multiply-add of its convolutions and matrix products
    )

    def record(self, spec: ModelSpec, images: int | None = None) -> dict:
        """extra_info.model and the plan's models entry (bench/format/records.py ModelInfo)."""
        out = {
            "name": spec.name,
            "label": spec.label,
            "parameters": self.parameters,
            "flops_per_image": self.flops_per_image,
            "input_shape": list(spec.input_shape),
            "classes": spec.classes,
        }
        if images is not None:
            out["train_images"] = images
        return out


def parse_models(text: str | None) -> tuple[str, ...]:
    """--model: comma-separated model names, each cnn, torchvision:NAME or module.path:callable (not imported here)."""
    if text is None:
        return (CNN,)
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise ModelError(f"expected comma-separated model names, got {text!r}")
    for name in names:
        if name == CNN or name.startswith(TORCHVISION):
            continue
        module, colon, attribute = name.partition(":")
        if not colon or not module or not attribute:
            hint = f"; did you mean torchvision:{name}?" if name in _classifiers() else ""
            raise ModelError(
                f"{name!r} is not cnn, torchvision:NAME or module.path:callable "
                f"(e.g. torchvision:resnet18, mymodels:build){hint}"
            )
        if module.endswith(".py"):
            raise ModelError(
                f"{name!r}: a module is named as Python imports it, without .py "
                f"({module.removesuffix('.py').replace('/', '.')}:{attribute})"
            )
    if len(set(names)) != len(names):
        raise ModelError(f"{text!r} names a model twice")
    return tuple(names)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """--input-shape C,H,W: three positive integers."""
    parts = [part.strip() for part in text.replace("x", ",").split(",")]
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 1 for v in values):
        raise ModelError(
            f"expected C,H,W (three positive integers, e.g. 3,64,64), got {text!r}", "--input-shape"
        )
    channels, height, width = values
    if channels > MAX_CHANNELS:
        last = (
            f" (channels come first: {width},{channels},{height}?)" if width <= MAX_CHANNELS else ""
        )
        raise ModelError(
            f"{channels} channels: torchvision's FakeData makes images through PIL, 1 to {MAX_CHANNELS} "
            f"channels{last}",
            "--input-shape",
        )
    if max(height, width) > MAX_SIDE:
        raise ModelError(
            f"a side of {max(height, width):,} is more than {MAX_SIDE:,}", "--input-shape"
        )
    return values


def parse_classes(text: str) -> int:
    """--classes N: at least 2."""
    try:
        value = int(text)
    except ValueError:
        raise ModelError(f"expected a whole number of classes, got {text!r}", "--classes") from None
    if not 2 <= value <= MAX_CLASSES:
        raise ModelError(f"expected 2 to {MAX_CLASSES:,} classes, got {value:,}", "--classes")
    return value


def spec_of(name: str, input_shape: tuple[int, int, int] | None, classes: int | None) -> ModelSpec:
    """The spec of `name` with the shape and classes asked for (None: the model's own). The CNN has its own:
    another shape or class count for it is a ModelError."""
    if name == CNN:
        return ModelSpec(CNN, CNN_SHAPE, NUM_CLASSES)
    classes = NUM_CLASSES if classes is None else classes
    if input_shape is None:
        if not name.startswith(TORCHVISION):
            _callable(name)  # one that does not import says so first
            raise ModelError(
                f"{name} cannot say what shape of image it takes: give --input-shape C,H,W",
                "--input-shape",
            )
        input_shape = _torchvision_shape(name[len(TORCHVISION) :])
    return ModelSpec(name, tuple(input_shape), classes)


def check_model(spec: ModelSpec) -> ModelFacts:
    """Build `spec` and run it once on the CPU at batch 2, in training mode and in eval mode under torch's flop
    counter: its parameters and forward FLOPs an image, or a ModelError naming what was wrong."""
    torch.manual_seed(0)
    x = torch.zeros(TRIAL_BATCH, *spec.input_shape)
    shape = ",".join(map(str, spec.input_shape))
    flops = FlopCounterMode(display=False)
    try:
        model = spec.build()  # (a lazy model's first forward pass is in its build)
        with torch.no_grad():
            model.train()
            trained = model(x)
            model.eval()
            with flops:
                evaluated = model(x)
    except ModelError:
        raise
    except Exception as exc:
        # (the input's shape is the likely cause: a model that fails on any input fails on this one too)
        raise ModelError(
            f"{spec.name} fails on input of shape [{TRIAL_BATCH}, {', '.join(map(str, spec.input_shape))}] "
            f"(--input-shape {shape}): {type(exc).__name__}: {_first_line(exc)}",
            "--input-shape",
        ) from None
    for mode, out in (("training", trained), ("eval", evaluated)):
        if not torch.is_tensor(out) or tuple(out.shape) != (TRIAL_BATCH, spec.classes):
            got = (
                f"shape [{', '.join(map(str, out.shape))}]"
                if torch.is_tensor(out)
                else f"a {type(out).__name__}"
            )
            raise ModelError(
                f"{spec.name} returns {got} in {mode} mode for {TRIAL_BATCH} images, not logits of "
                f"[batch, classes] = [{TRIAL_BATCH}, {spec.classes}] (--classes {spec.classes})",
                # (logits of another count of classes: --classes; anything else is the model's)
                "--classes"
                if torch.is_tensor(out) and out.dim() == 2 and out.shape[0] == TRIAL_BATCH
                else "--model",
            )
    return ModelFacts(
        parameters=sum(p.numel() for p in model.parameters()),
        flops_per_image=flops.get_total_flops() / TRIAL_BATCH,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "(no message)"


def _classifiers() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _torchvision_name(name: str) -> str:
    known = _classifiers()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"torchvision has no classification model {name!r}{hint} "
            "(torchvision.models.list_models(module=torchvision.models) lists the "
            f"{len(known)} it has)"
        )
    return name


def _torchvision_shape(name: str) -> tuple[int, int, int]:
    import torchvision

    _torchvision_name(name)
    side = FALLBACK_SIDE
    with contextlib.suppress(Exception):  # a model without registered weights keeps the fallback
        crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size
        side = int(crop[0])
    return (TORCHVISION_CHANNELS, side, side)


def _torchvision_model(name: str, classes: int) -> nn.Module:
    import torchvision

    _torchvision_name(name)
    kwargs: dict = {"weights": None, "num_classes": classes}
    if name in _AUX_LOGITS:
        kwargs.update(aux_logits=False, init_weights=True)
    try:
        return torchvision.models.get_model(name, **kwargs)
    except Exception as exc:
        raise ModelError(
            f"torchvision:{name} cannot be built with {classes} classes: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from None


def _callable(name: str) -> Callable:
    module_name, _, attribute = name.partition(":")
    # The current directory first, as `python -m` has it: a user's models.py next to their work.
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(
            f"cannot import {module_name} (from the current directory or the environment): "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from None
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(os.getcwd())
    found = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ModelError(f"{module_name} has no {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise ModelError(f"{name} is a {type(found).__name__}, not a callable that returns a model")
    return found


def _called(name: str, classes: int) -> nn.Module:
    build = _callable(name)
    try:
        takes_classes = "num_classes" in inspect.signature(build).parameters
    except (TypeError, ValueError):  # a builtin or a class without a readable signature
        takes_classes = False
    called = f"{name}({f'num_classes={classes}' if takes_classes else ''})"
    try:
        model = build(num_classes=classes) if takes_classes else build()
    except Exception as exc:
        raise ModelError(f"{called} raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{called} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
