"""The bundled defences by name, as the CLI's ``--defence NAME[:VALUE]`` takes them.

    defend(model, "noise:0.3")               # GaussianNoise(model, sigma=0.3)
    defend(model, "bit-depth:2", bpda=True)  # BPDA(BitDepth(2), model): the real quantization forward,
                                             # the identity backward (Athalye, Carlini & Wagner 2018, §4.1.1)

A randomized defence (``noise``, ``resize-pad``, ``dropout``) is evaluated with EOT over its draws; an
input transformation (``bit-depth``, ``median``, ``jpeg``) is deployed as ``Preprocessed`` and attacked
through BPDA when asked, which is how its robustness should be measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from advrobust.errors import InputError
from advrobust.models.bpda import BPDA
from advrobust.models.defences.preprocessing import JPEG, BitDepth, MedianFilter, Preprocessed
from advrobust.models.defences.randomized import GaussianNoise, InferenceDropout, RandomResizePad


@dataclass(frozen=True)
class NamedDefence:
    """One bundled defence: what its value means, its default, and how it is built."""

    parameter: str
    default: float
    cast: Callable[[str], float]
    randomized: bool
    build: Callable[[nn.Module, float], nn.Module] | None = None  # a randomized wrapper of the model
    transform: Callable[[float], nn.Module] | None = None  # an input transformation before the model


DEFENCES: dict[str, NamedDefence] = {
    "noise": NamedDefence("sigma", 0.3, float, True, build=lambda m, v: GaussianNoise(m, sigma=v)),
    "resize-pad": NamedDefence("min_scale", 0.8, float, True, build=lambda m, v: RandomResizePad(m, min_scale=v)),
    "dropout": NamedDefence("p", 0.3, float, True, build=lambda m, v: InferenceDropout(m, p=v)),
    "bit-depth": NamedDefence("bits", 3, int, False, transform=lambda v: BitDepth(bits=int(v))),
    "median": NamedDefence("size", 3, int, False, transform=lambda v: MedianFilter(size=int(v))),
    "jpeg": NamedDefence("quality", 75, int, False, transform=lambda v: JPEG(quality=int(v))),
}


def describe() -> str:
    """``noise[:sigma=0.3], resize-pad[:min_scale=0.8], …``: the names and their values, for help texts."""
    return ", ".join(f"{name}[:{d.parameter}={d.default:g}]" for name, d in DEFENCES.items())


def defend(model: nn.Module, spec: str, *, bpda: bool = False) -> nn.Module:
    """``model`` behind the bundled defence ``spec`` (``NAME`` or ``NAME:VALUE``, see :data:`DEFENCES`);
    ``bpda``: attack an input transformation through BPDA (identity backward)."""
    name, _, raw = spec.strip().lower().partition(":")
    if name not in DEFENCES:
        raise InputError(f"unknown defence {spec!r}: choose one of {describe()}")
    entry = DEFENCES[name]
    try:
        value = entry.cast(raw) if raw else entry.default
    except ValueError:
        raise InputError(f"defence {name}'s {entry.parameter} must be a number, got {raw!r}") from None
    if entry.build is not None:
        if bpda:
            raise InputError(f"BPDA is for non-differentiable input transformations; {name} is randomized: "
                             "it is evaluated with EOT (the rand suite, or --eot N), drop --bpda")
        return entry.build(model, value)
    assert entry.transform is not None
    transform = entry.transform(value)
    return BPDA(transform, model) if bpda else Preprocessed(transform, model)
