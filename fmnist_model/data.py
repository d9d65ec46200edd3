"""FashionMNIST as the suite needs it: the real files or a synthetic stand-in, per-sample or as tensors."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms

__all__ = [
    "DEFAULT_DOWNLOAD_TIMEOUT",
    "DEFAULT_ROOT",
    "SOURCES",
    "SPLIT_SIZES",
    "DataError",
    "DataNotFoundError",
    "FAKE",
    "Split",
    "SyntheticFashionMNIST",
    "check_fashion_mnist",
    "download_fashion_mnist",
    "fake_split",
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


# Seconds to wait for each reply while downloading: a server or proxy that accepts the
# connection and then never answers must end the download, not hang it for ever.
DEFAULT_DOWNLOAD_TIMEOUT = 30.0
# The IDX headers of FashionMNIST (http://yann.lecun.com/exdb/mnist/, "file formats"):
# magic 0x00000803 for a 3-D uint8 array of images, 0x00000801 for a 1-D uint8 array of labels.
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_SIDE = 28
_CLASSES = 10


class DataNotFoundError(FileNotFoundError):
    """The real FashionMNIST files are not where they were asked for."""


class DataError(ValueError):
    """The FashionMNIST files are there but cannot be used as they are: the message names the file and why."""


def _raw_folder(root: str | os.PathLike) -> Path:
    # torchvision keeps the files in <root>/<class name>/raw (MNIST.raw_folder).
    return Path(root) / datasets.FashionMNIST.__name__ / "raw"


def _raw_files(root: str | os.PathLike) -> list[Path]:
    # The unpacked names of torchvision's own resource list: what its _check_exists looks for.
    folder = _raw_folder(root)
    return [folder / os.path.splitext(name)[0] for name, _md5 in datasets.FashionMNIST.resources]


def fashion_mnist_present(root: str | os.PathLike = DEFAULT_ROOT) -> bool:
    """True when all four unpacked FashionMNIST files are under `root`.

    Raises DataError when the folder cannot be looked into (no permission): that is not "absent".
    """
    try:
        return all(path.is_file() for path in _raw_files(root))
    except OSError as exc:
        raise DataError(f"cannot read {_raw_folder(root)}: {exc.strerror or exc}") from exc


def _read(path: Path, size: int) -> tuple[bytes, int]:
    """The first `size` bytes of `path` and its length, or DataError naming it."""
    try:
        with path.open("rb") as fh:
            return fh.read(size), os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read it: {exc.strerror or exc}") from exc


def _count(path: Path, magic: int, dims: int) -> int:
    """Items in one IDX file after checking its magic number, shape and size against FashionMNIST's."""
    header_size = 4 * (1 + dims)
    head, size = _read(path, header_size)
    if len(head) < header_size:
        raise DataError(
            f"{path}: {size} bytes, shorter than its {header_size}-byte IDX header (truncated?)"
        )
    found, count, *shape = struct.unpack(f">{1 + dims}I", head)
    if found != magic:
        kind = "images" if magic == _IMAGES_MAGIC else "labels"
        gzipped = (
            " It looks gzip-compressed: unpack it with gunzip." if head[:2] == b"\x1f\x8b" else ""
        )
        raise DataError(
            f"{path}: magic number {found}, not {magic} (an IDX file of FashionMNIST {kind}).{gzipped}"
        )
    if shape and shape != [_SIDE, _SIDE]:
        raise DataError(
            f"{path}: images of {'x'.join(map(str, shape))} pixels, not {_SIDE}x{_SIDE}"
        )
    expected = header_size + count * (_SIDE * _SIDE if dims == 3 else 1)
    if size != expected:
        raise DataError(
            f"{path}: {size:,} bytes where its header's {count:,} items make {expected:,} (truncated or padded?)"
        )
    return count


def check_fashion_mnist(root: str | os.PathLike = DEFAULT_ROOT) -> dict[str, int]:
    """Check the four unpacked FashionMNIST files under `root`; return {"train": n, "test": n} images.

    Reads the headers (magic number, count, image size), each file's size against its header,
    that every image has its label, and that labels are classes 0-9: what torchvision would
    otherwise fail on later with a bare assertion, or not at all. Raises DataNotFoundError for
    missing files and DataError naming the file and what is wrong with it.
    """
    if not fashion_mnist_present(root):
        raise DataNotFoundError(
            f"FashionMNIST files not found under {_raw_folder(root)}: {'; '.join(_what_is_wrong(root))}. "
            "Download them with download=True (the suite's --download), or copy the four unpacked "
            "IDX files there; or use the synthetic stand-in."
        )
    folder = _raw_folder(root)
    counts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_file, labels_file = (
            folder / f"{prefix}-images-idx3-ubyte",
            folder / f"{prefix}-labels-idx1-ubyte",
        )
        images = _count(images_file, _IMAGES_MAGIC, 3)
        labels = _count(labels_file, _LABELS_MAGIC, 1)
        if images != labels:
            raise DataError(
                f"{images_file} holds {images:,} images but {labels_file} {labels:,} labels"
            )
        body, _size = _read(labels_file, 8 + labels)
        if body[8:] and max(body[8:]) >= _CLASSES:
            raise DataError(
                f"{labels_file}: a label of {max(body[8:])}, past FashionMNIST's {_CLASSES} classes"
            )
        counts[split] = images
    return counts


