"""The masked threat model: any change inside a fixed binary support, exactly none outside it.

``Masked(mask)`` is the threat model of patches, stickers and eyeglass frames (Brown et al. 2017;
Sharif et al. 2016): an l0-like threat with a *fixed* support ``M``: ``r = x_adv − x`` satisfies
``r ⊙ (1 − M) = 0``, and inside ``M`` the change is bounded only by the box ``[0, 1]`` (or, with
``inner=L2(eps)`` etc., also by an lp budget on the masked pixels). Every fixed-budget gradient attack
accepts it unchanged:

    threat = Masked(rectangle((28, 28), (18, 18, 27, 27)))       # a 9×9 sticker, any colours
    res = ar.attacks.PGD(threat, steps=100)(model, x, y, target=t)

The projection is exact: coordinates outside ``M`` are projected onto ``{0}`` (their bounds ``lo = hi = 0``),
those inside onto the inner ball ∩ box by the inner threat's own exact projection (its constraint
involves only the masked coordinates). ``x_adv`` equals ``x`` bit for bit outside the mask.

One mask serves the whole batch (``1×c×H×W``); for a different mask per image (one frame per face),
:func:`advrobust.attacks.masked.attack_per_mask` runs an attack once per distinct mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.masks import check_mask
from advrobust.tensors import flat
from advrobust.threat import L0, Linf, Threat


@dataclass(frozen=True, eq=False, init=False)
class Masked(Threat):
    """Changes confined to ``mask`` (``H×W``, ``c×H×W`` or ``1×c×H×W`` of 0/1), bounded inside it by
    ``inner`` (default ``Linf(eps=1.0)``: any value in ``[0, 1]``). Norms and budgets are the inner
    threat's (``name`` too, so every attack defined for the inner norm takes it)."""

    mask: Tensor
    inner: Threat

    def __init__(self, mask: Tensor, inner: Threat | None = None) -> None:
        inner = Linf(eps=1.0) if inner is None else inner
        if not isinstance(inner, Threat) or isinstance(inner, (Masked, L0)):
            raise InputError(f"Masked: inner must be an Linf, L2 or L1 threat model, got {inner!r}")
        m = check_mask(mask, owner="Masked mask")
        if m.shape[0] != 1:
            raise InputError(
                f"Masked takes one mask for the whole batch, got {m.shape[0]}: use "
                "advrobust.attacks.masked.attack_per_mask for one mask per image"
            )
        object.__setattr__(self, "mask", m)
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "eps", inner.eps)
        object.__setattr__(self, "p", inner.p)
        object.__setattr__(self, "name", inner.name)

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def support(self, like: Tensor) -> Tensor:
        """The mask as a 0/1 tensor broadcastable against ``like`` (``N×C×H×W``); checks the size."""
        if like.dim() != 4:
            raise InputError(f"a masked threat needs images of shape (N, C, H, W), got {tuple(like.shape)}")
        check_mask(self.mask, like.shape, owner="Masked mask")
        return self.mask.to(dtype=like.dtype, device=like.device)

    def norm(self, r: Tensor) -> Tensor:
        return self.inner.norm(r)

    def _project_delta(self, v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
        m = self.support(v)
        return self.inner._project_delta(v * m, lo * m, hi * m, eps) * m

    def _sample_ball(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.inner._sample_ball(like, generator) * self.support(like)

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        return self.inner.ascent_direction(grad * self.support(grad), x_adv)

    def with_eps(self, eps: float | None) -> Threat:
        return Masked(self.mask, self.inner.with_eps(eps))

    def contains(self, x_adv: Tensor, x: Tensor, atol: float = 1e-6) -> Tensor:
        outside = flat((x_adv - x) * (1 - self.support(x))).abs().amax(dim=1) == 0
        return self.inner.contains(x_adv, x, atol) & outside

    def describe(self) -> str:
        pixels = int(self.mask.amax(dim=1).sum())
        return f"{self.inner.describe()} inside a mask of {pixels} pixels ({float(self.mask.mean()):.1%})"
