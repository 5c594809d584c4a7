"""Threat models: the norm ``p``, the budget ``eps`` and the box ``[0, 1]``.

Each threat model answers, for a batch ``N×…`` of perturbations ``r = x_adv − x``:

* :meth:`Threat.norm` — ``‖r‖_p`` per point (seed, "lp norms definition reminder");
* :meth:`Threat.project` — the Euclidean projection of ``x_adv`` onto ``{x + r : ‖r‖_p ≤ eps} ∩ B``,
  always around the *clean* input ``x`` (never the previous iterate), with ``B = [0, 1]^{C×M×N}``;
* :meth:`Threat.random_start` — a point drawn uniformly from the ball, then put into the box;
* :meth:`Threat.ascent_direction` — the steepest-ascent direction of unit ``‖·‖_p`` for a gradient
  (sign for l∞, normalized gradient for l2, sparse top-k for l1), per point.

``eps=None`` means an unbounded threat model (only the box): the configuration of minimum-norm
attacks, which report the size of the smallest perturbation they find instead of staying in a ball.

All projections are exact:

* l∞ — a clamp (the intersection of two boxes is a box);
* l2 — ``z = clip(s·v, lo, hi)`` with ``s = 1/(1 + λ) ∈ (0, 1]`` such that ``‖z‖₂ = eps``
  (the KKT conditions of the projection onto ball ∩ box), solved exactly from the sorted points
  where coordinates start to touch the box;
* l1 — the sort-based algorithm of Duchi et al. (2008, "Efficient projections onto the l1-ball"),
  extended to the box: ``z_i = sign(v_i)·min(max(|v_i| − θ, 0), c_i)`` where ``c_i`` is how far the
  box lets coordinate ``i`` move in the direction of ``v_i``, and ``θ`` is found exactly from the
  sorted breakpoints of the piecewise-linear ``θ ↦ ‖z(θ)‖₁``;
* l0 — keep the ``k`` pixels whose clipped change removes the most squared distance.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.tensors import flat as _flat
from advrobust.tensors import per_point as _per_point

_TINY = 1e-12

#: relative and absolute slack when comparing a norm to eps: the round-off of a projection onto the ball
BUDGET_RTOL, BUDGET_ATOL = 1e-6, 1e-9


def within_budget(norm: Any, eps: Any) -> Any:
    """``norm <= eps`` up to the round-off of a projection (tensors broadcast; floats give a bool)."""
    return norm <= eps * (1 + BUDGET_RTOL) + BUDGET_ATOL


def _check_eps(name: str, eps: float | None) -> float | None:
    if eps is None:
        return None
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise InputError(f"{name}: eps must be a number, got {eps!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(
            f"{name}: eps must be finite and >= 0, got {eps!r} "
            "(use eps=None for an unbounded, minimum-norm threat model)"
        )
    return value


@dataclass(frozen=True)
class Threat(ABC):
    """An lp ball of radius ``eps`` around the clean input, intersected with the ``[0, 1]`` box."""

    eps: float | None = None
    p: float = field(init=False, default=math.inf)
    name: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _check_eps(type(self).__name__, self.eps))

    # --- what every norm provides -------------------------------------------------------------
    @abstractmethod
    def norm(self, r: Tensor) -> Tensor:
        """``‖r‖_p`` of each point of the batch ``r`` (shape ``N``)."""

    @abstractmethod
    def _project_delta(self, v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
        """Project perturbations ``v`` onto ``{‖r‖_p ≤ eps} ∩ [lo, hi]`` (``lo ≤ 0 ≤ hi``)."""

    @abstractmethod
    def _sample_ball(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        """Perturbations drawn uniformly from the ball of radius ``eps`` (before the box)."""

    @abstractmethod
    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        """The steepest-ascent direction of unit ``‖·‖_p`` for ``grad``, per point.

        With ``x_adv`` given, coordinates pinned at a face of the box whose gradient points out of
        it are left out (they cannot move), which matters for the sparse l1 step.
        """

    # --- shared behaviour ---------------------------------------------------------------------
    def with_eps(self, eps: float | None) -> Threat:
        """The same threat model with another budget."""
        return replace(self, eps=eps)

    @property
    def bounded(self) -> bool:
        return self.eps is not None

    def eps_per_point(self, like: Tensor, eps: Tensor | float | None = None) -> Tensor:
        """The budget as an ``N`` vector (a per-point ``eps`` tensor is allowed, e.g. for FMN)."""
        value = self.eps if eps is None else eps
        if value is None:
            return torch.full((like.shape[0],), math.inf, dtype=like.dtype, device=like.device)
        if isinstance(value, Tensor):
            return value.to(dtype=like.dtype, device=like.device).expand(like.shape[0])
        return torch.full((like.shape[0],), float(value), dtype=like.dtype, device=like.device)

    def project(self, x_adv: Tensor, x: Tensor, eps: Tensor | float | None = None) -> Tensor:
        """Euclidean projection of ``x_adv`` onto ``ball(x, eps) ∩ [0, 1]`` (exact for every p)."""
        if eps is None and not self.bounded:
            return x_adv.clamp(0.0, 1.0)
        delta = self._project_delta(x_adv - x, -x, 1.0 - x, self.eps_per_point(x, eps))
        return (x + delta).clamp_(0.0, 1.0)

    def random_start(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x + r`` with ``r`` uniform in the eps-ball, then projected onto the box."""
        if not self.bounded:
            raise InputError(f"{self.name}: a random start needs a finite eps")
        r = self._sample_ball(x, generator)
        return self.project(x + r, x)

    def contains(self, x_adv: Tensor, x: Tensor, atol: float = 1e-6) -> Tensor:
        """Per point: is ``x_adv`` inside the ball (up to ``atol``) and the box?"""
        in_box = _flat((x_adv >= -atol) & (x_adv <= 1 + atol)).all(dim=1)
        if not self.bounded:
            return in_box
        return in_box & (self.norm(x_adv - x) <= self.eps * (1 + atol) + atol)

    def describe(self) -> str:
        eps = "unbounded" if self.eps is None else f"eps={self.eps:g}"
        return f"{self.name} {eps}"

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class Linf(Threat):
    """The l∞ ball ``max_i |r_i| ≤ eps`` (Goodfellow et al. 2015; Madry et al. 2018)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "p", math.inf)
        object.__setattr__(self, "name", "linf")

    def norm(self, r: Tensor) -> Tensor:
        return _flat(r).abs().amax(dim=1)

    def _project_delta(self, v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
        e = _per_point(eps, v)
        return torch.minimum(torch.maximum(v, torch.maximum(lo, -e)), torch.minimum(hi, e))

    def _sample_ball(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        return (2 * u - 1) * self.eps

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        return grad.sign()


@dataclass(frozen=True)
class L2(Threat):
    """The l2 ball ``sqrt(Σ r_i²) ≤ eps``; steps along ``g / ‖g‖₂``, exact even for tiny gradients."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "p", 2.0)
        object.__setattr__(self, "name", "l2")

    def norm(self, r: Tensor) -> Tensor:
        return _flat(r).norm(p=2, dim=1)

    def _project_delta(self, v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
        z = torch.minimum(torch.maximum(v, lo), hi)
        outside = self.norm(z) > eps
        if not bool(outside.any()):
            return z
        vo, lo_o, hi_o = _flat(v[outside]), _flat(lo[outside]), _flat(hi[outside])
        s = _l2_box_scale(vo, lo_o, hi_o, eps[outside])
        zo = torch.minimum(torch.maximum(vo * s[:, None], lo_o), hi_o)
        z = z.clone()
        z[outside] = zo.reshape(z[outside].shape)
        return z

    def _sample_ball(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        g = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        d = _flat(g).shape[1]
        u = torch.rand(like.shape[0], generator=generator, dtype=like.dtype, device=like.device)
        radius = self.eps * u.pow(1.0 / d)
        return g * _per_point(radius / self.norm(g).clamp_min(_TINY), g)

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        # Scale by the largest entry first, so that no gradient is too small to normalize (float32
        # squares underflow below ~1e-19); only an exactly zero gradient gives a zero step.
        biggest = _flat(grad).abs().amax(dim=1)
        g = grad / _per_point(torch.where(biggest > 0, biggest, torch.ones_like(biggest)), grad)
        n = self.norm(g)
        return g / _per_point(torch.where(n > 0, n, torch.ones_like(n)), g)


@dataclass(frozen=True)
class L1(Threat):
    """The l1 ball ``Σ |r_i| ≤ eps``, with its exact projection onto ball ∩ box.

    The ascent step is the sparse one of Croce & Hein (2021, "Mind the box: l1-APGD"): move the
    ``sparsity`` fraction of coordinates with the largest ``|g_i|`` (among those the box lets move),
    with signs ``sign(g_i)``, scaled to unit l1 norm.
    """

    sparsity: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "p", 1.0)
        object.__setattr__(self, "name", "l1")
        if not 0 < self.sparsity <= 1:
            raise InputError(f"L1: sparsity must be in (0, 1], got {self.sparsity!r}")

    def norm(self, r: Tensor) -> Tensor:
        return _flat(r).abs().sum(dim=1)

    def _project_delta(self, v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
        shape = v.shape
        vf, lof, hif = _flat(v), _flat(lo), _flat(hi)
        sign = vf.sign()
        a = vf.abs()
        cap = torch.where(vf >= 0, hif, -lof).clamp_min(0.0)  # room in the direction of v_i
        z_box = torch.minimum(a, cap)
        need = z_box.sum(dim=1) > eps
        if not bool(need.any()):
            return (sign * z_box).reshape(shape)
        a_n, cap_n, eps_n = a[need], cap[need], eps[need]
        theta = _l1_box_threshold(a_n, cap_n, eps_n)
        z = z_box.clone()
        z[need] = torch.minimum((a_n - theta[:, None]).clamp_min(0.0), cap_n)
        return (sign * z).reshape(shape)

    def _sample_ball(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        # Uniform in the l1 ball: |r_i| = eps·e_i / Σ_{j≤d+1} e_j with e_j ~ Exp(1), random signs.
        n, d = like.shape[0], _flat(like).shape[1]
        u = torch.rand(n, d + 1, generator=generator, dtype=like.dtype, device=like.device)
        e = -torch.log1p(-u.clamp(max=1 - 1e-7))
        mags = e[:, :d] / e.sum(dim=1, keepdim=True)
        signs = torch.randint(0, 2, (n, d), generator=generator, device=like.device).to(like.dtype)
        return (self.eps * mags * (2 * signs - 1)).reshape(like.shape)

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        g = _flat(grad)
        movable = torch.ones_like(g, dtype=torch.bool)
        if x_adv is not None:
            xf = _flat(x_adv)
            movable = ~(((xf <= 0) & (g < 0)) | ((xf >= 1) & (g > 0)))
        score = torch.where(movable, g.abs(), torch.zeros_like(g))
        k = max(1, int(round(self.sparsity * g.shape[1])))
        kth = score.topk(k, dim=1).values[:, -1:]
        chosen = (score >= kth) & (score > 0)
        step = torch.where(chosen, g.sign(), torch.zeros_like(g))
        count = chosen.sum(dim=1, keepdim=True).clamp_min(1)
        return (step / count).reshape(grad.shape)


def _l2_box_scale(v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
    """The ``s ∈ (0, 1)`` with ``‖clip(s·v, lo, hi)‖₂ = eps`` for rows where ``s = 1`` is too long.

    Coordinate ``i`` is clipped once ``s > t_i = cap_i / |v_i|`` (``cap_i`` the room the box leaves
    in the direction of ``v_i``), so ``g(s) = s²·Σ_{t_i ≥ s} v_i² + Σ_{t_i < s} cap_i²`` is increasing
    and quadratic between sorted breakpoints: find the segment where it crosses ``eps²`` and solve.
    """
    a = v.abs()
    cap = torch.where(v >= 0, hi, -lo).clamp_min(0.0)
    t = torch.where(a > 0, cap / torch.where(a > 0, a, torch.ones_like(a)), torch.full_like(a, math.inf))
    t_sorted, order = t.sort(dim=1)
    a2 = a.square().gather(1, order)
    cap2 = cap.square().gather(1, order)
    tail_v2 = a2.flip(1).cumsum(1).flip(1)  # Σ_{k ≥ j} v_k²
    head_cap2 = cap2.cumsum(1) - cap2  # Σ_{k < j} cap_k²
    finite = torch.isfinite(t_sorted)
    g_at = torch.where(finite, t_sorted.square() * tail_v2 + head_cap2, torch.full_like(a, math.inf))
    e2 = eps.square()[:, None]
    j = (g_at >= e2).float().argmax(dim=1, keepdim=True)
    numerator = (e2 - head_cap2.gather(1, j)).clamp_min(0.0)
    s = (numerator / tail_v2.gather(1, j).clamp_min(torch.finfo(a.dtype).tiny)).sqrt().squeeze(1)
    return s.clamp(max=1.0)


def _l1_box_threshold(a: Tensor, cap: Tensor, eps: Tensor) -> Tensor:
    """The ``θ ≥ 0`` with ``Σ_i min(max(a_i − θ, 0), cap_i) = eps`` (rows where the box-only sum
    exceeds ``eps``), found exactly from the breakpoints of this piecewise-linear function.

    Coordinate ``i`` contributes ``cap_i`` for ``θ ≤ a_i − cap_i``, ``a_i − θ`` up to ``θ = a_i`` and
    ``0`` beyond, so the slope of the sum at ``θ`` is ``−#{i : a_i − cap_i < θ < a_i}``.
    """
    n, d = a.shape
    starts = (a - cap).clamp_min(0.0)  # slope -1 begins here (clamped: θ ≥ 0)
    ends = a  # and ends here
    points = torch.cat([starts, ends], dim=1)
    slope_change = torch.cat([-torch.ones_like(a), torch.ones_like(a)], dim=1)
    order = points.argsort(dim=1)
    bp = points.gather(1, order)
    dslope = slope_change.gather(1, order)
    slope_after = dslope.cumsum(dim=1)  # slope of f just after each breakpoint
    f0 = torch.minimum(a, cap).sum(dim=1)  # f(0)
    gaps = torch.diff(bp, dim=1, prepend=torch.zeros(n, 1, dtype=a.dtype, device=a.device))
    slope_before = torch.cat([torch.zeros(n, 1, dtype=a.dtype, device=a.device), slope_after[:, :-1]], 1)
    f_at = f0[:, None] + (slope_before * gaps).cumsum(dim=1)  # f at each breakpoint
    # first breakpoint where f drops to eps or below; θ lies in the segment that ends there
    below = f_at <= eps[:, None]
    idx = torch.where(below.any(dim=1), below.float().argmax(dim=1), torch.full_like(eps, d * 2 - 1).long())
    prev = (idx - 1).clamp_min(0)
    theta_prev = torch.where(idx > 0, bp.gather(1, prev[:, None]).squeeze(1), torch.zeros_like(eps))
    f_prev = torch.where(idx > 0, f_at.gather(1, prev[:, None]).squeeze(1), f0)
    slope = torch.where(idx > 0, slope_after.gather(1, prev[:, None]).squeeze(1), torch.zeros_like(eps))
    theta = theta_prev + (f_prev - eps) / (-slope).clamp_min(1.0)
    theta_at = bp.gather(1, idx[:, None]).squeeze(1)
    return torch.minimum(theta, theta_at).clamp_min(0.0)


@dataclass(frozen=True)
class L0(Threat):
    """At most ``eps`` changed pixels (a pixel counts once whatever channels changed) — the threat of
    JSMA (Papernot et al. 2016) and One-Pixel (Su et al. 2019). ``per_feature=True`` counts each
    channel value instead. ``L0(pixels=k)`` is the same as ``L0(eps=k)``.

    Inputs are ``N×C×H×W``; for other shapes every feature is a pixel.
    """

    pixels: int | None = None
    per_feature: bool = False

    def __post_init__(self) -> None:
        if self.pixels is not None:
            if self.eps is not None and float(self.eps) != float(self.pixels):
                raise InputError(f"L0: give either eps or pixels, not both ({self.eps} vs {self.pixels})")
            object.__setattr__(self, "eps", self.pixels)
        super().__post_init__()
        if self.eps is not None and self.eps != int(self.eps):
            raise InputError(f"L0: the budget is a whole number of pixels, got {self.eps!r}")
        object.__setattr__(self, "pixels", None if self.eps is None else int(self.eps))
        object.__setattr__(self, "p", 0.0)
        object.__setattr__(self, "name", "l0")

    def with_eps(self, eps: float | None) -> Threat:
        return replace(self, eps=eps, pixels=None)

    def _per_pixel(self, t: Tensor) -> Tensor:
        """``N×P×C`` view: the channels of each pixel along the last axis."""
        if t.dim() == 4 and not self.per_feature:
            return t.flatten(2).transpose(1, 2)
        return _flat(t).unsqueeze(-1)

    def norm(self, r: Tensor) -> Tensor:
        return (self._per_pixel(r) != 0).any(dim=2).sum(dim=1).to(r.dtype)

    def _project_delta(self, v: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
        z = torch.minimum(torch.maximum(v, lo), hi)
        pv, pz = self._per_pixel(v), self._per_pixel(z)
        # keeping pixel j saves Σ_c v² − (v − z)² of squared distance; keep the k best pixels.
        gain = (pv.square() - (pv - pz).square()).sum(dim=2)
        n_pix = gain.shape[1]
        k = eps.clamp(max=n_pix).long()
        rank = gain.argsort(dim=1, descending=True).argsort(dim=1)
        keep = (rank < k[:, None]) & (gain > 0)
        kept = pz * keep.unsqueeze(-1)
        if z.dim() == 4 and not self.per_feature:
            return kept.transpose(1, 2).reshape(z.shape)
        return kept.reshape(z.shape)

    def _sample_ball(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        pix = self._per_pixel(like)
        n, n_pix, c = pix.shape
        k = min(int(self.eps), n_pix)
        scores = torch.rand(n, n_pix, generator=generator, dtype=like.dtype, device=like.device)
        chosen = scores.argsort(dim=1)[:, :k]
        mask = torch.zeros(n, n_pix, dtype=like.dtype, device=like.device).scatter_(1, chosen, 1.0)
        values = torch.rand(pix.shape, generator=generator, dtype=like.dtype, device=like.device)
        r = (values - self._per_pixel(like)) * mask.unsqueeze(-1)  # new pixel values anywhere in [0,1]
        if like.dim() == 4 and not self.per_feature:
            return r.transpose(1, 2).reshape(like.shape)
        return r.reshape(like.shape)

    def random_start(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return (x + self._sample_ball(x, generator)).clamp(0.0, 1.0)

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        """l0 has no useful steepest-ascent step: l0 attacks take an l2 step and project."""
        return L2().ascent_direction(grad, x_adv)


THREATS: dict[str, type[Threat]] = {"linf": Linf, "l2": L2, "l1": L1, "l0": L0}
_ALIASES = {"inf": "linf", "li": "linf", "l_inf": "linf", "2": "l2", "1": "l1", "0": "l0"}


def threat_from_name(norm: str, eps: float | None = None) -> Threat:
    """``threat_from_name("linf", 0.3)`` -> ``Linf(eps=0.3)``; for the CLI and configs."""
    key = str(norm).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in THREATS:
        raise InputError(f"unknown norm {norm!r}: choose one of {', '.join(THREATS)}")
    return THREATS[key](eps=eps)
