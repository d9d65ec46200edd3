"""fmnist_model: the workload fmnist-bench measures (the notes' CNN, its data and its loops)."""

from .data import (
    DEFAULT_ROOT,
    SOURCES,
    SPLIT_SIZES,
    DataNotFoundError,
    Split,
    SyntheticFashionMNIST,
    fashion_mnist_present,
    load_split,
    resolve_source,
)
from .loops import (
    LEARNING_RATE,
    EpochResult,
    accuracy,
    confusion_matrix,
    make_optimizer,
    predict,
    seed_loader,
    train_epoch_resident,
    train_epoch_seed,
)
from .model import NUM_CLASSES, Network

__all__ = [
    "DEFAULT_ROOT",
    "LEARNING_RATE",
    "NUM_CLASSES",
    "SOURCES",
    "SPLIT_SIZES",
    "DataNotFoundError",
    "EpochResult",
    "Network",
    "Split",
    "SyntheticFashionMNIST",
    "accuracy",
    "confusion_matrix",
    "fashion_mnist_present",
    "load_split",
    "make_optimizer",
    "predict",
    "resolve_source",
    "seed_loader",
    "train_epoch_resident",
    "train_epoch_seed",
]
