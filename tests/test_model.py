"""The notes' CNN: every intermediate shape, the weight shapes and the parameter count."""

import torch
import torch.nn.functional as F

from fmnist_model import Network


def test_parameter_count_is_the_notes():
    assert sum(p.numel() for p in Network().parameters()) == 32_998


def test_weight_shapes_keep_the_notes_names():
    net = Network()
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert shapes == {
        "conv1.weight": (6, 1, 5, 5),
        "conv1.bias": (6,),
        "conv2.weight": (12, 6, 5, 5),
        "conv2.bias": (12,),
        "fc1.weight": (120, 192),
        "fc1.bias": (120,),
        "fc2.weight": (60, 120),
        "fc2.bias": (60,),
        "out.weight": (10, 60),
        "out.bias": (10,),
    }


def test_every_intermediate_shape():
    net = Network()
    t = torch.rand(1, 1, 28, 28)
    t = F.max_pool2d(F.relu(net.conv1(t)), 2, 2)
    assert t.shape == (1, 6, 12, 12)
    t = F.max_pool2d(F.relu(net.conv2(t)), 2, 2)
    assert t.shape == (1, 12, 4, 4)
    t = t.reshape(-1, 192)
    assert t.shape == (1, 192)
    t = F.relu(net.fc1(t))
    assert t.shape == (1, 120)
    t = F.relu(net.fc2(t))
    assert t.shape == (1, 60)
    assert net.out(t).shape == (1, 10)


def test_forward_matches_the_layers_and_takes_batches():
    torch.manual_seed(0)
    net = Network()
    x = torch.rand(7, 1, 28, 28)
    by_hand = net.out(
        F.relu(
            net.fc2(
                F.relu(
                    net.fc1(
                        F.max_pool2d(
                            F.relu(net.conv2(F.max_pool2d(F.relu(net.conv1(x)), 2, 2))), 2, 2
                        ).reshape(-1, 192)
                    )
                )
            )
        )
    )
    out = net(x)
    assert out.shape == (7, 10)
    torch.testing.assert_close(out, by_hand)
