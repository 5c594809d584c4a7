"""One-Pixel attack (Su, Vargas & Sakurai 2019, "One pixel attack for fooling deep neural networks",
IEEE TEVC): an l0 attack that needs only the model's scores.

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

Speed: the candidates of every still-running image are scored in batches of up to ``max_batch``
rows, many images' populations per pass, as edits of their images (:mod:`advrobust.attacks.pixel_edits`):
with one pixel on a white-box CPU CNN, on the pixel's receptive field only
(:mod:`advrobust.runtime.local_forward`, 2.1× the frozen whole-image pass on the default MNIST CNN);
otherwise painted into copies of their images by one ``scatter`` and run through the oracle's fast
path (:mod:`advrobust.runtime.fast_forward`). Exactly ``k`` distinct pixels are written (a candidate
whose pixels collide is repaired by moving the later pixel to the next free position); nothing else
changes.

One query per distinct image: the model is deterministic, so a candidate that paints an image
already scored for the same point in this run (a child equal to its parent, to another candidate of
its generation or of an earlier one) reuses that fitness without a query, and every candidate that
leaves the image unchanged (each pixel painted with the value it has: on MNIST, values clip to 0 or
1 and most pixels are 0 or 1) shares one query of the clean image. Candidates are compared by the
image they paint: the changed pixels as a set, sorted by position (see ``_Context.keys``), found by
a 64-bit hash, confirmed on the whole key. DE selects exactly as if every candidate were queried;
on the default MNIST model (400 × 10, 20 test images) queries per image fall from 4200 to 3460 (18%).
The results are kept while their image runs: ``8·(2 + k·(1+C)) + 5`` bytes per distinct candidate,
about 1.5 MB per image at the paper's budget (k = 1, grayscale).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advrobust.attacks.base import FixedBudgetAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.inputs import check_inputs
from advrobust.attacks.oracle import Oracle
from advrobust.attacks.pixel_edits import PixelEdits
from advrobust.attacks.result import AttackResult
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress
from advrobust.runtime.runner import Model
from advrobust.tensors import paint
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
        The most perturbed images built at once (their memory), default 8192: not a result knob.
        On a CPU the model sees them in cache-sized chunks whatever this is (20 images of the
        default MNIST CNN at 400 × 10, 2 threads: 1.94, 1.89 and 1.84 s at 128, 256 and 512).
    progress:
        Told once per generation (default silent).
    seed:
        See :class:`~advrobust.attacks.base.Attack`.
    """

    name = "one-pixel"
    norms = ("l0",)
    needs = "scores"
    needs_images = True

    def __init__(self, threat: Threat, *, population: int = 400, generations: int = 100, F: float = 0.5,
                 max_batch: int = 8192, progress: Progress = SILENT, seed: int | None = 0) -> None:
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
    def _run(self, ctx: RunContext) -> Tensor:
        oracle, x, y, target, generator, done = ctx.oracle, ctx.x, ctx.y, ctx.target, ctx.generator, ctx.done
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
        x_adv[points] = paint(ctx.flat.clone(), pos, vals).reshape(-1, c, h, w)
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
        fitness, success = ctx.score(torch.arange(b, device=dev), pos, vals)
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
        fitness, success = ctx.score(a, pos, vals)
        better = fitness > old_fit
        pop.genes[a] = torch.where(better[..., None], child, genes)
        pop.pos[a] = torch.where(better[..., None], pos, old_pos)
        pop.vals[a] = torch.where(better[..., None, None], vals, old_vals)
        pop.fitness[a] = torch.where(better, fitness, old_fit)
        return pos, vals, success


