"""One-Pixel attack (Su et al. 2019): exactly k pixels, confirmed successes, planted pixels, targets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks import one_pixel
from advrobust.attacks.context import RunContext
from advrobust.attacks.one_pixel import OnePixel, _distinct_parents, one_pixel_all_targets
from advrobust.attacks.oracle import Oracle
from advrobust.errors import InputError, ModelAccessError
from advrobust.models.blackbox import LabelModel, ScoreModel
from advrobust.runtime import RuntimePolicy


class PixelTrigger(nn.Module):
    """``z_0 = 0``; ``z_c = 10·(mean_channels x[r_c, c_c] − 0.5)``: class ``c ≥ 1`` wins exactly
    when its own pixel is brighter than 0.5 (and brighter than the other triggers); every other
    pixel is irrelevant."""

    def __init__(self, pixels: list[tuple[int, int]]) -> None:
        super().__init__()
        self.pixels = pixels
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(dim=1)
        triggers = [self.scale * (g[:, r, c] - 0.5) for r, c in self.pixels]
        return torch.stack([torch.zeros_like(triggers[0]), *triggers], dim=1)


def _dark(n: int, c: int = 1, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Images with continuous values in (0.05, 0.3): class 0 of :class:`PixelTrigger`."""
    gen = torch.Generator().manual_seed(seed)
    return 0.05 + 0.25 * torch.rand(n, c, size, size, generator=gen)


