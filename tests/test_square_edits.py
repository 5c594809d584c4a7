"""Square's proposals scored on the changed regions (advrobust.runtime.square_edits): the same function
as the model for every side offered, on images that change as proposals are accepted, refused when
wrong, and used by Square without changing what it finds."""

from __future__ import annotations

import pytest
import torch

import advrobust as ar
from advrobust.attacks.square import Square
from advrobust.models.architectures import create
from advrobust.models.zoo import SHAPES, build
from advrobust.runtime import RuntimePolicy
from advrobust.runtime import square_edits as se
from advrobust.tensors import painted_squares

EPS = 0.1


def _seeded(make) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return make().eval()


MODELS = {
    "mnist-cnn": lambda: (_seeded(lambda: create("mnist-cnn", 10, (1, 28, 28), width=8)), (1, 28, 28)),
    "residual-mnist": lambda: (build("residual", SHAPES["mnist"], seed=1).eval(), SHAPES["mnist"]),
    "global-pool-rgb32": lambda: (build("global-pool", SHAPES["rgb32"], seed=1).eval(), SHAPES["rgb32"]),
    "small-resnet": lambda: (create("small-resnet", 10, (3, 32, 32), seed=0).eval(), (3, 32, 32)),
    "sequential-mnist": lambda: (build("sequential", SHAPES["mnist"], seed=1).eval(), SHAPES["mnist"]),
}


