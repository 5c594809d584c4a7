"""CNNs written the ways users write them, for the fast paths' exactness tests and the benchmarks.

advrobust's own architectures (:mod:`advrobust.models.architectures`) are ``nn.Sequential`` stacks
of modules. A model a user brings is as likely to be written like PyTorch's MNIST example
(``examples/mnist/main.py`` in the pytorch/examples repository: ``F.relu`` and ``F.max_pool2d`` in
``forward``, ``torch.flatten``, 32/64 channels, a 9216→128 dense layer), with ``x.view(x.size(0), -1)``,
batch norm, residual blocks (He et al. 2016, "Deep Residual Learning for Image Recognition") or
global average pooling (Lin et al. 2014, "Network In Network"). Each member of :data:`ZOO` is one
such style, built for any ``(channels, height, width)``: MNIST's ``(1, 28, 28)`` and 32×32 RGB
``(3, 32, 32)`` are the sizes the tests and benchmarks use.

    from advrobust.models.zoo import ZOO, build
    model = build("pytorch-example", (1, 28, 28), seed=0).eval()
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.errors import InputError

Shape = tuple[int, int, int]


class PytorchExample(nn.Module):
    """The network of PyTorch's MNIST example, functional style: two 3×3 convolutions (32, 64
    channels), a 2×2 max-pool, dropout, ``torch.flatten``, a 128-unit dense layer and ``log_softmax``
    (9216 inputs to the dense layer at 28×28)."""

    def __init__(self, shape: Shape, num_classes: int = 10) -> None:
        super().__init__()
        c, h, w = shape
        self.conv1 = nn.Conv2d(c, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * ((h - 4) // 2) * ((w - 4) // 2), 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def sequential(shape: Shape, num_classes: int = 10) -> nn.Module:
    """An ``nn.Sequential`` LeNet-like stack: 5×5 convolutions (16, 32 channels, padded), max-pools,
    ``nn.Flatten`` and two dense layers."""
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (h // 4) * (w // 4), 100), nn.ReLU(), nn.Linear(100, num_classes),
    )


class BatchNormCNN(nn.Module):
    """Convolutions with batch norm (used in eval mode), functional ReLU and average pooling, and
    ``x.view(x.size(0), -1)`` before the dense layer."""

    def __init__(self, shape: Shape, num_classes: int = 10) -> None:
        super().__init__()
        c, h, w = shape
        self.conv1, self.bn1 = nn.Conv2d(c, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * (h // 4) * (w // 4), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.view(x.size(0), -1))


class Block(nn.Module):
    """A residual block: two 3×3 convolutions with batch norm, added to the identity (He et al. 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class ResidualCNN(nn.Module):
    """A stem convolution and max-pool, a residual block, another max-pool and ``reshape`` into a
    dense layer."""

    def __init__(self, shape: Shape, num_classes: int = 10) -> None:
        super().__init__()
        c, h, w = shape
        self.stem = nn.Conv2d(c, 16, 3, padding=1)
        self.block = Block(16)
        self.fc = nn.Linear(16 * (h // 4) * (w // 4), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block(F.max_pool2d(F.relu(self.stem(x)), 2))
        x = F.max_pool2d(x, 2)
        return self.fc(x.reshape(x.shape[0], -1))


class GlobalPoolCNN(nn.Module):
    """Convolutions and max-pools into a 1×1 convolution per class map, averaged over all positions
    (global average pooling, Lin et al. 2014) and a dense layer."""

    def __init__(self, shape: Shape, num_classes: int = 10) -> None:
        super().__init__()
        c = shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 1), nn.ReLU(),
        )
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


#: name -> builder ``(input shape, num_classes) -> model``
ZOO: dict[str, Callable[[Shape, int], nn.Module]] = {
    "pytorch-example": PytorchExample,
    "sequential": sequential,
    "batch-norm": BatchNormCNN,
    "residual": ResidualCNN,
    "global-pool": GlobalPoolCNN,
}

#: the input sizes of the tests and benchmarks: MNIST and 32×32 RGB
SHAPES: dict[str, Shape] = {"mnist": (1, 28, 28), "rgb32": (3, 32, 32)}


def build(name: str, shape: Shape, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """The zoo's ``name`` for inputs of ``shape``, with weights drawn from ``seed``; batch norm's
    running statistics are drawn too (as a trained model's would differ from 0 and 1)."""
    if name not in ZOO:
        raise InputError(f"no zoo model {name!r}: choose one of {', '.join(ZOO)}")
    with torch.random.fork_rng():  # the caller's random state stays as it was
        torch.manual_seed(seed)
        model = ZOO[name](shape, num_classes)
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(0.2 * torch.randn(module.num_features, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=gen))
    return model