def _changed_pixels(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``N×H×W``: which pixels differ in any channel."""
    return (x_adv != x).any(dim=1)


@pytest.mark.parametrize(("k", "channels"), [(1, 1), (3, 1), (2, 3)])
def test_changes_exactly_k_pixels_and_nothing_else(k, channels):
    model = PixelTrigger([(3, 5)])
    x = _dark(6, channels, seed=k)
    y = torch.zeros(6, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=k), population=20, generations=3)(model, x, y)
    # continuous clean values never equal a candidate's, and colliding pixels are repaired: exactly k
    changed = _changed_pixels(res.x_adv, x)
    assert changed.flatten(1).sum(dim=1).tolist() == [k] * 6
    assert res.norm.tolist() == [float(k)] * 6
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1


def test_finds_the_planted_pixel():
    model = PixelTrigger([(3, 5)])
    x, y = _dark(8), torch.zeros(8, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=1), population=60, generations=30)(model, x, y)
    assert bool(res.success.all())
    changed = _changed_pixels(res.x_adv, x)
    assert bool(changed[:, 3, 5].all()) and changed.flatten(1).sum(dim=1).tolist() == [1] * 8
    # confirmed: the model itself labels every reported success differently
    assert bool((model(res.x_adv).argmax(dim=1) != y).all())
    # early stop: the budget 60 × 31 is rarely spent, and never exceeded (+1: the clean query)
    assert bool((res.queries <= 1 + 60 * 31).all())
    assert float(res.queries.float().mean()) < 60 * 31


def test_targeted_hits_its_target_and_all_targets():
    pixels = [(1, 1), (3, 5), (6, 2)]
    model = PixelTrigger(pixels)
    x, y = _dark(4), torch.zeros(4, dtype=torch.long)
    target = torch.tensor([1, 2, 3, 2])
    res = OnePixel(ar.L0(pixels=1), population=60, generations=40)(model, x, y, target)
    assert bool(res.success.all())
    assert torch.equal(model(res.x_adv).argmax(dim=1), target)
    for i, t in enumerate(target.tolist()):
        r, c = pixels[t - 1]
        assert bool(_changed_pixels(res.x_adv, x)[i, r, c])

    every = one_pixel_all_targets(model, x[:2], y[:2], population=60, generations=40)
    assert every.targets.tolist() == [[1, 2, 3], [1, 2, 3]]
    assert bool(every.success.all())
    for t in (1, 2, 3):
        sub = every.for_target(t)
        assert len(sub) == 2 and torch.equal(model(sub.x_adv).argmax(dim=1), torch.full((2,), t))


def test_failures_are_not_reported_as_successes():
    """A model no pixel can fool: every point fails, within the budget, with at most one pixel changed."""

    class Unfoolable(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x.flatten(1).mean(dim=1)
            return torch.stack([1.0 + s, s], dim=1)  # class 0 always wins by 1; its margin still varies

    x, y = _dark(3), torch.zeros(3, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=1), population=10, generations=5)(Unfoolable(), x, y)
    assert not bool(res.success.any())
    assert bool((res.queries <= 1 + 10 * 6).all()) and bool((res.queries > 1 + 10).all())
    assert bool((res.norm <= 1).all())


def test_deterministic_for_a_seed(small_cnn, mnist_batch):
    x, y = mnist_batch[0][:4], mnist_batch[1][:4]
    attack = OnePixel(ar.L0(pixels=1), population=16, generations=4, seed=7)
    a, b = attack(small_cnn, x, y), attack(small_cnn, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    c = OnePixel(ar.L0(pixels=1), population=16, generations=4, seed=8)(small_cnn, x, y)
    assert not torch.equal(a.x_adv, c.x_adv)
    # the result does not depend on how candidates are split into forward passes
    d = OnePixel(ar.L0(pixels=1), population=16, generations=4, seed=7, max_batch=7)(small_cnn, x, y)
    assert torch.equal(a.x_adv, d.x_adv)
    assert bool((a.norm <= 1).all())


def test_queries_are_counted_honestly_on_a_black_box():
    net = PixelTrigger([(3, 5)])
    box = ScoreModel(net)
    x, y = _dark(5), torch.zeros(5, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=1), population=12, generations=6)(box, x, y)
    # every row the black box evaluated is a counted query, but the final confirmation pass and the
    # randomness probe (one plain pass of the clean batch, compared with the clean query)
    assert box.queries == int(res.queries.sum()) + 2 * len(x)
    with pytest.raises(ModelAccessError):
        OnePixel(ar.L0(pixels=1))(LabelModel(net), x, y)


def test_distinct_parents():
    gen = torch.Generator().manual_seed(0)
    r = _distinct_parents(3, 5, gen, torch.device("cpu"))
    own = torch.arange(5).view(1, 5, 1)
    assert not bool((r == own).any())
    assert bool((r.sort(dim=2).values.diff(dim=2) > 0).all())


def test_bad_configuration_fails_early():
    with pytest.raises(InputError):
        OnePixel(ar.Linf(eps=0.1))
    with pytest.raises(InputError):
        OnePixel(ar.L0(pixels=1), population=3)
    with pytest.raises(InputError):
        OnePixel(ar.L0(pixels=1, per_feature=True))
    oracle = Oracle(RuntimePolicy().runner(PixelTrigger([(0, 0)])), 1, torch.device("cpu"))
    ctx = RunContext(oracle, _dark(1), torch.zeros(1, dtype=torch.long), None, torch.Generator(),
                     torch.zeros(1, dtype=torch.bool))
    with pytest.raises(InputError):
        OnePixel(ar.L0(pixels=65))._run(ctx)


def test_two_pixel_lock_needs_two_pixels():
    """Class 1 wins only when pixels (1, 1) and (6, 6) sum above 1.5: with clean pixels below 0.3,
    k = 1 must fail on every point and k = 2 can succeed; a sweep over the budget reports exactly that."""

    class TwoPixelLock(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            both = x[:, 0, 1, 1] + x[:, 0, 6, 6]
            return torch.stack([torch.zeros_like(both), 10 * (both - 1.5)], dim=1)

    model, x, y = TwoPixelLock(), _dark(4), torch.zeros(4, dtype=torch.long)
    attack = OnePixel(ar.L0(pixels=1), population=60, generations=40)
    sweep = attack.sweep(model, x, y, [1, 2])
    assert not bool(sweep.success[0].any())
    assert bool(sweep.success[1].any())  # DE searches coordinates coarsely: not every point in 60 × 40
    assert bool((sweep.success[1] >= sweep.success[0]).all())


# --- repeated candidates: one query per distinct image (the model is deterministic) ----------------
class Weighted(nn.Module):
    """``z = (0, w·x + bias)``, a sum per row of a few products: exact whatever the batch, so a
    result reused from another forward pass equals the model's own. ``bias = -10``: class 0 always
    wins (``|w·x| < 5``), every run spends all its generations."""

    def __init__(self, channels: int = 1, bias: float = -10.0, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(channels, 3, 3, generator=gen) / 3)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).sum(dim=(1, 2, 3)) + self.bias
        return torch.stack([torch.zeros_like(s), s], dim=1)


def _binary(channels: int = 1) -> torch.Tensor:
    """Four 3×3 images of 0s and 1s, any two at least 3 pixels apart: painted values clip to 0 or 1
    and often equal the pixel's own, so many candidates repeat an image or leave it unchanged."""
    rows = [[0] * 9, [1] * 9, [1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1, 1]]
    return torch.tensor(rows, dtype=torch.float32).view(4, 1, 3, 3).expand(4, channels, 3, 3).clone()


class RowCounter(nn.Module):
    """The model, recording the rows it is sent per clean image (the nearest one: one changed pixel
    never takes an image of :func:`_binary` nearer to another)."""

    def __init__(self, net: nn.Module, clean: torch.Tensor) -> None:
        super().__init__()
        self.net, self.clean = net, clean
        self.seen: list[list[tuple[float, ...]]] = [[] for _ in clean]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        far = (x.flatten(1)[:, None] != self.clean.flatten(1)[None]).sum(dim=2)
        for row, i in zip(x.flatten(1).tolist(), far.argmin(dim=1).tolist(), strict=True):
            self.seen[i].append(tuple(row))
        return self.net(x)

    def rows(self) -> list[int]:
        return [len(rows) for rows in self.seen]

    def repeats(self) -> list[int]:
        """Per clean image: rows that were an image already sent."""
        return [len(rows) - len(set(rows)) for rows in self.seen]

    def unchanged(self) -> list[int]:
        """Per clean image: rows equal to it."""
        return [rows.count(tuple(c.flatten().tolist())) for rows, c in zip(self.seen, self.clean, strict=True)]


def _model_scores(ctx, imgs, pos, vals):
    """Every candidate's ``(fitness, success)`` from the model itself, painted one by one (no reuse,
    no query counted): the reference for ``_Context.score``."""
    c, h, w = ctx.shape
    painted = []
    for i, img in enumerate(imgs.tolist()):
        for j in range(pos.shape[1]):
            x = ctx.flat[img].clone()
            for q, v in zip(pos[i, j].tolist(), vals[i, j], strict=True):
                x[:, q] = v
            painted.append(x.view(c, h, w))
    z = ctx.oracle.model(torch.stack(painted))
    label = (ctx.y if ctx.target is None else ctx.target)[imgs].repeat_interleave(pos.shape[1])
    logp = z.float().log_softmax(dim=1).gather(1, label[:, None]).squeeze(1)
    hit = z.argmax(dim=1) == label
    fitness, success = (-logp, ~hit) if ctx.target is None else (logp, hit)
    return fitness.view(pos.shape[:2]), success.view(pos.shape[:2])


@pytest.mark.parametrize(("k", "channels"), [(1, 1), (2, 1), (2, 3)])
def test_every_reused_result_is_the_models_own(monkeypatch, k, channels):
    score, calls = one_pixel._Context.score, []

    def checked(ctx, imgs, pos, vals):
        fitness, success = score(ctx, imgs, pos, vals)
        ref_fitness, ref_success = _model_scores(ctx, imgs, pos, vals)
        assert torch.equal(fitness, ref_fitness) and torch.equal(success, ref_success)
        calls.append(len(imgs))
        return fitness, success

    monkeypatch.setattr(one_pixel._Context, "score", checked)
    x, y = _binary(channels), torch.zeros(4, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=k), population=8, generations=20)(Weighted(channels), x, y)
    assert calls == [4] * 21
    assert int(res.queries.sum()) < 4 * (1 + 8 * 21)  # some results were reused, and checked above


