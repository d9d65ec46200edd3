"""What one run measures: the suite's defaults, and its options checked and parsed into a Plan."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import torch

from fmnist_model import DEFAULT_ROOT

__all__ = [
    "Plan",
    "available_devices",
    "device_unavailable_reason",
    "parse_batch_sizes",
    "parse_devices",
    "plan_from_options",
]


@dataclass(frozen=True)
class Plan:
    """Every knob of a run in one typed place; each default says why it is what it is."""

    devices: tuple[str, ...]
    dataset_name: str  # the data really used: "fashion-mnist" or "synthetic"
    dataset: str = "auto"  # what was asked for
    data_root: str = str(DEFAULT_ROOT)
    download: bool = False
    quick: bool = False
    # The notes train at 100; 1,000 and 10,000 show where a GPU's width starts to pay.
    train_batch_sizes: tuple[int, ...] = (100, 1000, 10_000)
    # From one image at a time (latency) to the whole test split in one batch (throughput).
    inference_batch_sizes: tuple[int, ...] = (1, 10, 100, 1000, 10_000)
    # One image, a batch, a large batch, a sixth of the set, the whole training set.
    transfer_sizes: tuple[int, ...] = (1, 100, 1000, 10_000, 60_000)
    # None: the whole split (60,000 / 10,000 images), as an epoch and a test pass really are.
    train_images: int | None = None
    test_images: int | None = None
    # An epoch takes seconds on a CPU, so few rounds; copies take microseconds, so many.
    rounds: dict[str, int] = field(default_factory=lambda: {"transfer": 30, "train": 3, "inference": 5})
    # First CUDA call, cuDNN's algorithm choice and the allocator's growth land in warm-up.
    warmup_rounds: int = 1

    @classmethod
    def quick_plan(cls, **kw) -> Plan:
        """The smoke run: small subsets, a short sweep and one timed round, well under a minute on 2 cores."""
        defaults = dict(
            quick=True,
            train_batch_sizes=(100, 1000),
            inference_batch_sizes=(1, 100, 1000),
            transfer_sizes=(1, 1000, 60_000),
            train_images=2000,
            test_images=1000,
            rounds={"transfer": 1, "train": 1, "inference": 1},
        )
        return cls(**{**defaults, **kw})

    def batch_sizes(self, family: str) -> tuple[int, ...]:
        if family == "train":
            return self.train_batch_sizes
        if family == "inference":
            return self.inference_batch_sizes
        raise ValueError(f"family {family!r} has no batch sizes")

    def summary(self) -> dict:
        """What the saved run records about the plan it ran (the data is recorded on its own)."""
        data = {"dataset", "dataset_name", "data_root", "download"}
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items() if key not in data}


_DEVICE_TYPES = ("cpu", "cuda", "mps")


def parse_devices(text: str) -> tuple[str, ...]:
    """'cpu,cuda:0' -> ('cpu', 'cuda:0'). Raises ValueError naming a value that is not a device.

    Only well-formedness is checked here; whether this machine has the device is a skip later.
    `cuda` means `cuda:0`, so the same device has one name in every saved run.
    """
    out: list[str] = []
    for raw in text.split(","):
        value = raw.strip()
        if not value:
            raise ValueError(f"empty device in {text!r}")
        expected = f"{value!r} is not a device: expected cpu, cuda, cuda:N or mps"
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError):
            raise ValueError(expected) from None
        if device.type not in _DEVICE_TYPES or (device.type != "cuda" and device.index not in (None, 0)):
            raise ValueError(expected)
        name = f"cuda:{device.index or 0}" if device.type == "cuda" else device.type
        if name not in out:
            out.append(name)
    return tuple(out)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """'100,1000' -> (100, 1000). Raises ValueError naming a value that is not a positive integer."""
    out: list[int] = []
    for raw in text.split(","):
        value = raw.strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{value!r} is not a positive integer")
        if int(value) not in out:
            out.append(int(value))
    return tuple(out)


def available_devices() -> tuple[str, ...]:
    """Every device this machine can run on: the CPU, each CUDA GPU, and Apple's MPS."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return tuple(devices)


def device_unavailable_reason(device: str) -> str | None:
    """Why this machine cannot run on `device`, or None when it can."""
    kind = torch.device(device)
    if kind.type == "cuda":
        if not torch.cuda.is_available():
            built = torch.version.cuda or "no CUDA"
            return f"{device}: CUDA is not available here (torch {torch.__version__}, built with {built})"
        count = torch.cuda.device_count()
        if kind.index >= count:
            return f"{device}: this machine has {count} CUDA device{'s' if count != 1 else ''}"
    if kind.type == "mps" and not torch.backends.mps.is_available():
        return "mps: Apple's Metal backend is not available here"
    return None


def plan_from_options(
    *,
    devices: tuple[str, ...] | None,
    batch_sizes: tuple[int, ...] | None,
    quick: bool,
    dataset: str,
    data_root: str | os.PathLike,
    download: bool,
    dataset_name: str,
) -> Plan:
    """A Plan from parsed option values (parse_devices, parse_batch_sizes); None takes the default."""
    kw: dict = dict(
        devices=devices or available_devices(),
        dataset=dataset,
        dataset_name=dataset_name,
        data_root=str(data_root),
        download=download,
    )
    if batch_sizes:
        kw.update(train_batch_sizes=batch_sizes, inference_batch_sizes=batch_sizes)
    return Plan.quick_plan(**kw) if quick else Plan(**kw)
