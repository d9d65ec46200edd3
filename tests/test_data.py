"""Data sources: the real FashionMNIST loader on IDX files written here, the synthetic stand-in, bad input."""

import struct
import sys

import numpy as np
import pytest
import torch

from fmnist_model import (
    DataNotFoundError,
    Network,
    SyntheticFashionMNIST,
    fashion_mnist_present,
    load_split,
    make_optimizer,
    resolve_source,
    train_epoch_resident,
)
from fmnist_model.data import SPLIT_SIZES


def write_idx(root, train, images, labels):
    """Write FashionMNIST's raw IDX files (big-endian headers, magic 2051/2049) as torchvision expects them."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    prefix = "train" if train else "t10k"
    n, rows, cols = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, rows, cols) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


@pytest.fixture
def fake_fmnist(tmp_path):
    rng = np.random.default_rng(1)
    made = {}
    for train, n in ((True, 30), (False, 12)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(tmp_path, train, images, labels)
        made[train] = (images, labels)
    return tmp_path, made


def test_real_loader_round_trips_idx_files(fake_fmnist):
    root, made = fake_fmnist
    assert fashion_mnist_present(root)
    for train in (True, False):
        split = load_split("fashion-mnist", train=train, root=root)
        images, labels = made[train]
        assert split.name == "fashion-mnist"
        assert split.images.dtype == torch.uint8 and split.images.shape == (len(labels), 1, 28, 28)
        assert split.labels.dtype == torch.int64
        np.testing.assert_array_equal(split.images[:, 0].numpy(), images)
        np.testing.assert_array_equal(split.labels.numpy(), labels)
        # The per-sample path is torchvision's: ToTensor scales to [0, 1].
        x, y = split.dataset[3]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32
        torch.testing.assert_close(x[0], torch.from_numpy(images[3]).float() / 255)
        assert y == labels[3]


def test_auto_takes_real_files_when_present(fake_fmnist):
    root, _ = fake_fmnist
    assert resolve_source("auto", root) == "fashion-mnist"
    assert load_split("auto", train=False, root=root).name == "fashion-mnist"


def test_auto_falls_back_to_synthetic_without_network(tmp_path, monkeypatch):
    # Any download attempt would fail the test.
    from torchvision.datasets import FashionMNIST

    monkeypatch.setattr(FashionMNIST, "download", lambda self: pytest.fail("auto touched the network"))
    assert resolve_source("auto", tmp_path) == "synthetic"
    split = load_split("auto", train=False, root=tmp_path, limit=50)
    assert split.name == "synthetic"


def test_limit_keeps_the_first_images(fake_fmnist):
    root, made = fake_fmnist
    split = load_split("fashion-mnist", root=root, limit=7)
    assert len(split) == 7 and len(split.dataset) == 7 and split.images.shape[0] == 7
    np.testing.assert_array_equal(split.labels.numpy(), made[True][1][:7])


def test_missing_files_name_the_path_and_how_to_download(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_split("fashion-mnist", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message
    assert "download" in message


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="'mnist'.*auto, fashion-mnist, synthetic"):
        load_split("mnist")


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_bad_limit_is_named(limit):
    with pytest.raises(ValueError, match="limit"):
        load_split("synthetic", train=False, limit=limit)


@pytest.fixture(scope="module")
def synthetic_train():
    return load_split("synthetic", train=True)


def test_synthetic_matches_fashion_mnist_shapes(synthetic_train):
    test = load_split("synthetic", train=False)
    assert synthetic_train.name == test.name == "synthetic"
    assert synthetic_train.images.shape == (SPLIT_SIZES[True], 1, 28, 28) == (60_000, 1, 28, 28)
    assert test.images.shape == (10_000, 1, 28, 28)
    assert synthetic_train.images.dtype == torch.uint8 and synthetic_train.labels.dtype == torch.int64
    x, y = synthetic_train.dataset[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert isinstance(y, int) and 0 <= y < 10


def test_synthetic_classes_are_balanced(synthetic_train):
    assert synthetic_train.labels.bincount(minlength=10).tolist() == [6000] * 10
    assert load_split("synthetic", train=False).labels.bincount(minlength=10).tolist() == [1000] * 10


def test_synthetic_is_deterministic_under_a_seed():
    a = SyntheticFashionMNIST(train=False, seed=3)
    b = SyntheticFashionMNIST(train=False, seed=3)
    c = SyntheticFashionMNIST(train=False, seed=4)
    assert torch.equal(a.data, b.data) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.data, c.data)
    # Train and test are different samples of the same classes.
    assert not torch.equal(SyntheticFashionMNIST(train=True, seed=3).data[:10_000], a.data)


def test_synthetic_is_learnable(synthetic_train):
    # One short epoch on 6,000 images; chance is 10%. Measured here: 0.987 on the held-out
    # split, so 0.5 holds with a wide margin while still failing for data with no class signal.
    torch.manual_seed(0)
    net = Network()
    n = 6000
    train_epoch_resident(net, make_optimizer(net), synthetic_train.images[:n], synthetic_train.labels[:n], 100)
    from fmnist_model import accuracy, predict

    test = load_split("synthetic", train=False, limit=2000)
    assert accuracy(predict(net, test.images, 500), test.labels) > 0.5


def test_importing_the_workload_pulls_in_no_report_or_nvml_packages():
    # torch.cuda itself imports pynvml when it is installed, so the check is on what
    # fmnist_model adds beyond torch and torchvision, and on the import working without it.
    import subprocess

    code = (
        "import sys, torch, torchvision\n"
        "before = set(sys.modules)\n"
        "import fmnist_model\n"
        "print(sorted({'pandas', 'matplotlib', 'pynvml'} & (set(sys.modules) - before)))\n"
        "print(sorted({'pandas', 'matplotlib'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "[]"]
    # With pynvml unimportable (None in sys.modules makes `import pynvml` raise), the workload still loads.
    blocked = "import sys; sys.modules['pynvml'] = None; import fmnist_model; fmnist_model.Network()"
    subprocess.run([sys.executable, "-c", blocked], check=True)