@pytest.mark.parametrize("bias", [-10.0, -0.2])
def test_queries_are_the_rows_sent_and_no_image_is_sent_twice(bias):
    """bias -10: no image is broken; -0.2: image 2 is adversarial at r = 0 (never attacked), image 0
    is broken early (its results are then forgotten), images 1 and 3 run to the end."""
    x, y = _binary(), torch.zeros(4, dtype=torch.long)
    model = RowCounter(Weighted(bias=bias, seed=1), x)
    res = OnePixel(ar.L0(pixels=1), population=10, generations=20)(model, x, y)
    assert res.success.tolist() == ([False] * 4 if bias < -1 else [True, False, True, False])
    # per image: the clean query and every candidate query the model saw, plus the uncounted randomness
    # probe and confirmation
    assert model.rows() == (res.queries + 2).tolist()
    # no image is sent twice, but the clean image (its query, the probe, then the first candidate that
    # leaves it unchanged) and x_adv (a candidate, then the confirmation)
    attacked = res.queries > 1
    assert bool((torch.tensor(model.repeats()) <= torch.where(attacked, 3, 2)).all())
    assert max(model.unchanged()) == 3 and sum(model.unchanged()) > 8  # unchanged candidates occurred
    # 9 pixels, values clipped to 0 or 1: many repeats (budget: 1 + 10 × 21 per image)
    assert bool((res.queries < 1 + 10 * 21).all())
    if bias < -1:
        assert int(res.queries.sum()) < 0.75 * 4 * (1 + 10 * 21)


@pytest.mark.parametrize("bias", [-10.0, -0.2])
def test_same_result_as_when_every_candidate_is_scored(monkeypatch, bias):
    """Reusing results changes no selection of DE: the run equals one in which the model scores every
    candidate itself (bias -0.2: one image broken at r = 0, one by the search, two never; -10: none)."""
    x, y = _binary(), torch.zeros(4, dtype=torch.long)
    attack = OnePixel(ar.L0(pixels=1), population=10, generations=20, seed=3)
    ours = attack(Weighted(bias=bias, seed=1), x, y)
    monkeypatch.setattr(one_pixel._Context, "score", _model_scores)
    reference = attack(Weighted(bias=bias, seed=1), x, y)
    assert torch.equal(ours.x_adv, reference.x_adv) and torch.equal(ours.success, reference.success)
    assert int(ours.success.sum()) == (0 if bias < -1 else 2)
