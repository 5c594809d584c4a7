"""One-Pixel attack (Su, Vargas & Sakurai 2019, "One pixel attack for fooling deep neural networks",
IEEE TEVC; FORMULAS.md): an l0 attack that needs only the model's scores.

A candidate is ``k`` pixels, each ``(x, y, r, g, b)`` (``(x, y, v)`` for grayscale): ``k·(2+C)``
numbers. Differential evolution (the paper's §III-B, DE/rand/1 without crossover) evolves a
population of candidates per image:

* initial population: coordinates ``~ U(0, H) × U(0, W)``, values ``~ N(0.5, 0.5)`` clipped to
  ``[0, 1]`` (the paper's ``U(1, 32)`` and ``N(µ=128, σ=127)`` on a 0-255 scale);
* child ``i`` of generation ``g``: ``c_i = p_{r1} + F·(p_{r2} − p_{r3})``, ``r1, r2, r3`` distinct
  and different from ``i``, clipped to the bounds;
* the child replaces parent ``i`` when it lowers the true-class probability (untargeted) / raises
  the target-class probability (targeted). We compare log-probabilities (``log_softmax`` of the
  scores), a monotone map of the probability that does not saturate at 1.0 in float32;
* early stop per image as soon as one candidate is adversarial.

Defaults are the paper's: ``population=400``, ``F=0.5``, ``generations=100`` (plus the initial
population: at most ``400 × 101`` queries per image). :meth:`OnePixel.fast` is a documented fast
preset (population 100, 30 generations), ours, for quick audits.

Speed: the candidates of every still-running image are painted into copies of their images by one
``scatter`` and evaluated in batches of up to ``max_batch`` rows, many images' populations per
forward pass. A child that decodes to the same pixels and values as its parent is not re-queried.
Exactly ``k`` distinct pixels are written (a candidate whose pixels collide is repaired by moving
the later pixel to the next free position); nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advrobust.attacks.base import AttackResult, FixedBudgetAttack, Model, Oracle, check_inputs, evaluation_mode
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress
from advrobust.threat import L0, Threat


@dataclass
class _Population:
    """The DE state of the images still being attacked: genes and their decoded candidates."""

    genes: Tensor  # (B, P, k·(2+C))
    pos: Tensor  # (B, P, k) flat pixel indices, distinct within a candidate
    vals: Tensor  # (B, P, k, C) new pixel values
    fitness: Tensor  # (B, P) log-probability of the true class, negated (untargeted) / of the target


class OnePixel(FixedBudgetAttack):
    """One-Pixel attack by differential evolution (Su et al. 2019); threat ``L0(pixels=k)``.

    Parameters
    ----------
    threat:
        ``L0(pixels=k)``: the number of pixels changed (the paper: 1, 3 and 5).
    population:
        Candidates per image (paper: 400).
    generations:
        The most DE generations after the initial population (paper: 100).
    F:
        Mutation scale of ``p_{r1} + F·(p_{r2} − p_{r3})`` (paper: 0.5).
    max_batch:
        The most perturbed images in one forward pass (default 8192): a memory knob, not a result knob.
    progress:
        Told once per generation (default silent).
    seed:
        See :class:`~advrobust.attacks.base.Attack`.
    """

    name = "one-pixel"
    norms = ("l0",)
    needs = "scores"
    needs_images = True

    def __init__(
        self,
        threat: Threat,
        *,
        population: int = 400,
        generations: int = 100,
        F: float = 0.5,
        max_batch: int = 8192,
        progress: Progress = SILENT,
        seed: int | None = 0,
    ) -> None:
        super().__init__(threat, seed=seed)
        if getattr(threat, "per_feature", False):
            raise InputError("OnePixel changes whole pixels: use L0(pixels=k) without per_feature")
        if int(population) < 4:
            raise InputError(f"OnePixel needs a population of at least 4 (3 distinct parents + 1), got {population}")
        if int(generations) < 0:
            raise InputError(f"generations must be >= 0, got {generations}")
        if not float(F) > 0:
            raise InputError(f"the mutation scale F must be > 0, got {F}")
        if int(max_batch) < 1:
            raise InputError(f"max_batch must be >= 1, got {max_batch}")
        self.population = int(population)
        self.generations = int(generations)
        self.F = float(F)
        self.max_batch = int(max_batch)
        self.progress = progress

    @classmethod
    def fast(cls, threat: Threat, **kwargs) -> OnePixel:
        """Our fast preset: population 100, 30 generations (about 13× fewer queries than the paper)."""
        return cls(threat, **{"population": 100, "generations": 30, **kwargs})

    # --- differential evolution -----------------------------------------------------------------
    def _run(
        self,
        oracle: Oracle,
        x: Tensor,
        y: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
        done: Tensor,
    ) -> Tensor:
        n, c, h, w = x.shape
        k = int(self.threat.eps)
        if k > h * w:
            raise InputError(f"L0(pixels={k}) asks for more pixels than an image has ({h * w})")
        x_adv = x.clone()
        points = (~done).nonzero().squeeze(1)
        if points.numel() == 0:
            return x_adv
        ctx = _Context(oracle, x[points].reshape(-1, c, h * w), y[points],
                       None if target is None else target[points], points, (c, h, w), k, self.max_batch)
        everyone = torch.arange(len(points), device=x.device)
        pop, success = self._initial(ctx, generator)
        pos, vals = pop.pos[:, 0].clone(), pop.vals[:, 0].clone()
        won = torch.zeros(len(points), dtype=torch.bool, device=x.device)
        a, cand_pos, cand_vals = everyone, pop.pos, pop.vals
        with self.progress.task(f"one-pixel k={k}", total=self.generations) as task:
            for g in range(self.generations + 1):
                if g > 0:
                    a = (~won).nonzero().squeeze(1)
                    cand_pos, cand_vals, success = self._generation(ctx, pop, a, generator)
                    task.advance(1, success=float(won.float().mean()))
                # early stop: an image's first adversarial candidate is its result
                hit = success.any(dim=1)
                first = success.float().argmax(dim=1)[hit]
                pos[a[hit]] = cand_pos[hit, first]
                vals[a[hit]] = cand_vals[hit, first]
                won[a[hit]] = True
                if bool(won.all()):
                    break
        # images never broken: the fittest candidate of the final population
        lost = (~won).nonzero().squeeze(1)
        fittest = pop.fitness[lost].argmax(dim=1)
        pos[lost], vals[lost] = pop.pos[lost, fittest], pop.vals[lost, fittest]
        x_adv[points] = _paint(ctx.flat.clone(), pos, vals).reshape(-1, c, h, w)
        return x_adv

    def _initial(self, ctx: _Context, generator: torch.Generator) -> tuple[_Population, Tensor]:
        """The initial population of every image, evaluated: ``(population, success (B, P))``."""
        b, p, k, c = ctx.flat.shape[0], self.population, ctx.k, ctx.shape[0]
        dev, dtype = ctx.flat.device, ctx.flat.dtype
        coords = torch.rand(b, p, k, 2, generator=generator, device=dev, dtype=dtype)
        coords = coords * torch.tensor(ctx.shape[1:], device=dev, dtype=dtype)
        values = (0.5 + 0.5 * torch.randn(b, p, k, c, generator=generator, device=dev, dtype=dtype)).clamp(0, 1)
        genes = torch.cat([coords, values], dim=3).reshape(b, p, -1)
        genes, pos, vals = ctx.decode(genes)
        everyone = torch.ones(b, p, dtype=torch.bool, device=dev)
        fitness, success = ctx.evaluate(torch.arange(b, device=dev), everyone, pos, vals)
        return _Population(genes, pos, vals, fitness), success

    def _generation(
        self, ctx: _Context, pop: _Population, a: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One DE/rand/1 generation over images ``a``, in place; returns the children's
        ``(positions, values, success)``."""
        genes = pop.genes[a]
        parents = _distinct_parents(len(a), self.population, generator, genes.device)
        pick = [genes.gather(1, parents[..., j, None].expand_as(genes)) for j in range(3)]
        child = pick[0] + self.F * (pick[1] - pick[2])
        child = torch.minimum(child.clamp_min(0), ctx.upper)
        child, pos, vals = ctx.decode(child)
        old_pos, old_vals, old_fit = pop.pos[a], pop.vals[a], pop.fitness[a]
        changed = (pos != old_pos).any(dim=2) | (vals != old_vals).flatten(2).any(dim=2)
        fitness, success = ctx.evaluate(a, changed, pos, vals, previous=old_fit)
        better = fitness > old_fit
        pop.genes[a] = torch.where(better[..., None], child, genes)
        pop.pos[a] = torch.where(better[..., None], pos, old_pos)
        pop.vals[a] = torch.where(better[..., None, None], vals, old_vals)
        pop.fitness[a] = torch.where(better, fitness, old_fit)
        return pos, vals, success


