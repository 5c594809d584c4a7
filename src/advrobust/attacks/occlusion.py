"""Rectangular occlusion attack (ROA): Wu, Tong & Vorobeychik (2020), "Defending against physically
realizable attacks on image classification", ICLR, Section 4.

    attack = ROA(size=5)                       # a 5×5 rectangle, anywhere, any content in [0, 1]
    res = attack(model, x, y)
    ar.attacks.create("roa", eps=25)           # the same square, from an l0 budget of 25 pixels

A physically realizable stand-in for stickers and patches: the adversary paints one ``h×w``
rectangle of the image with arbitrary content. Two stages, as in the paper:

1. **Position.** The rectangle, filled with gray (0.5), is tried at candidate positions (every
   ``stride`` pixels) and the position of highest loss is kept. ``search="exhaustive"`` tries them
   all; ``search="gradient"`` (the paper's faster variant) ranks the positions by the input
   gradient's squared magnitude summed over the rectangle, ``Σ_{(i,j) ∈ R} ‖∇_x L(x)_{ij}‖²``, and
   tries only the ``candidates`` best.
2. **Content.** With the position fixed, PGD inside the rectangle (l∞ without a budget: the pixels
   may take any value in ``[0, 1]``): ``p_{n+1} = clip_[0,1](p_n + α·sign(∇_p L))`` from the gray start,
   the best iterate per point kept (the first success, else the highest loss).

The threat model reported is :class:`~advrobust.threat.L0` with ``eps = h·w`` pixels (a rectangle
changes at most that many); the rectangle is the stronger constraint and is what the attack respects.
Defaults: ``steps=30``, ``step_size=0.1``, ``candidates=10``, ``stride=1`` — our fast preset for
28×28 digits (the paper runs 30–50 PGD steps of 4/255 on 224×224 faces with stride 5 and 10
candidates).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from advrobust.attacks.base import FixedBudgetAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.iterative import BestTracker
from advrobust.attacks.oracle import Oracle
from advrobust.errors import InputError
from advrobust.losses import cross_entropy, is_adversarial
from advrobust.threat import L0, Threat

GRAY = 0.5


def _size(size: int | tuple[int, int] | None, threat: Threat | None) -> tuple[int, int]:
    """The rectangle: ``size`` if given, else the square of area ``threat.eps``, else 5×5."""
    if size is None:
        if threat is None or threat.eps is None:
            return 5, 5
        side = math.isqrt(int(threat.eps))
        if side * side != int(threat.eps):
            raise InputError(f"ROA: an l0 budget of {threat.eps} pixels is no square: pass size=(height, width)")
        return side, side
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if isinstance(h, bool) or int(h) != h or int(w) != w or h < 1 or w < 1:
        raise InputError(f"ROA: size must be a positive int or (height, width), got {size!r}")
    if threat is not None and threat.eps is not None and h * w > threat.eps:
        raise InputError(f"ROA: a {h}×{w} rectangle exceeds the threat's budget of {threat.eps} pixels")
    return int(h), int(w)


def rectangle_masks(shape: tuple[int, int], size: tuple[int, int], corners: Tensor) -> Tensor:
    """``K×1×H×W`` masks, 1 inside the ``size`` rectangle whose top-left corner is ``corners[k]``."""
    (height, width), (h, w) = shape, size
    rows = torch.arange(height, device=corners.device)
    cols = torch.arange(width, device=corners.device)
    inside_r = (rows >= corners[:, :1]) & (rows < corners[:, :1] + h)
    inside_c = (cols >= corners[:, 1:]) & (cols < corners[:, 1:] + w)
    return (inside_r.unsqueeze(2) & inside_c.unsqueeze(1)).unsqueeze(1)


class ROA(FixedBudgetAttack):
    """The rectangular occlusion attack; see the module docstring. ``size``: ``h`` or ``(h, w)``;
    without it, the square whose area is the l0 ``threat``'s budget (default 5×5)."""

    name = "roa"
    norms = ("l0",)
    needs_images = True

    def __init__(
        self,
        threat: Threat | None = None,
        *,
        size: int | tuple[int, int] | None = None,
        search: Literal["gradient", "exhaustive"] = "gradient",
        candidates: int = 10,
        stride: int = 1,
        steps: int = 30,
        step_size: float = 0.1,
        seed: int | None = 0,
    ) -> None:
        h, w = _size(size, threat)
        super().__init__(threat if threat is not None else L0(eps=h * w), seed=seed)
        if search not in ("gradient", "exhaustive"):
            raise InputError(f"ROA: search must be 'gradient' or 'exhaustive', got {search!r}")
        for name, value in (("candidates", candidates), ("stride", stride), ("steps", steps)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise InputError(f"ROA: {name} must be an integer >= 1, got {value!r}")
        if not float(step_size) > 0:
            raise InputError(f"ROA: step_size must be > 0, got {step_size!r}")
        self.height, self.width = h, w
        self.search, self.candidates, self.stride = search, int(candidates), int(stride)
        self.steps, self.step_size = int(steps), float(step_size)

    def with_threat(self, threat: Threat) -> ROA:
        """A copy for another l0 budget (an eps sweep): the same rectangle if it fits the budget, else
        the largest square that does."""
        clone = super().with_threat(threat)
        assert isinstance(clone, ROA)
        if threat.eps is not None and self.height * self.width > threat.eps:
            side = max(1, math.isqrt(int(threat.eps)))
            clone.height, clone.width = side, side
        return clone

    def corners(self, height: int, width: int, device: torch.device) -> Tensor:
        """Every top-left corner tried, ``K×2`` (row, column), on the ``stride`` grid."""
        if self.height > height or self.width > width:
            raise InputError(f"ROA: a {self.height}×{self.width} rectangle does not fit {height}×{width} images")
        rows = torch.arange(0, height - self.height + 1, self.stride, device=device)
        cols = torch.arange(0, width - self.width + 1, self.stride, device=device)
        return torch.cartesian_prod(rows, cols)

    def _run(self, ctx: RunContext) -> Tensor:
        best = BestTracker(ctx.x, ctx.done)
        todo = ctx.pending()
        if todo.numel():
            xs, ys, ts = ctx.x[todo], ctx.y[todo], ctx.target_of(todo)
            mask = self._position(ctx.oracle, xs, ys, ts, todo)
            self._fill(ctx.oracle, xs, ys, ts, todo, mask, best)
        return best.x_best

    def _position(self, oracle: Oracle, x: Tensor, y: Tensor, target: Tensor | None, index: Tensor) -> Tensor:
        """Stage 1: the mask of the best gray rectangle per point, ``N×1×H×W``."""
        corners = self.corners(x.shape[2], x.shape[3], x.device)
        masks = rectangle_masks((x.shape[2], x.shape[3]), (self.height, self.width), corners).to(x.dtype)
        n, k = x.shape[0], corners.shape[0]
        if self.search == "gradient" and k > self.candidates:
            _, _, grad = oracle.logits_and_grad(x, lambda z: cross_entropy(z, y, target), index)
            energy = grad.square().sum(dim=1, keepdim=True)
            window = F.avg_pool2d(energy, (self.height, self.width), stride=1)  # N×1×(H−h+1)×(W−w+1)
            per_corner = window[:, 0, corners[:, 0], corners[:, 1]]  # N×K
            chosen = per_corner.topk(self.candidates, dim=1).indices  # N×C
        else:
            chosen = torch.arange(k, device=x.device).expand(n, k)
        c = chosen.shape[1]
        tried = masks[chosen.flatten()].view(n, c, 1, *x.shape[2:])
        painted = x.unsqueeze(1) * (1 - tried) + GRAY * tried  # N×C×ch×H×W
        z = oracle.logits(painted.flatten(0, 1), index.repeat_interleave(c))
        rows = torch.arange(n, device=x.device).repeat_interleave(c)
        loss = cross_entropy(z, y[rows], None if target is None else target[rows]).view(n, c)
        pick = chosen.gather(1, loss.argmax(dim=1, keepdim=True)).squeeze(1)
        return masks[pick]

    def _fill(
        self, oracle: Oracle, x: Tensor, y: Tensor, target: Tensor | None, index: Tensor, mask: Tensor,
        best: BestTracker,
    ) -> None:
        """Stage 2: PGD on the rectangle's content, the active set shrinking at each success."""
        active = torch.arange(x.shape[0], device=x.device)
        current = x * (1 - mask) + GRAY * mask
        for step in range(self.steps + 1):
            xs, ys, ms = x[active], y[active], mask[active]
            ts = None if target is None else target[active]
            if step == self.steps:
                z = oracle.logits(current, index[active])
                best.update(index[active], current, cross_entropy(z, ys, ts), is_adversarial(z, ys, ts))
                return
            z, loss, grad = oracle.logits_and_grad(current, partial(cross_entropy, y=ys, target=ts), index[active])
            adv = is_adversarial(z, ys, ts)
            best.update(index[active], current, loss, adv)
            keep = ~adv
            if not bool(keep.any()):
                return
            stepped = (current + self.step_size * grad.sign() * ms).clamp(0.0, 1.0)
            current = (xs * (1 - ms) + stepped * ms)[keep]
            active = active[keep]
