"""Seeded, batched, differentiable transformation distributions for EOT and physical attacks.

    from advrobust.transforms import Compose, Geometric, Brightness, physical
    t = Compose([Geometric(rotation=15, scale=0.1), Brightness(0.1)])
    x_t = t(x, generator)                      # a fresh draw per point, differentiable in x
    params = t.sample(x, generator); t.apply(x, params)   # the same draw, applied twice
    physical(strength=0.5)                     # the default physical setting at half its ranges

Pure torch (``grid_sample`` and grouped convolutions): no other dependency, runs on the CPU.
"""

from advrobust.transforms.base import Compose, Identity, Params, Transform
from advrobust.transforms.geometric import Geometric, Perspective, Rotation, Scale, Translation, warp
from advrobust.transforms.photometric import (
    Brightness,
    ColorJitter,
    Contrast,
    Gamut,
    GaussianBlur,
    GaussianNoise,
)
from advrobust.transforms.presets import physical, print_and_photograph, printed_digit

__all__ = [
    "Brightness",
    "ColorJitter",
    "Compose",
    "Contrast",
    "Gamut",
    "GaussianBlur",
    "GaussianNoise",
    "Geometric",
    "Identity",
    "Params",
    "Perspective",
    "Rotation",
    "Scale",
    "Transform",
    "Translation",
    "physical",
    "print_and_photograph",
    "printed_digit",
    "warp",
]