class _Context:
    """The images under attack and the oracle: decodes genes, paints and scores candidates."""

    def __init__(self, oracle: Oracle, flat: Tensor, y: Tensor, target: Tensor | None, points: Tensor,
                 shape: tuple[int, int, int], k: int, max_batch: int) -> None:
        self.oracle, self.flat, self.y, self.target, self.points = oracle, flat, y, target, points
        self.shape, self.k, self.max_batch = shape, k, max_batch
        c, h, w = shape
        bounds = torch.tensor([h, w] + [1.0] * c, dtype=flat.dtype, device=flat.device)
        # coordinates live in [0, H) × [0, W): the upper bound is clipped just below H and W
        self.upper = (bounds - torch.tensor([1e-3, 1e-3] + [0.0] * c, dtype=flat.dtype, device=flat.device)).repeat(k)

    def decode(self, genes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Genes -> (genes with collisions repaired, flat positions ``(B,P,k)``, values ``(B,P,k,C)``)."""
        c, h, w = self.shape
        g = genes.reshape(*genes.shape[:2], self.k, 2 + c)
        row = g[..., 0].floor().clamp(0, h - 1).long()
        col = g[..., 1].floor().clamp(0, w - 1).long()
        pos = row * w + col
        moved = torch.zeros_like(pos, dtype=torch.bool)
        for j in range(1, self.k):  # step pixel j past the (at most j) earlier pixels it lands on
            for _ in range(j):
                clash = (pos[..., j, None] == pos[..., :j]).any(dim=-1)
                if not bool(clash.any()):
                    break
                pos[..., j] = torch.where(clash, (pos[..., j] + 1) % (h * w), pos[..., j])
                moved[..., j] |= clash
        if bool(moved.any()):
            g = g.clone()
            g[..., 0] = torch.where(moved, (pos // w).to(g.dtype) + 0.5, g[..., 0])
            g[..., 1] = torch.where(moved, (pos % w).to(g.dtype) + 0.5, g[..., 1])
            genes = g.reshape(genes.shape)
        return genes, pos, g[..., 2:].clone()

    def evaluate(self, imgs: Tensor, mask: Tensor, pos: Tensor, vals: Tensor,
                 previous: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(fitness, success)`` of the candidates ``mask`` (``B×P``) of images ``imgs``, one query
        each; elsewhere the fitness is ``previous`` and the success false (an unchanged child)."""
        b, p = mask.shape
        fitness = previous.clone() if previous is not None else torch.full(mask.shape, -torch.inf, device=mask.device)
        success = torch.zeros(b, p, dtype=torch.bool, device=mask.device)
        rows = mask.nonzero()
        for start in range(0, rows.shape[0], self.max_batch):
            i, j = rows[start : start + self.max_batch].unbind(1)
            img = imgs[i]
            painted = _paint(self.flat[img], pos[i, j], vals[i, j])  # indexing copies: painted in place
            z = self.oracle.logits(painted.reshape(-1, *self.shape), index=self.points[img])
            logp = torch.log_softmax(z.float(), dim=1)
            if self.target is None:
                fitness[i, j] = -logp.gather(1, self.y[img, None]).squeeze(1)
                success[i, j] = z.argmax(dim=1) != self.y[img]
            else:
                fitness[i, j] = logp.gather(1, self.target[img, None]).squeeze(1)
                success[i, j] = z.argmax(dim=1) == self.target[img]
        return fitness, success


def _paint(flat: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
    """Set, in place, pixels ``pos`` (``R×k``) of ``flat`` (``R×C×HW``) to ``vals`` (``R×k×C``)."""
    r, c, _ = flat.shape
    return flat.scatter_(2, pos[:, None, :].expand(r, c, pos.shape[1]), vals.transpose(1, 2).to(flat.dtype))


def _distinct_parents(b: int, p: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``(b, p, 3)`` indices ``r1, r2, r3``, distinct from each other and from their row ``i``."""
    own = torch.arange(p, device=device).view(1, p, 1)
    r = torch.randint(0, p, (b, p, 3), generator=generator, device=device)
    while True:
        bad = (r == own).any(dim=2) | (r[..., 0] == r[..., 1]) | (r[..., 0] == r[..., 2]) | (r[..., 1] == r[..., 2])
        count = int(bad.sum())
        if count == 0:
            return r
        r[bad] = torch.randint(0, p, (count, 3), generator=generator, device=device)


@dataclass
class AllTargetsResult:
    """One-Pixel towards every other class (the seed's figure): ``targets[i, j]`` is the ``j``-th
    class other than ``y[i]``; ``result`` holds the ``N·(K−1)`` attacks, point-major."""

    targets: Tensor
    result: AttackResult

    @property
    def success(self) -> Tensor:
        """``(N, K−1)``: did the attack reach ``targets[i, j]``?"""
        return self.result.success.view(self.targets.shape)

    def for_target(self, cls: int) -> AttackResult:
        """The attacks towards class ``cls`` (the points whose label is not ``cls``), in point order."""
        return self.result.select((self.targets == cls).flatten())


def one_pixel_all_targets(
    model: Model, x: Tensor, y: Tensor, *, pixels: int = 1, num_classes: int | None = None, **kwargs
) -> AllTargetsResult:
    """Push every image of ``x`` towards every class other than its label, in one batched targeted
    :class:`OnePixel` run (keyword arguments go to :class:`OnePixel`). ``num_classes``, when not
    given, is read from one forward pass of one image (not counted in the queries)."""
    if num_classes is None:
        x, y, _ = check_inputs(model, x, y)
        with evaluation_mode(model), torch.no_grad():
            num_classes = int(model(x[:1]).shape[1])
    y = torch.as_tensor(y, device=x.device).long()
    classes = torch.arange(num_classes, device=x.device).expand(len(y), num_classes)
    targets = classes[classes != y[:, None]].view(len(y), num_classes - 1)
    rep = num_classes - 1
    attack = OnePixel(L0(pixels=pixels), **kwargs)
    result = attack(model, x.repeat_interleave(rep, dim=0), y.repeat_interleave(rep), targets.flatten())
    return AllTargetsResult(targets=targets, result=result)
