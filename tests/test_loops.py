"""The epoch pipelines learn, inference labels every image, the confusion matrix counts right."""

import pytest
import torch

from fmnist_model import (
    EpochResult,
    Network,
    accuracy,
    confusion_matrix,
    load_split,
    make_optimizer,
    predict,
    seed_loader,
    train_epoch_resident,
    train_epoch_seed,
)


@pytest.fixture(scope="module")
def small():
    return load_split("synthetic", train=True, limit=3000)


def _two_epochs(run):
    torch.manual_seed(0)
    net = Network()
    opt = make_optimizer(net)
    return run(net, opt), run(net, opt)


def test_seed_pipeline_lowers_the_loss(small):
    first, second = _two_epochs(
        lambda net, opt: train_epoch_seed(net, opt, seed_loader(small.dataset, 100), "cpu")
    )
    assert first.images == second.images == 3000
    assert second.mean_loss < first.mean_loss
    assert 0 <= first.correct <= 3000


def test_resident_pipeline_lowers_the_loss(small):
    first, second = _two_epochs(
        lambda net, opt: train_epoch_resident(net, opt, small.images, small.labels, 100)
    )
    assert first.images == second.images == 3000
    assert second.mean_loss < first.mean_loss
    assert second.accuracy > first.accuracy


def test_resident_pipeline_covers_a_ragged_last_batch(small):
    net = Network()
    result = train_epoch_resident(
        net, make_optimizer(net), small.images[:250], small.labels[:250], 100
    )
    assert result.images == 250


def test_resident_pipeline_refuses_float_images(small):
    net = Network()
    with pytest.raises(TypeError, match="uint8"):
        train_epoch_resident(net, make_optimizer(net), small.images.float(), small.labels, 100)


def test_epoch_result_derives_mean_loss_and_accuracy():
    r = EpochResult(loss=50.0, correct=80, images=100)
    assert r.mean_loss == 0.5 and r.accuracy == 0.8


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_predict_labels_every_image_at_any_batch_size(small, batch_size):
    torch.manual_seed(0)
    net = Network()
    images = small.images[:23]
    preds = predict(net, images, batch_size)
    assert preds.shape == (23,) and preds.dtype == torch.int64
    assert ((0 <= preds) & (preds < 10)).all()
    # uint8 in is the same as ToTensor's float in; an explicit device gives the same labels.
    assert torch.equal(preds, predict(net, images.float() / 255, 5))
    assert torch.equal(preds, predict(net, images, batch_size, device="cpu"))


def test_predict_rejects_a_bad_batch_size(small):
    with pytest.raises(ValueError, match="batch_size"):
        predict(Network(), small.images[:4], 0)


def test_accuracy():
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError):
        accuracy(torch.tensor([1]), torch.tensor([1, 2]))


def test_confusion_matrix_by_hand():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 2, 0, 2])
    expected = torch.zeros(3, 3, dtype=torch.int64)
    expected[0, 0] = 1  # true 0 predicted 0
    expected[0, 1] = 1  # true 0 predicted 1
    expected[1, 1] = 1
    expected[2, 2] = 2
    expected[2, 0] = 1
    assert torch.equal(confusion_matrix(preds, labels, num_classes=3), expected)
    full = confusion_matrix(preds, labels)
    assert full.shape == (10, 10) and full.sum() == 6 and torch.equal(full[:3, :3], expected)


def test_confusion_matrix_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.tensor([1, 2]), torch.tensor([1]))
