"""Bundled defences, to test an evaluation against and to show what fools a naive one.

Randomized (the output changes from call to call; evaluate them with EOT, the ``rand`` suite):

    noisy = GaussianNoise(model, sigma=0.3)          # Gaussian input noise
    resized = RandomResizePad(model, min_scale=0.8)  # random resizing and padding (Xie et al. 2018)
    dropped = InferenceDropout(model, p=0.3)         # dropout kept on at inference

Non-differentiable input transformations (attack them through :class:`advrobust.models.BPDA`):

    squeezed = Preprocessed(BitDepth(bits=2), model)   # bit-depth reduction (Xu et al. 2018)
    Preprocessed(MedianFilter(size=3), model)          # median smoothing (Xu et al. 2018)
    Preprocessed(JPEG(quality=75), model)              # a JPEG round trip (Pillow), Guo et al. 2018

By name, as the CLI's ``--defence`` takes them: ``defend(model, "noise:0.3")``, ``defend(model,
"bit-depth:2", bpda=True)`` (:mod:`~advrobust.models.defences.named`).
"""

from __future__ import annotations

from advrobust.models.defences.named import DEFENCES, defend
from advrobust.models.defences.preprocessing import JPEG, BitDepth, MedianFilter, Preprocessed
from advrobust.models.defences.randomized import GaussianNoise, InferenceDropout, RandomResizePad

__all__ = [
    "DEFENCES",
    "JPEG",
    "BitDepth",
    "GaussianNoise",
    "InferenceDropout",
    "MedianFilter",
    "Preprocessed",
    "RandomResizePad",
    "defend",
]
