"""Which path One-Pixel and Square score their edits on (advrobust.runtime.path_cost) depends on the
model's shapes and the rows per call only, never on a clock: the paths round differently, so a timed
choice could make one seed give two results. Each run below gets a CPU clock that makes a different
path look faster; the path taken and the result must not change."""

from __future__ import annotations

import itertools
import time

import pytest
import torch

import advrobust as ar
from advrobust.attacks.one_pixel import OnePixel
from advrobust.attacks.square import Square
from advrobust.models.architectures import create
from advrobust.models.zoo import SHAPES, build
from advrobust.runtime import local_forward as lf
from advrobust.runtime import path_cost
from advrobust.runtime import square_edits as se

# increments of a fake CPU clock: the first of two timed runs looks quick, then the second does
CLOCKS = {"first-quick": (1.0, 1.0, 1.0, 5.0), "second-quick": (1.0, 5.0, 1.0, 1.0)}


def _fake_clock(monkeypatch: pytest.MonkeyPatch, pattern: tuple[float, ...]) -> None:
    steps = itertools.cycle(pattern)
    now = [0.0]

    def process_time() -> float:
        now[0] += next(steps)
        return now[0]

    monkeypatch.setattr(time, "process_time", process_time)


def _images(n: int, shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(3))


def _same(a, b) -> None:
    assert torch.equal(a.x_adv, b.x_adv)
    assert torch.equal(a.success, b.success)
    assert torch.equal(a.queries, b.queries)


@pytest.mark.parametrize("name", ["batch-norm", "sequential"])
def test_one_pixel_takes_one_path_and_gives_one_result_whatever_the_clock(monkeypatch, name):
    """On these models both the crop network and the changed regions match the plain model (the
    batch-norm CNN's two paths cost about the same: a timed choice flipped between runs)."""
    model = build(name, SHAPES["mnist"], seed=2).eval()
    x = _images(4, SHAPES["mnist"])
    with torch.no_grad():
        y = model(x).argmax(1)
    attack = OnePixel(ar.L0(pixels=1), population=40, generations=3, seed=5)
    paths, results = [], []
    for pattern in CLOCKS.values():
        _fake_clock(monkeypatch, pattern)
        local = lf.local_forward(model, x)
        assert local is not None and local.crop.forward is not local.crop.network  # the crop network held
        paths.append(local.regions is None)
        results.append(attack(model, x, y))
        monkeypatch.undo()
    assert paths[0] == paths[1]
    _same(*results)


def test_square_scores_each_call_on_one_path_whatever_the_clock(monkeypatch):
    """Square's calls on the edits (their rows, in order) and its result are the same under clocks
    that favour either path."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create("mnist-cnn", 10, (1, 28, 28)).eval()
    x = _images(64, (1, 28, 28))
    with torch.no_grad():
        y = model(x).argmax(1)
    call = se.SquareEdits.__call__
    runs = []
    for pattern in CLOCKS.values():
        calls: list[int] = []

        def counted(self, img, *rest, calls=calls):
            calls.append(len(img))
            return call(self, img, *rest)

        monkeypatch.setattr(se.SquareEdits, "__call__", counted)
        _fake_clock(monkeypatch, pattern)
        runs.append((Square(ar.Linf(eps=0.02), queries=120, seed=1)(model, x, y), calls))
        monkeypatch.undo()
    (first, first_calls), (second, second_calls) = runs
    assert first_calls == second_calls and len(first_calls) > 50, "the late, small squares run on the edits"
    _same(first, second)


def test_the_cost_model_grows_with_the_work_and_pays_its_overheads():
    """Modelled time grows with rows and with every kind of work; the changed regions' per-call
    overhead makes whole images the cheaper path for a handful of rows, while for hundreds of one-pixel
    squares (a fraction of the model's multiply-adds) the regions are."""
    work = path_cost.Work(macs=1e6, moved=1e3, values=1e3, operations=10)
    for rates in (path_cost.WHOLE, path_cost.CROP, path_cost.REGIONS):
        assert rates.seconds(work, 2) > rates.seconds(work, 1) > 0
        more = path_cost.Work(macs=2e6, moved=2e3, values=2e3, operations=20)
        assert rates.seconds(more, 1) > rates.seconds(work, 1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create("mnist-cnn", 10, (1, 28, 28)).eval()
    edits = se.square_edits(model, _images(8, (1, 28, 28)))
    assert edits is not None
    assert not edits.cheaper(1, 1) and edits.cheaper(1, 512)
    assert all(edits.cheaper(side, rows) <= edits.cheaper(side, 4 * rows) for side in edits.sides for rows in (1, 8))
