"""Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner 2018, §4.1.1).

A defence that puts a non-differentiable transformation ``g`` before the classifier ``f`` (bit-depth
reduction, JPEG, a median filter, thermometer encoding) leaves gradient attacks with zero or useless
gradients. BPDA runs the real ``g`` in the forward pass and a differentiable ``h ≈ g`` in the
backward pass — the identity when ``g(x) ≈ x``:

    ∇_x f(g(x))  is replaced by  ∇_x f(h(x)) evaluated at the point g(x)

implemented as ``h(x) + (g(x) − h(x)).detach()``, whose value is exactly ``g(x)`` and whose gradient
is ``h``'s. Every gradient attack works on the wrapped model unchanged:

    bpda = ar.models.BPDA(BitDepth(bits=2), model)          # identity on the way back
    ar.attacks.PGD(ar.Linf(eps=0.3))(bpda, x, y)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from advrobust.errors import InputError


class BPDA(nn.Module):
    """``model(preprocess(x))`` in the forward pass; gradients through ``backward`` (default: the
    identity) in place of ``preprocess``."""

    def __init__(
        self,
        preprocess: Callable[[Tensor], Tensor],
        model: Callable[[Tensor], Tensor],
        backward: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not callable(preprocess) or not callable(model):
            raise InputError("BPDA(preprocess, model, backward=None) takes callables: the transformation and the model")
        if backward is not None and not callable(backward):
            raise InputError(f"BPDA's backward must be a callable approximation of preprocess, got {backward!r}")
        self.preprocess = preprocess
        self.model = model
        self.backward = backward

    def forward(self, x: Tensor) -> Tensor:
        approx = x if self.backward is None else self.backward(x)
        return self.model(approx + (self.preprocess(x) - approx).detach())
