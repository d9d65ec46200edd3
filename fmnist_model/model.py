"""The CNN under test: the study notes' FashionMNIST network, layer for layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Network", "NUM_CLASSES"]

NUM_CLASSES = 10


class Network(nn.Module):
    """conv1 1->6 k5, pool, conv2 6->12 k5, pool, fc1 192->120, fc2 120->60, out 60->10.

    Attribute names are the notes' own, so `Network().conv1.weight` means what it did there.
    32,998 parameters; 232,440 multiply-adds per 28x28 image.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5)
        self.conv2 = nn.Conv2d(in_channels=6, out_channels=12, kernel_size=5)
        self.fc1 = nn.Linear(in_features=12 * 4 * 4, out_features=120)
        self.fc2 = nn.Linear(in_features=120, out_features=60)
        self.out = nn.Linear(in_features=60, out_features=NUM_CLASSES)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # [N,1,28,28] -> conv1 [N,6,24,24] -> pool [N,6,12,12]
        t = F.max_pool2d(F.relu(self.conv1(t)), kernel_size=2, stride=2)
        # -> conv2 [N,12,8,8] -> pool [N,12,4,4]
        t = F.max_pool2d(F.relu(self.conv2(t)), kernel_size=2, stride=2)
        t = t.reshape(-1, 12 * 4 * 4)
        t = F.relu(self.fc1(t))
        t = F.relu(self.fc2(t))
        return self.out(t)  # logits: cross_entropy applies the softmax