def download_fashion_mnist(
    root: str | os.PathLike = DEFAULT_ROOT,
    *,
    timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    say: Callable[[str], None] = print,
) -> None:
    """Download FashionMNIST into `root` with torchvision's own downloader, unless it is there.

    torchvision waits for a reply for ever: here every connection and read waits at most
    `timeout` seconds, and a stalled or failed download is a DataError naming the address.
    """
    if fashion_mnist_present(root):
        return
    mirrors = list(datasets.FashionMNIST.mirrors)
    say(
        f"downloading FashionMNIST into {_raw_folder(root)} from {', '.join(mirrors)} (waiting at most {timeout:g} s for each reply)"
    )
    previous = socket.getdefaulttimeout()
    # urllib, under torchvision, takes the default when given none
    socket.setdefaulttimeout(timeout)
    try:
        datasets.FashionMNIST(str(root), train=True, download=True)
    except (OSError, RuntimeError, URLError) as exc:
        # The first file still missing is the one it was fetching.
        pending = next(
            (
                name
                for name, _md5 in datasets.FashionMNIST.resources
                if not (_raw_folder(root) / os.path.splitext(name)[0]).is_file()
            ),
            "",
        )
        where = " or ".join(f"{mirror}{pending}" for mirror in mirrors)
        stalled = isinstance(exc, TimeoutError) or "timed out" in str(exc)
        why = f"no reply within {timeout:g} s" if stalled else " ".join(str(exc).split())
        raise DataError(f"downloading {where} failed: {why}") from exc
    finally:
        socket.setdefaulttimeout(previous)


def resolve_source(
    source: str, root: str | os.PathLike = DEFAULT_ROOT, download: bool = False
) -> str:
    """Turn a source name into the data that will really be used: "fashion-mnist" or "synthetic".

    Raises ValueError for a name that is not a source. "auto" never reaches the network:
    it is the real set only when its files are already there (or a download is asked for).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown dataset source {source!r}: expected one of {', '.join(SOURCES)}")
    if source == "auto":
        if download or fashion_mnist_present(root):
            return "fashion-mnist"
        odd = _what_is_wrong(root)
        # Some of the set is there: not "absent", and not usable.
        if len(odd) < len(_raw_files(root)):
            raise DataError(
                f"{_raw_folder(root)} holds part of FashionMNIST: {'; '.join(odd)}. "
                "Complete it (--download), or remove it to use the synthetic stand-in."
            )
        return "synthetic"
    return source


def _what_is_wrong(root: str | os.PathLike) -> list[str]:
    """Each of the four unpacked files that is not a readable file, and why."""
    out = []
    for path in _raw_files(root):
        if path.is_file():
            continue
        if path.is_symlink():
            why = "a link to nothing"
        elif path.is_dir():
            why = "a folder, not a file"
        elif path.exists():
            why = "not a regular file"
        elif path.with_name(path.name + ".gz").is_file():
            why = f"missing (only {path.name}.gz is there: unpack it with gunzip)"
        else:
            why = "missing"
        out.append(f"{path} is {why}" if not why.startswith("missing") else f"{path} {why}")
    return out


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
    patterns = torch.nn.functional.interpolate(
        coarse, size=(28, 28), mode="bilinear", align_corners=False
    )

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

    name: (
        str  # "fashion-mnist", "synthetic" or "fakedata": every result says which data it came from
    )
    train: bool
    dataset: Dataset  # per-sample: PIL image -> ToTensor, what the notes feed the DataLoader
    images: (
        torch.Tensor
    )  # uint8 [N, C, H, W] ([N, 1, 28, 28]): a quarter of float32's bytes to move
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
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
) -> Split:
    """Load the train or test split of `source` ("auto", "fashion-mnist" or "synthetic").

    `limit` keeps the first `limit` images (quick runs, tests). The real set is checked
    (check_fashion_mnist), then read by torchvision's own FashionMNIST loader; it is
    downloaded only when `download` is true, waiting at most `download_timeout` s a reply.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    name = resolve_source(source, root, download)
    to_tensor = transforms.ToTensor()  # the notes' transform: uint8 HxW -> float [1,H,W] in [0,1]
    if name == "fashion-mnist":
        if download:
            download_fashion_mnist(root, timeout=download_timeout)
        check_fashion_mnist(root)
        full = datasets.FashionMNIST(str(root), train=train, transform=to_tensor)
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


# The data of every model but the notes' CNN: torchvision's FakeData of the model's input shape
# (random images, random labels: a step's cost, not its learning). The test split's images come
# from seeds of their own, after the training split's.
FAKE = "fakedata"
_FAKE_TEST_OFFSET = 10_000_000


def fake_split(
    input_shape: tuple[int, int, int], classes: int, *, train: bool, images: int
) -> Split:
    """`images` of torchvision's FakeData of `input_shape` and `classes`, in both forms the pipelines need: the
    per-sample dataset (FakeData's PIL image -> ToTensor, as the notes' loop reads FashionMNIST) and
    the same images as uint8 tensors (PIL's bytes: what the resident pipelines keep on the device)."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"images must be a positive integer, got {images!r}")
    offset = 0 if train else _FAKE_TEST_OFFSET
    shape = tuple(int(v) for v in input_shape)
    dataset = datasets.FakeData(
        size=images,
        image_size=shape,
        num_classes=classes,
        transform=transforms.ToTensor(),
        random_offset=offset,
    )
    # The same images, as the bytes PIL holds: FakeData seeds each image by its index.
    raw = datasets.FakeData(
        size=images, image_size=shape, num_classes=classes, random_offset=offset
    )
    pictures, labels = zip(*(raw[i] for i in range(images)), strict=True)
    return Split(
        name=FAKE,
        train=train,
        dataset=dataset,
        images=torch.stack([transforms.functional.pil_to_tensor(p) for p in pictures]),
        labels=torch.tensor(labels, dtype=torch.int64),
    )
