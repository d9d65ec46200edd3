"""FashionMNIST as the suite needs it: the real files or a synthetic stand-in, per-sample or as tensors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms

__all__ = [
    "DEFAULT_ROOT",
    "SOURCES",
    "SPLIT_SIZES",
    "DataNotFoundError",
    "Split",
    "SyntheticFashionMNIST",
    "fashion_mnist_present",
    "load_split",
    "resolve_source",
]

# "auto" takes the real files when they are under the root, else the stand-in.
SOURCES = ("auto", "fashion-mnist", "synthetic")
# FashionMNIST's own split sizes; the stand-in copies them so an epoch costs the same.
SPLIT_SIZES = {True: 60_000, False: 10_000}
# Relative to where the suite is run: `data/FashionMNIST/raw/...`, torchvision's layout.
DEFAULT_ROOT = Path("data")


class DataNotFoundError(FileNotFoundError):
    """The real FashionMNIST files are not where they were asked for."""


def _raw_folder(root: str | os.PathLike) -> Path:
    # torchvision keeps the files in <root>/<class name>/raw (MNIST.raw_folder).
    return Path(root) / datasets.FashionMNIST.__name__ / "raw"


def _raw_files(root: str | os.PathLike) -> list[Path]:
    # The unpacked names of torchvision's own resource list: what its _check_exists looks for.
    folder = _raw_folder(root)
    return [folder / os.path.splitext(name)[0] for name, _md5 in datasets.FashionMNIST.resources]


def fashion_mnist_present(root: str | os.PathLike = DEFAULT_ROOT) -> bool:
    """True when all four unpacked FashionMNIST files are under `root`."""
    return all(path.is_file() for path in _raw_files(root))


def resolve_source(source: str, root: str | os.PathLike = DEFAULT_ROOT, download: bool = False) -> str:
    """Turn a source name into the data that will really be used: "fashion-mnist" or "synthetic".

    Raises ValueError for a name that is not a source. "auto" never reaches the network:
    it is the real set only when its files are already there (or a download is asked for).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown dataset source {source!r}: expected one of {', '.join(SOURCES)}")
    if source == "auto":
        return "fashion-mnist" if download or fashion_mnist_present(root) else "synthetic"
    return source


class SyntheticFashionMNIST(Dataset):
    """A learnable stand-in with FashionMNIST's shapes, dtypes, split sizes and classes.

    Each class has a fixed smooth 28x28 pattern; an image is its class pattern at a random
    brightness plus pixel noise, so the CNN can learn it and one epoch beats chance by far.
    Items go through the same path as torchvision's FashionMNIST (uint8 -> PIL image ->
    transform), so the seed pipeline pays the same per-image cost as on the real files.
    """

    classes = list(datasets.FashionMNIST.classes)

    def __init__(self, train: bool = True, transform=None, seed: int = 0) -> None:
        self.train = train
        self.transform = transform
        self.data, self.targets = _synthetic_tensors(SPLIT_SIZES[train], seed=seed, train=train)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        # As torchvision's MNIST.__getitem__: a PIL image, so ToTensor does the same work.
        img = Image.fromarray(self.data[index].numpy())  # 2-D uint8 -> mode "L"
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[index])


def _synthetic_tensors(n: int, seed: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    # The class patterns depend on the seed alone, so train and test share their classes;
    # the samples come from a second stream that differs between the splits.
    patterns_rng = torch.Generator().manual_seed(seed)
    coarse = torch.rand(len(SyntheticFashionMNIST.classes), 1, 7, 7, generator=patterns_rng)
    patterns = torch.nn.functional.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False)

    rng = torch.Generator().manual_seed(seed * 2 + (0 if train else 1) + 1)
    # Balanced classes in a shuffled order, as in the real splits (6,000 / 1,000 per class).
    targets = (torch.arange(n) % len(coarse))[torch.randperm(n, generator=rng)]
    brightness = 0.5 + 0.5 * torch.rand(n, 1, 1, generator=rng)
    noise = 0.3 * torch.randn(n, 28, 28, generator=rng)
    images = (patterns[targets, 0] * brightness + noise).clamp_(0.0, 1.0).mul_(255.0).round_()
    return images.to(torch.uint8), targets.to(torch.int64)


@dataclass(frozen=True)
class Split:
    """One split of one dataset, in both forms the pipelines need, labelled with its name."""

    name: str  # "fashion-mnist" or "synthetic": every result says which data it came from
    train: bool
    dataset: Dataset  # per-sample: PIL image -> ToTensor, what the notes feed the DataLoader
    images: torch.Tensor  # uint8 [N, 1, 28, 28]: a quarter of float32's bytes to move
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


def load_split(
    source: str = "auto",
    *,
    train: bool = True,
    root: str | os.PathLike = DEFAULT_ROOT,
    download: bool = False,
    seed: int = 0,
    limit: int | None = None,
) -> Split:
    """Load the train or test split of `source` ("auto", "fashion-mnist" or "synthetic").

    `limit` keeps the first `limit` images (quick runs, tests). The real set is read by
    torchvision's own FashionMNIST loader; it is downloaded only when `download` is true.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    name = resolve_source(source, root, download)
    to_tensor = transforms.ToTensor()  # the notes' transform: uint8 HxW -> float [1,H,W] in [0,1]
    if name == "fashion-mnist":
        if not download and not fashion_mnist_present(root):
            missing = [str(p) for p in _raw_files(root) if not p.is_file()]
            raise DataNotFoundError(
                f"FashionMNIST files not found under {_raw_folder(root)} (missing: {', '.join(missing)}). "
                "Download them with download=True (the suite's --download), or copy the four unpacked "
                "IDX files there; or use the synthetic stand-in."
            )
        full = datasets.FashionMNIST(str(root), train=train, download=download, transform=to_tensor)
    else:
        full = SyntheticFashionMNIST(train=train, transform=to_tensor, seed=seed)

    n = len(full.targets) if limit is None else min(limit, len(full.targets))
    dataset: Dataset = full if n == len(full.targets) else Subset(full, range(n))
    return Split(
        name=name,
        train=train,
        dataset=dataset,
        images=full.data[:n].unsqueeze(1),
        labels=full.targets[:n].to(torch.int64),
    )