class _Context:
    """The images under attack and the oracle: decodes genes, paints and scores candidates,
    remembering every result of the run (:class:`_Memo`)."""

    def __init__(self, oracle: Oracle, flat: Tensor, y: Tensor, target: Tensor | None, points: Tensor,
                 shape: tuple[int, int, int], k: int, max_batch: int) -> None:
        self.oracle, self.flat, self.y, self.target, self.points = oracle, flat, y, target, points
        self.shape, self.k, self.max_batch = shape, k, max_batch
        c, h, w = shape
        bounds = torch.tensor([h, w] + [1.0] * c, dtype=flat.dtype, device=flat.device)
        # coordinates live in [0, H) × [0, W): the upper bound is clipped just below H and W
        self.upper = (bounds - torch.tensor([1e-3, 1e-3] + [0.0] * c, dtype=flat.dtype, device=flat.device)).repeat(k)
        self.memo = _Memo(1 + k * (1 + c), flat.device)
        self.edits = PixelEdits(oracle, flat.view(-1, *shape), points, k)

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

    def score(self, imgs: Tensor, pos: Tensor, vals: Tensor) -> tuple[Tensor, Tensor]:
        """``(fitness, success)``, each ``B×P``, of the candidates ``(pos, vals)`` of images ``imgs``
        (the images still running). One query per image not seen before in this run: a candidate
        that paints the same image as an earlier one, in this call or a previous one, reuses its
        result (the model is deterministic).

        Rows are picked with ``index_select``/``index_copy_``, not ``t[index]``: on a busy CPU
        torch's advanced indexing costs milliseconds per call even on a few thousand rows."""
        b, p = pos.shape[:2]
        keys = self.keys(imgs, pos, vals)
        hashes = _hash(keys)
        first = _first_alike(keys, hashes)
        rep = (first == torch.arange(b * p, device=first.device)).nonzero().squeeze(1)
        known, fitness, success = self.memo.lookup(keys.index_select(0, rep), hashes.index_select(0, rep))
        unknown = (~known).nonzero().squeeze(1)
        new = rep.index_select(0, unknown)
        rows = imgs.repeat_interleave(p).index_select(0, new)
        new_fitness, new_success = self.query(rows, pos.flatten(0, 1).index_select(0, new),
                                              vals.flatten(0, 1).index_select(0, new))
        fitness.index_copy_(0, unknown, new_fitness)
        success.index_copy_(0, unknown, new_success)
        running = torch.zeros(len(self.flat), dtype=torch.bool, device=imgs.device).index_fill_(0, imgs, True)
        self.memo.add(keys.index_select(0, new), hashes.index_select(0, new), new_fitness, new_success, running)
        return _spread(fitness, rep, first).view(b, p), _spread(success, rep, first).view(b, p)

    def keys(self, imgs: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
        """``(B·P, 1 + k·(1+C))`` int64: for each candidate, exactly the image it paints.

        The image's index, then the pixels the candidate changes, sorted by position (distinct
        positions paint the same image in any order), each as its position and the bits of its
        values. A pixel painted with the value it already has changes nothing: it becomes
        position −1, values 0, so every candidate that leaves the image as it is has one key, the
        clean image's (on MNIST, values clip to 0 or 1 and most pixels are 0 or 1).
        """
        b, p, k = pos.shape
        c = self.shape[0]
        vals = vals.to(self.flat.dtype) + 0.0  # -0.0 -> 0.0: both paint the same pixel
        clean = self.flat.index_select(0, imgs).gather(2, pos.view(b, 1, p * k).expand(b, c, p * k))
        same = (vals == clean.view(b, c, p, k).permute(0, 2, 3, 1)).all(dim=3)  # (B, P, k)
        pos, order = torch.where(same, -1, pos).sort(dim=2)
        vals = torch.where(same[..., None], 0.0, vals).gather(2, order[..., None].expand_as(vals))
        bits = vals.view(_BITS[vals.element_size()]).long()
        img = imgs.view(b, 1, 1).expand(b, p, 1)
        return torch.cat([img, pos, bits.flatten(2)], dim=2).flatten(0, 1)

    def query(self, img: Tensor, pos: Tensor, vals: Tensor) -> tuple[Tensor, Tensor]:
        """``(fitness, success)`` of ``R`` candidates: images ``img`` (``R``), positions ``pos``
        (``R×k``), values ``vals`` (``R×k×C``); one query each, at most ``max_batch`` per forward pass."""
        fitness = torch.empty(len(img), device=img.device)
        success = torch.empty(len(img), dtype=torch.bool, device=img.device)
        for start in range(0, len(img), self.max_batch):
            rows = slice(start, start + self.max_batch)
            i = img[rows]
            z = self.edits.logits(i, pos[rows], vals[rows])
            logp = torch.log_softmax(z.float(), dim=1)
            if self.target is None:
                fitness[rows] = -logp.gather(1, self.y[i, None]).squeeze(1)
                success[rows] = z.argmax(dim=1) != self.y[i]
            else:
                fitness[rows] = logp.gather(1, self.target[i, None]).squeeze(1)
                success[rows] = z.argmax(dim=1) == self.target[i]
        return fitness, success


class _Memo:
    """Every candidate evaluated in this run, by its exact key (:meth:`_Context.keys`), with its
    fitness and success: the rows sorted by a 64-bit hash of the key, so a lookup is one
    ``searchsorted``. A hit is confirmed on the whole key: a hash collision costs a query, never a
    wrong fitness. The rows of an image that stopped running are dropped."""

    def __init__(self, width: int, device: torch.device) -> None:
        self.hashes = torch.empty(0, dtype=torch.long, device=device)
        self.keys = torch.empty(0, width, dtype=torch.long, device=device)
        self.fitness = torch.empty(0, device=device)
        self.success = torch.empty(0, dtype=torch.bool, device=device)
        self.running: Tensor | None = None  # the images whose rows are kept

    def lookup(self, keys: Tensor, hashes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(known, fitness, success)`` of each key; ``fitness`` and ``success`` hold meaning where ``known``."""
        if not len(self.hashes):
            return (torch.zeros(len(keys), dtype=torch.bool, device=keys.device),
                    torch.empty(len(keys), device=keys.device),
                    torch.zeros(len(keys), dtype=torch.bool, device=keys.device))
        at = torch.searchsorted(self.hashes, hashes).clamp_(max=len(self.hashes) - 1)
        known = (self.hashes.index_select(0, at) == hashes) & (self.keys.index_select(0, at) == keys).all(dim=1)
        return known, self.fitness.index_select(0, at), self.success.index_select(0, at)

    def add(self, keys: Tensor, hashes: Tensor, fitness: Tensor, success: Tensor, running: Tensor) -> None:
        """Remember new keys; forget those of images not ``running`` (a mask over the run's images)."""
        old = (self.hashes, self.keys, self.fitness, self.success)
        if self.running is not None and not torch.equal(running, self.running):
            kept = running.index_select(0, self.keys[:, 0]).nonzero().squeeze(1)
            old = tuple(t.index_select(0, kept) for t in old)
        self.running = running
        order = hashes.argsort()
        new = tuple(t.index_select(0, order) for t in (hashes, keys, fitness, success))
        self.hashes, self.keys, self.fitness, self.success = _merge_sorted(old, new)


_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}  # a float's bits, by its size in bytes
_FNV_PRIME = 0x100000001B3


def _hash(keys: Tensor) -> Tensor:
    """A 64-bit FNV-1a-style hash of each row of ``keys`` (wrapping int64 arithmetic)."""
    h = torch.zeros(len(keys), dtype=torch.long, device=keys.device)
    for column in keys.unbind(1):
        h = (h ^ column) * _FNV_PRIME
    return h


def _first_alike(keys: Tensor, hashes: Tensor) -> Tensor:
    """For each row, the first row with the same key (itself if none before it). Rows are grouped
    by hash and checked on the whole key: a row that collides with its group's first is its own."""
    _, group = torch.unique(hashes, return_inverse=True)
    index = torch.arange(len(keys), device=keys.device)
    first = torch.full_like(index, len(keys)).scatter_reduce_(0, group, index, reduce="amin").index_select(0, group)
    return torch.where((keys.index_select(0, first) == keys).all(dim=1), first, index)


def _spread(values: Tensor, rep: Tensor, first: Tensor) -> Tensor:
    """The values of rows ``rep`` given to every row, through each row's ``first`` alike."""
    return values.new_empty(len(first)).index_copy_(0, rep, values).index_select(0, first)


def _merge_sorted(old: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Merge two tables, each sorted by its first column, into one sorted table, without re-sorting."""
    n = len(old[0]) + len(new[0])
    at = torch.searchsorted(old[0], new[0]) + torch.arange(len(new[0]), device=new[0].device)
    stays = torch.ones(n, dtype=torch.bool, device=at.device).index_fill_(0, at, False).nonzero().squeeze(1)
    return tuple(o.new_empty(n, *o.shape[1:]).index_copy_(0, at, m).index_copy_(0, stays, o)
                 for o, m in zip(old, new, strict=True))


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
