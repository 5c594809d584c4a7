"""Ready-made distributions: a print-and-photograph approximation and the default physical setting.

Printing an image and photographing it (Kurakin, Goodfellow & Bengio 2017, "Adversarial examples in
the physical world", §3) narrows its colour range (ink is not black, paper is not white), shifts its
colours, blurs it (printer dots, focus), adds sensor noise, and views it from a slightly different
pose. :func:`print_and_photograph` chains these; :func:`physical` adds the larger pose and lighting
changes of a patch or a sticker seen by a camera (Brown et al. 2017; Eykholt et al. 2018), and is the
default of the physical attacks and of the physical success rate. :func:`printed_digit` is the same
chain with the small pose change a model trained on centred, unaugmented digits (MNIST) tolerates:
such a model reads about a quarter of clean digits wrongly under :func:`physical`'s translation of
±10% of the image (2.8 pixels at 28×28), so an attack measured there measures the transformations.
"""

from __future__ import annotations

from advrobust.transforms.base import Compose, Transform, check_range
from advrobust.transforms.geometric import Geometric
from advrobust.transforms.photometric import Brightness, ColorJitter, Contrast, Gamut, GaussianBlur, GaussianNoise


def print_and_photograph(strength: float = 1.0, padding: str = "zeros") -> Transform:
    """Gamut (black ≤ 0.1, white ≥ 0.9), colour gain ±0.1 and offset ±0.03, blur σ ≤ 0.7 px,
    a small pose change (rotation ±4°, scale ±0.04, translation ±0.03, perspective 0.04) and sensor
    noise σ = 0.02; every range times ``strength``."""
    s = check_range("print_and_photograph", "strength", strength)
    parts: list[Transform] = [
        Gamut(black=0.1, white=0.1),
        ColorJitter(gain=0.1, offset=0.03),
        GaussianBlur(sigma=0.7),
        Geometric(rotation=4.0, scale=0.04, translation=0.03, perspective=0.04, padding=padding),
        GaussianNoise(std=0.02),
    ]
    return Compose(parts).scaled(s)


def physical(strength: float = 1.0, padding: str = "zeros") -> Transform:
    """The default physical distribution: pose (rotation ±15°, scale ±0.1, translation ±0.1 of the
    image, perspective 0.1), lighting (brightness ±0.1, contrast ×[0.8, 1.2]), then printing and
    photographing (:func:`print_and_photograph`); every range times ``strength``."""
    s = check_range("physical", "strength", strength)
    pose = Geometric(rotation=15.0, scale=0.1, translation=0.1, perspective=0.1, padding=padding)
    return _seen_by_a_camera(pose, s)


def printed_digit(strength: float = 1.0, padding: str = "zeros") -> Transform:
    """A printed digit photographed square-on: :func:`physical`'s printing, lighting and camera
    changes with a small pose change (rotation ±10°, scale ±0.05, translation ±0.03 of the image,
    perspective 0.05); every range times ``strength``. The default MNIST CNN reads 93.1% of 200
    clean test digits correctly under it (96.0% untransformed, 72.5% under :func:`physical`;
    ``benchmarks/bench_physical.py``)."""
    s = check_range("printed_digit", "strength", strength)
    pose = Geometric(rotation=10.0, scale=0.05, translation=0.03, perspective=0.05, padding=padding)
    return _seen_by_a_camera(pose, s)


def _seen_by_a_camera(pose: Geometric, strength: float) -> Transform:
    """Printing (gamut, colour), the ``pose``, lighting (brightness ±0.1, contrast ×[0.8, 1.2]) and
    the camera (blur σ ≤ 0.7 px, noise σ = 0.02), every range times ``strength``."""
    parts: list[Transform] = [
        Gamut(black=0.1, white=0.1),
        ColorJitter(gain=0.1, offset=0.03),
        pose,
        Brightness(delta=0.1),
        Contrast(factor=0.2),
        GaussianBlur(sigma=0.7),
        GaussianNoise(std=0.02),
    ]
    return Compose(parts).scaled(strength)
