"""Data sources: the real FashionMNIST loader on IDX files written here, the synthetic stand-in, bad files and downloads."""

import socket
import struct
import sys
import threading

import numpy as np
import pytest
import torch

from fmnist_model import (
    DataError,
    DataNotFoundError,
    Network,
    SyntheticFashionMNIST,
    check_fashion_mnist,
    download_fashion_mnist,
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
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, rows, cols) + images.tobytes()
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + labels.tobytes()
    )


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

    monkeypatch.setattr(
        FashionMNIST, "download", lambda self: pytest.fail("auto touched the network")
    )
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
    assert (
        synthetic_train.images.dtype == torch.uint8 and synthetic_train.labels.dtype == torch.int64
    )
    x, y = synthetic_train.dataset[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert isinstance(y, int) and 0 <= y < 10


def test_synthetic_classes_are_balanced(synthetic_train):
    assert synthetic_train.labels.bincount(minlength=10).tolist() == [6000] * 10
    assert (
        load_split("synthetic", train=False).labels.bincount(minlength=10).tolist() == [1000] * 10
    )


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
    train_epoch_resident(
        net, make_optimizer(net), synthetic_train.images[:n], synthetic_train.labels[:n], 100
    )
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
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["[]", "[]"]
    # With pynvml unimportable (None in sys.modules makes `import pynvml` raise), the workload still loads.
    blocked = (
        "import sys; sys.modules['pynvml'] = None; import fmnist_model; fmnist_model.Network()"
    )
    subprocess.run([sys.executable, "-c", blocked], check=True)


# ---------------------------------------------------------------- bad files, stalled downloads


def good_files(root, train=30, test=12):
    rng = np.random.default_rng(2)
    for is_train, n in ((True, train), (False, test)):
        write_idx(
            root,
            is_train,
            rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
            (np.arange(n) % 10).astype(np.uint8),
        )
    return root / "FashionMNIST" / "raw"


def test_check_counts_the_images_of_good_files(tmp_path):
    good_files(tmp_path, train=30, test=12)
    assert check_fashion_mnist(tmp_path) == {"train": 30, "test": 12}


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _bad_magic(path):
    data = bytearray(path.read_bytes())
    data[0:4] = struct.pack(">I", 2049)  # a labels file's magic on an images file
    path.write_bytes(bytes(data))


def _fewer_labels(path):
    labels = path.parent / "train-labels-idx1-ubyte"
    labels.write_bytes(struct.pack(">II", 2049, 29) + bytes(29))


def _big_label(path):
    labels = path.parent / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = 12
    labels.write_bytes(bytes(data))


def _empty(path):
    path.write_bytes(b"")


def _other_size(path):
    path.write_bytes(struct.pack(">IIII", 2051, 1, 32, 32) + bytes(32 * 32))


@pytest.mark.parametrize(
    "damage, file, says",
    [
        (_truncate, "train-images-idx3-ubyte", "bytes where its header's 30 items make"),
        (_bad_magic, "train-images-idx3-ubyte", "magic number 2049, not 2051"),
        (_fewer_labels, "train-images-idx3-ubyte", "holds 30 images but"),
        (_big_label, "t10k-labels-idx1-ubyte", "a label of 12, past FashionMNIST's 10 classes"),
        (_empty, "t10k-images-idx3-ubyte", "0 bytes, shorter than its 16-byte IDX header"),
        (_other_size, "t10k-images-idx3-ubyte", "images of 32x32 pixels, not 28x28"),
    ],
    ids=[
        "truncated",
        "wrong-magic",
        "counts-disagree",
        "label-out-of-range",
        "empty",
        "other-image-size",
    ],
)
def test_damaged_files_are_named_with_what_is_wrong(tmp_path, damage, file, says):
    raw = good_files(tmp_path)
    damage(raw / file)
    with pytest.raises(DataError, match=says) as err:
        check_fashion_mnist(tmp_path)
    assert str(raw) in str(err.value)
    # load_split checks first: no bare AssertionError from deep inside torchvision.
    with pytest.raises(DataError, match=says):
        load_split("fashion-mnist", train="t10k" in file, root=tmp_path)


def test_auto_refuses_part_of_the_set_and_says_what_each_file_is(tmp_path):
    raw = good_files(tmp_path)
    (raw / "train-labels-idx1-ubyte").unlink()
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DataError) as err:
        resolve_source("auto", tmp_path)
    message = str(err.value)
    assert "holds part of FashionMNIST" in message
    assert (
        "train-labels-idx1-ubyte missing (only train-labels-idx1-ubyte.gz is there: unpack it with gunzip)"
        in message
    )
    assert "t10k-labels-idx1-ubyte is a link to nothing" in message
    # None of the set there at all: the synthetic stand-in, as "auto" promises.
    assert resolve_source("auto", tmp_path / "empty") == "synthetic"


def test_a_compressed_file_left_in_place_is_named_as_such(tmp_path):
    import gzip

    raw = good_files(tmp_path)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataError, match="looks gzip-compressed: unpack it with gunzip"):
        check_fashion_mnist(tmp_path)


def test_a_folder_that_cannot_be_read_is_an_error_naming_it(tmp_path, monkeypatch):
    # (Root ignores permission bits, so the refusal is simulated where the folder is looked into.)
    from pathlib import Path

    def refused(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "is_file", refused)
    with pytest.raises(DataError, match="cannot read .*FashionMNIST/raw: Permission denied"):
        resolve_source("auto", tmp_path)


class SilentServer:
    """A local server that accepts connections and never answers, like a stalled proxy or mirror."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # keep it open, say nothing

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def test_a_stalled_download_ends_with_the_address_and_the_time_waited(
    tmp_path, monkeypatch, silent_server
):
    from torchvision.datasets import FashionMNIST

    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{silent_server.port}/"])
    said = []
    with pytest.raises(DataError) as err:
        download_fashion_mnist(tmp_path, timeout=0.5, say=said.append)
    message = str(err.value)
    assert f"http://127.0.0.1:{silent_server.port}/train-images-idx3-ubyte.gz" in message
    assert "no reply within 0.5 s" in message
    assert said and "downloading FashionMNIST into" in said[0] and "at most 0.5 s" in said[0]
    assert socket.getdefaulttimeout() is None  # put back as it was


def test_a_refused_download_names_the_address(tmp_path, monkeypatch):
    from torchvision.datasets import FashionMNIST

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    with pytest.raises(
        DataError, match=f"downloading http://127.0.0.1:{port}/train-images-idx3-ubyte.gz failed"
    ):
        download_fashion_mnist(tmp_path, timeout=5, say=lambda line: None)
