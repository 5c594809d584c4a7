"""Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV): random search with square-shaped updates,
scores only.

Each iteration proposes, for every point not yet broken, a change of the current best perturbation
``δ`` inside one random square window of side ``s``, queries the model once and keeps the proposal if
the loss improves (Alg. 1 of the paper; we also keep a proposal that is adversarial, which a
loss other than the margin may rank lower):

* l∞ (Alg. 2): start from vertical stripes ``δ = ε·ρ``, ``ρ ∈ {−1, 1}`` per channel and column; a
  proposal sets the window to ``±ε`` (one sign per channel), re-drawn if it would not change the image.
* l2 (Alg. 3): start from a grid of "pseudo-Gaussian" squares of side ``H/5`` (the bumps of the
  paper's §3.2, ``Σ_n 1/(n+1)²`` over nested squares, two halves of opposite sign) scaled to ``‖δ‖₂ = ε``;
  a proposal moves the l2 mass of a second random window into the first (new bump + old content,
  rescaled to the mass available), then rescales ``δ`` to ``‖δ‖₂ = ε``.

The side follows the paper's schedule: ``s = round(sqrt(p·H·W))`` (l2: at least 3 and odd), with
``p = p_init`` halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a 10 000
query run (points rescaled to the budget). ``p_init`` defaults to 0.8 for l∞ (the value AutoAttack
runs Square with on 28–32 px images; the paper's ImageNet value is 0.05) and 0.1 for l2 (the paper's
ImageNet l2 value). Loss (to maximize, :mod:`advrobust.losses`): the paper's margin
``max_{j≠y} z_j − z_y`` untargeted and its cross-entropy ``−CE(z, y_t)`` targeted.

Budget: ``queries=5000`` model evaluations per point (AutoAttack's setting; the paper runs 10 000 on
ImageNet), including the initial one; points stop costing queries as soon as they are broken.
:meth:`Square.fast` is our fast preset: 1000 queries.

Speed: an l∞ proposal changes one square of the point's current image, so where the runner offers
square edits (the CPU fast path, for CNNs whose convolutional part is a graph of local layers:
:mod:`advrobust.runtime.square_edits`) each proposal is scored on the region of each layer the square
changes, from the point's current activations. A call runs there only where that costs less CPU time
than whole images, as modelled from the layers' shapes (never timed: the two round differently, and a
seed must give the same result in every run), and a side only once its first call has matched the
plain model; a success found on it is confirmed on the plain model before the point is retired.
Elsewhere proposals run as whole images.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advrobust.attacks.base import FixedBudgetAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.oracle import Oracle
from advrobust.errors import InputError
from advrobust.losses import Objective, get_loss, is_adversarial
from advrobust.progress import SILENT, Progress
from advrobust.runtime.frozen import same_scores
from advrobust.tensors import paint_squares, painted_squares, squares_of
from advrobust.threat import Threat

#: iterations (out of 10 000) after which the Square paper halves p
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, it: int, budget: int) -> float:
    """The fraction ``p`` of pixels a square covers at iteration ``it`` of ``budget`` (the paper's
    schedule, its iteration points rescaled from 10 000 to ``budget``)."""
    scaled = int(it / budget * 10000)
    return p_init / 2 ** sum(scaled > h for h in _HALVINGS)


def pseudo_gaussian(s: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The l2 attack's ``s×s`` update (paper §3.2): two halves, each ``Σ_{n ≥ d} 1/(n+1)²`` of the
    chessboard distance ``d`` to its centre, of opposite signs; unit l2 norm."""

    def bump(a: int, b: int) -> Tensor:
        i = torch.arange(a, device=device, dtype=dtype)[:, None]
        j = torch.arange(b, device=device, dtype=dtype)[None, :]
        d = torch.maximum((i - a // 2).abs(), (j - b // 2).abs()).long()
        levels = max(a, b) // 2 + 1
        weights = 1.0 / torch.arange(1, levels + 1, device=device, dtype=dtype) ** 2
        tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = Σ_{n ≥ d} 1/(n+1)²
        out = tail[d.clamp(max=levels - 1)]
        return out / out.norm()

    top = s // 2
    pattern = torch.cat([bump(top, s), -bump(s - top, s)]) if top else bump(s, s)
    return pattern / pattern.norm()


class Square(FixedBudgetAttack):
    """Square Attack, l∞ and l2 (Andriushchenko et al. 2020); see the module docstring.

    Parameters
    ----------
    threat:
        ``Linf(eps)`` or ``L2(eps)``.
    queries:
        Model evaluations per point (default 5000, as in AutoAttack).
    p_init:
        Initial fraction of pixels changed by a square; ``None``: 0.8 (l∞) / 0.1 (l2).
    loss:
        Objective to maximize; ``None``: margin (untargeted) / cross-entropy (targeted), the paper's.
    """

    name = "square"
    norms = ("linf", "l2")
    needs = "scores"
    needs_images = True

    def __init__(self, threat: Threat, *, queries: int = 5000, p_init: float | None = None,
                 loss: str | Objective | None = None, progress: Progress = SILENT, seed: int | None = 0,
                 eot: int = 1) -> None:
        super().__init__(threat, seed=seed, eot=eot)
        if int(queries) < 1:
            raise InputError(f"Square needs a budget of at least 1 query, got {queries}")
        if p_init is not None and not 0 < float(p_init) <= 1:
            raise InputError(f"p_init is a fraction of the pixels in (0, 1], got {p_init}")
        if loss is not None:
            get_loss(loss)
        self.queries = int(queries)
        self.p_init = None if p_init is None else float(p_init)
        self.loss = loss
        self.progress = progress

    @classmethod
    def fast(cls, threat: Threat, **kwargs) -> Square:
        """Our fast preset: 1000 queries per point."""
        return cls(threat, **{"queries": 1000, **kwargs})

    def _run(self, ctx: RunContext) -> Tensor:
        oracle, x, y, target, generator, done = ctx.oracle, ctx.x, ctx.y, ctx.target, ctx.generator, ctx.done
        linf = self.threat.name == "linf"
        p_init = self.p_init if self.p_init is not None else (0.8 if linf else 0.1)
        objective = get_loss(self.loss if self.loss is not None else ("margin" if target is None else "ce"))
        points = (~done).nonzero().squeeze(1)
        x_adv = x.clone()
        if points.numel() == 0:
            return x_adv
        x0, y0 = x[points], y[points]
        t0 = None if target is None else target[points]
        eps = float(self.threat.eps)
        start = self._init_linf(x0, eps, generator) if linf else self._init_l2(x0, eps, generator)
        best = start.clamp(0, 1)
        z = oracle.logits(best, index=points)
        loss, broken = objective(z, y0, t0), is_adversarial(z, y0, t0)
        h, w = x.shape[2:]
        scores = _LinfScores(oracle, points, best) if linf else None
        # the unbroken points' state, kept compact (shrunk when points break, not gathered every
        # query: on a busy CPU each advanced-indexing call costs milliseconds)
        a = (~broken).nonzero().squeeze(1)
        xa, ya, best_a, loss_a = x0[a], y0[a], best[a], loss[a]
        ta = None if t0 is None else t0[a]
        with self.progress.task(f"square {self.threat}", total=self.queries - 1) as task:
            for it in range(1, self.queries):
                if a.numel() == 0:
                    break
                p = square_fraction(p_init, it, self.queries)
                side = round(math.sqrt(p * h * w))
                if scores is not None:
                    side = min(max(side, 1), min(h, w) - 1)
                    top, left, patch = self._step_linf(xa, best_a, eps, side, generator)
                    z = scores(a, best_a, top, left, patch)
                else:
                    side = min(max(side, 3) | 1, min(h, w) - 1)
                    cand = self._step_l2(xa, best_a, eps, side, generator)
                    z = oracle.logits(cand, index=points[a])
                new, hit = objective(z, ya, ta), is_adversarial(z, ya, ta)
                if scores is not None and scores.edited and bool(hit.any()):
                    hit = scores.confirmed(hit, best_a, top, left, patch, ya, ta)
                accept = (new > loss_a) | hit  # an adversarial proposal is kept even at a lower loss
                if scores is not None:
                    rows = accept.nonzero().squeeze(1)
                    moved = paint_squares(best_a.index_select(0, rows), top[rows], left[rows], patch[rows])
                    best_a.index_copy_(0, rows, moved)
                    scores.accepted(a, rows)
                else:
                    best_a = torch.where(accept[:, None, None, None], cand, best_a)
                loss_a = torch.where(accept, new, loss_a)
                if bool(hit.any()):
                    best[a] = best_a
                    keep = ~hit
                    a, xa, ya, best_a, loss_a = a[keep], xa[keep], ya[keep], best_a[keep], loss_a[keep]
                    ta = None if ta is None else ta[keep]
                task.advance(1)
        best[a] = best_a
        x_adv[points] = best
        return x_adv

    # --- l∞ ------------------------------------------------------------------------------------
    @staticmethod
    def _init_linf(x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
        n, c, _, w = x.shape
        stripes = _signs((n, c, 1, w), generator, x)
        return x + eps * stripes

    @staticmethod
    def _step_linf(x: Tensor, best: Tensor, eps: float, side: int,
                   generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """The proposal: a random ``side×side`` window of each point set to ``x ± ε`` per channel
        (clipped to the box), the rest as ``best``; returned as the windows' first rows and columns and
        their new contents (``N×C×side×side``). Signs whose proposal would not change the image are
        re-drawn, up to 10 times (as in the authors' code)."""
        n, c = x.shape[:2]
        top, left = _corners(x, side, generator)
        clean = squares_of(x, top, left, side)
        up, down = (clean + eps).clamp(0, 1), (clean - eps).clamp(0, 1)
        held = squares_of(best, top, left, side)
        # exact comparisons: inside the window best holds clamp(x ± ε), computed the same way
        moves_up = (up != held).flatten(2).any(dim=2)  # (N, C)
        moves_down = (down != held).flatten(2).any(dim=2)
        signs = _signs((n, c, 1, 1), generator, x)
        for _ in range(10):
            same = ~torch.where(signs.view(n, c) > 0, moves_up, moves_down).any(dim=1)
            if not bool(same.any()):
                break
            signs = torch.where(same.view(n, 1, 1, 1), _signs((n, c, 1, 1), generator, x), signs)
        return top, left, torch.where(signs > 0, up, down)

    # --- l2 ------------------------------------------------------------------------------------
    @staticmethod
    def _init_l2(x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
        n, c, h, w = x.shape
        s = max(h // 5, 1)
        bump = pseudo_gaussian(s, x.device, x.dtype)
        delta = torch.zeros_like(x)
        off_h, off_w = (h - s * (h // s)) // 2, (w - s * (w // s)) // 2
        for top in range(off_h, h - s + 1, s):
            for left in range(off_w, w - s + 1, s):
                delta[:, :, top : top + s, left : left + s] += bump * _signs((n, c, 1, 1), generator, x)
        return x + _rescale(delta, eps)

    @staticmethod
    def _step_l2(x: Tensor, best: Tensor, eps: float, side: int, generator: torch.Generator) -> Tensor:
        n, c = x.shape[:2]
        delta = best - x
        (top1, left1), (top2, left2) = _corners(x, side, generator), _corners(x, side, generator)
        w1, w2 = _window_mask(x, top1, left1, side), _window_mask(x, top2, left2, side)
        img_norm2 = delta.flatten(1).square().sum(1).view(n, 1, 1, 1)
        in_w1 = (delta * w1).square().sum((2, 3), keepdim=True).sqrt()  # per channel
        union2 = (delta * (w1 | w2)).square().sum((2, 3), keepdim=True)
        old = squares_of(delta, top1, left1, side) / (1e-10 + in_w1)
        transpose = torch.rand(n, generator=generator, device=x.device) < 0.5
        bump = pseudo_gaussian(side, x.device, x.dtype).expand(n, 1, side, side)
        bump = torch.where(transpose.view(n, 1, 1, 1), bump.transpose(2, 3), bump)
        new = bump * _signs((n, c, 1, 1), generator, x) + old
        budget = ((eps**2 - img_norm2).clamp_min(0) / c + union2).sqrt()
        new = new / new.square().sum((2, 3), keepdim=True).sqrt().clamp_min(1e-12) * budget
        delta = paint_squares(delta.masked_fill(w2, 0.0), top1, left1, new)
        return (x + _rescale(delta, eps)).clamp(0, 1)


def _signs(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """Uniform ``±1`` of ``shape``."""
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _corners(x: Tensor, side: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The first row and column (``N`` each) of one random ``side×side`` square per point."""
    n, _, h, w = x.shape
    top = torch.randint(0, h - side + 1, (n,), generator=generator, device=x.device)
    left = torch.randint(0, w - side + 1, (n,), generator=generator, device=x.device)
    return top, left


def _window_mask(x: Tensor, top: Tensor, left: Tensor, side: int) -> Tensor:
    """A boolean mask ``N×1×H×W``: each point's ``side×side`` square at ``top``, ``left`` (:func:`_corners`)."""
    n, _, h, w = x.shape
    top, left = top.view(n, 1, 1, 1), left.view(n, 1, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    return (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)


def _rescale(delta: Tensor, eps: float) -> Tensor:
    """``δ`` scaled to ``‖δ‖₂ = ε`` per point."""
    norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * (eps / norm).view(-1, 1, 1, 1)


class _LinfScores:
    """Scores of l∞ proposals (an ``s×s`` square of each point's current image replaced): whole
    images through the oracle's runner, or, where the runner offers square edits
    (:mod:`advrobust.runtime.square_edits`: the changed regions only), those. A call runs on the
    edits where their CPU time for its side and rows, modelled from the layers' shapes, is below the
    whole images' (:meth:`~advrobust.runtime.square_edits.SquareEdits.cheaper`: never a timing, so
    that the same seed gives the same result), and only after the side's first such call has matched
    the plain model's scores; a success found on them is confirmed on the plain model before the point
    is retired. The edits' images follow the accepted proposals: pasted in where the edits scored
    them, else marked stale and recomputed before the edits' next use."""

    def __init__(self, oracle: Oracle, points: Tensor, best: Tensor) -> None:
        self.oracle, self.points = oracle, points
        self.edits = oracle.runner.square_edits(best) if oracle.access == "gradients" else None
        self.stale = torch.zeros(len(points), dtype=torch.bool, device=best.device)
        self.exact: dict[int, bool] = {}  # per side checked: whether the edits matched the plain model
        self.edited = False  # whether the last call's scores came from the edits
        self.side = 0  # the last call's side

    def __call__(self, a: Tensor, best_a: Tensor, top: Tensor, left: Tensor, patch: Tensor) -> Tensor:
        side = patch.shape[-1]
        index = self.points.index_select(0, a)
        self.edited = False
        edits = self.edits
        if edits is None or not edits.offers(side) or not self.exact.get(side, True) or not edits.cheaper(side, len(a)):
            return self.oracle.logits(painted_squares(best_a, top, left, patch), index=index)
        self._refresh(a, best_a)
        self.side = side
        if side in self.exact:
            self.oracle.count(len(a), index)
            self.edited = True
            return edits(a, top, left, patch)
        cand = painted_squares(best_a, top, left, patch)
        z = self.oracle.logits(cand, index=index)
        self.exact[side] = same_scores(edits(a, top, left, patch), self.oracle.confirm(cand))
        return z

    def _refresh(self, a: Tensor, best_a: Tensor) -> None:
        """Bring the edits' images of the rows ``a`` marked stale up to date (``best_a``: their images)."""
        stale = self.stale.index_select(0, a).nonzero().squeeze(1)
        if stale.numel():
            assert self.edits is not None
            rows = a.index_select(0, stale)
            self.edits.update(rows, best_a.index_select(0, stale))
            self.stale.index_fill_(0, rows, False)

    def accepted(self, a: Tensor, rows: Tensor) -> None:
        """The proposals ``rows`` of the last call (for the points ``a``) were accepted."""
        if rows.numel() == 0:
            return
        if self.edited:
            assert self.edits is not None
            self.edits.keep(rows)
        else:
            self.stale.index_fill_(0, a.index_select(0, rows), True)

    def confirmed(self, hit: Tensor, best_a: Tensor, top: Tensor, left: Tensor, patch: Tensor, y: Tensor,
                  target: Tensor | None) -> Tensor:
        """``hit`` with each success the edits found checked on the plain model."""
        rows = hit.nonzero().squeeze(1)
        cand = painted_squares(best_a.index_select(0, rows), top[rows], left[rows], patch[rows])
        real = self.oracle.adversarial(cand, y[rows], None if target is None else target[rows])
        return hit.index_put((rows,), real)
