"""A registry of CPU-sized architectures (in the spirit of timm's): names -> constructors.

    model = create("mnist-cnn", num_classes=10, input_shape=(1, 28, 28))
    list_architectures()   # ['mnist-cnn', 'small-resnet', 'mlp']

Every model maps a batch ``N×C×H×W`` to logits ``N×K``. Inputs are whatever the model is trained on;
wrap it with :func:`advrobust.models.with_normalization` so that it takes ``[0, 1]`` pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from advrobust.errors import InputError

Shape = tuple[int, int, int]


class MnistCNN(nn.Module):
    """Two 3×3 conv blocks (``width``, ``2·width`` channels, each ReLU + 2×2 max-pool) and a
    128-unit hidden layer: the classic small MNIST CNN (as in Madry et al. 2018's MNIST model, at
    half its width by default, ``width=32``, so an epoch of mnist-5k takes seconds on a CPU)."""

    def __init__(self, num_classes: int, input_shape: Shape, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """The residual block of He et al. 2016: two 3×3 conv + batch norm, identity or 1×1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A CIFAR-style ResNet (He et al. 2016, Sec. 4.2): a 3×3 stem, three stages of ``blocks``
    basic blocks at ``width``, ``2·width``, ``4·width`` channels (stride 1, 2, 2), global average
    pooling. Defaults ``width=16, blocks=1`` (ResNet-8, ~78k parameters) keep it CPU-sized; the
    paper's ResNet-20 is ``blocks=3``."""

    def __init__(self, num_classes: int, input_shape: Shape, width: int = 16, blocks: int = 1) -> None:
        super().__init__()
        c = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class MLP(nn.Module):
    """A fully connected net: flatten, ``depth`` hidden ReLU layers of ``hidden`` units, logits."""

    def __init__(self, num_classes: int, input_shape: Shape, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        dims = [input_shape[0] * input_shape[1] * input_shape[2]] + [hidden] * depth
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class Architecture:
    """A registry entry: the constructor ``(num_classes, input_shape, **kwargs)`` and a summary."""

    factory: Callable[..., nn.Module]
    summary: str


ARCHITECTURES: dict[str, Architecture] = {
    "mnist-cnn": Architecture(MnistCNN, "2 conv blocks + 128-unit layer, for 28×28 digits (the default)"),
    "small-resnet": Architecture(SmallResNet, "ResNet-8, 3 stages of basic blocks, for 32×32 RGB images"),
    "mlp": Architecture(MLP, "fully connected, 2 hidden layers of 256 units"),
}


def list_architectures() -> list[str]:
    """The registered architecture names."""
    return list(ARCHITECTURES)


def create(
    arch: str,
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    seed: int | None = None,
    **kwargs: int,
) -> nn.Module:
    """Build the architecture ``arch`` for ``num_classes`` classes and inputs of ``input_shape``
    (C, H, W). ``seed`` makes the initial weights reproducible without touching the global RNG;
    ``kwargs`` are the architecture's own options (e.g. ``width``)."""
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise InputError(f"input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
    if num_classes < 2:
        raise InputError(f"num_classes must be at least 2, got {num_classes}")
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    factory = ARCHITECTURES[arch].factory
    try:
        if seed is None:
            return factory(num_classes, shape, **kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory(num_classes, shape, **kwargs)
    except TypeError as exc:
        raise InputError(f"bad options {kwargs} for architecture {arch!r}: {exc}") from None