def _squares(n: int, shape: tuple[int, ...], side: int, rows: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    _, h, w = shape
    img = torch.randint(0, n, (rows,), generator=gen)
    top = torch.randint(0, h - side + 1, (rows,), generator=gen)
    left = torch.randint(0, w - side + 1, (rows,), generator=gen)
    return img, top, left, torch.rand(rows, shape[0], side, side, generator=gen)


def _agrees(got: torch.Tensor, want: torch.Tensor, unedited: torch.Tensor) -> None:
    error, change = float((got - want).abs().max()), float((want - unedited).abs().max())
    assert error < 1e-4 and error < change / 20, (error, change)  # far below what a square changes


@pytest.mark.parametrize("name", list(MODELS))
def test_square_edits_are_the_model_for_the_sides_offered(name):
    model, shape = MODELS[name]()
    base = torch.rand(4, *shape, generator=torch.Generator().manual_seed(0))
    edits = se.square_edits(model, base)
    assert edits is not None, f"{name} is a graph of local layers into a linear boundary: it must be accepted"
    assert edits.offers(1) and edits.offers(3), sorted(edits.sides)
    assert not edits.offers(shape[1] - 1)  # the largest squares change most of the last activation
    with torch.no_grad():
        for side in sorted({1, 2, 3, 4, 6, max(edits.sides)}):  # Square's late sides, and the largest offered
            img, top, left, patch = _squares(len(base), shape, side, 32, seed=side)
            want = model(painted_squares(base.index_select(0, img), top, left, patch))
            _agrees(edits(img, top, left, patch), want, model(base.index_select(0, img)))


@pytest.mark.parametrize("name", ["mnist-cnn", "residual-mnist", "sequential-mnist"])
def test_square_edits_follow_accepted_proposals(name):
    """After ``keep`` (an accepted proposal pasted in) and ``update`` (an image replaced), later
    squares are scored on the new images, exactly (the sequential CNN's 5×5 convolution runs from the
    change for small squares: its kept unedited output must follow too)."""
    model, shape = MODELS[name]()
    base = torch.rand(6, *shape, generator=torch.Generator().manual_seed(1))
    edits = se.square_edits(model, base)
    assert edits is not None
    with torch.no_grad():
        for step in range(6):  # sides alternate: each one's pasted regions must serve the others
            side = (3, 2, 1)[step % 3]
            img, top, left, patch = _squares(len(base), shape, side, len(base), seed=10 + step)
            img = torch.randperm(len(base), generator=torch.Generator().manual_seed(step))
            edits(img, top, left, patch)
            kept = torch.tensor([0, 2, 3])
            edits.keep(kept)
            base[img[kept]] = painted_squares(base.index_select(0, img[kept]), top[kept], left[kept], patch[kept])
            fresh = torch.rand(1, *shape, generator=torch.Generator().manual_seed(100 + step))
            edits.update(img[1:2], fresh)
            base[img[1]] = fresh[0]
            probe = _squares(len(base), shape, 2, 32, seed=50 + step)
            want = model(painted_squares(base.index_select(0, probe[0]), *probe[1:]))
            _agrees(edits(*probe), want, model(base.index_select(0, probe[0])))


def test_wrong_square_edits_are_refused(monkeypatch):
    model, shape = MODELS["mnist-cnn"]()
    base = torch.rand(4, *shape)
    call = se.SquareEdits.__call__
    monkeypatch.setattr(se.SquareEdits, "__call__", lambda self, *a: call(self, *a) + 0.01)
    assert se.square_edits(model, base) is None
    monkeypatch.undo()
    assert se.square_edits(model, base) is not None
    small = create("small-resnet", 3, (1, 8, 8), seed=0).eval()  # on 8×8 a square changes nearly every value
    assert se.square_edits(small, torch.rand(2, 1, 8, 8)) is None


def _points(mnist_batch, every: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """An MNIST CNN of the default architecture (random weights) and digits labelled as it
    classifies them: some break at the budget, some do not."""
    model = MODELS["mnist-cnn"]()[0]
    x = mnist_batch[0][::every]
    with torch.no_grad():
        return model, x, model(x).argmax(1)


def _square(model, x, y, spy: list | None = None, monkeypatch=None, **policy):
    if spy is not None:
        call = se.SquareEdits.__call__

        def counted(self, img, *rest):
            spy.append(len(img))
            return call(self, img, *rest)

        monkeypatch.setattr(se.SquareEdits, "__call__", counted)
    attack = Square(ar.Linf(eps=EPS), queries=300)
    return attack(model, x, y, runtime=RuntimePolicy(**policy))


def test_square_on_the_edits_finds_what_it_finds_on_whole_images(mnist_batch, monkeypatch):
    """The edits compute the model's function: Square's trajectory, queries and result are those of
    the whole-image path (which ``fast=False`` forces), and every success holds on the plain model."""
    model, x, y = _points(mnist_batch, 5)
    monkeypatch.setattr(se.SquareEdits, "cheaper", lambda self, side, rows: True)  # a tiny batch
    calls: list[int] = []
    fast = _square(model, x, y, calls, monkeypatch)
    assert len(calls) > 100, "the late, small squares must run on the edits"
    plain = _square(model, x, y, fast=False)
    assert 0 < int(fast.success.sum()) < len(y)
    assert torch.equal(fast.success, plain.success)
    assert torch.equal(fast.queries, plain.queries)
    assert torch.allclose(fast.x_adv, plain.x_adv)
    with torch.no_grad():
        assert bool((model(fast.x_adv).argmax(1) != y)[fast.success].all())
    assert float((fast.x_adv - x).abs().max()) <= EPS + 1e-6


def test_a_side_whose_edits_disagree_runs_on_whole_images(mnist_batch, monkeypatch):
    """Edits that pass the probe but disagree with the plain model on a side's first use are never
    used for it: Square's result stays the whole-image path's."""
    model, x, y = _points(mnist_batch, 10)
    monkeypatch.setattr(se.SquareEdits, "cheaper", lambda self, side, rows: True)
    plain = _square(model, x, y, fast=False)
    build = se.square_edits

    def wrong_after_probe(model, base):
        edits = build(model, base)
        if edits is not None:
            call = type(edits).__call__
            edits.__class__ = type("Wrong", (type(edits),), {"__call__": lambda self, *a: call(self, *a) + 0.5})
        return edits

    from advrobust.runtime import fast_forward

    monkeypatch.setattr(fast_forward, "square_edits", wrong_after_probe)
    wrong = _square(model, x, y)
    assert torch.equal(wrong.success, plain.success)
    assert torch.equal(wrong.queries, plain.queries)
