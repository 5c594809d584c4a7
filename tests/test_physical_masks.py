"""Masks, the masked threat model, NPS/TV and palettes: the properties that can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import advrobust as ar
from advrobust.errors import InputError
from advrobust.masked import Masked
from advrobust.masks import check_mask, coverage, disc, eyeglasses, from_png, rectangle
from advrobust.printability import check_palette, default_palette, load_palette, nps, total_variation


def test_rectangle_and_disc_select_the_right_pixels() -> None:
    m = rectangle((6, 8), (2, 1, 5, 3))
    assert m.shape == (1, 1, 6, 8) and int(m.sum()) == 3 * 2
    assert bool(m[0, 0, 1:3, 2:5].all())
    d = disc((11, 11), (5.5, 5.5), 2.0)
    assert int(d.sum()) == 13 and d[0, 0, 5, 5] == 1 and d[0, 0, 0, 0] == 0


def test_eyeglasses_cover_about_the_papers_share_of_the_face_and_stay_in_its_box() -> None:
    box = (20, 10, 100, 110)
    m = eyeglasses((128, 128), [box, (0, 0, 64, 64)])
    assert m.shape == (2, 1, 128, 128)
    assert 0.05 <= coverage(m[:1], box) <= 0.08  # Sharif et al.: frames cover ~6.5% of the face
    rows, cols = m[0, 0].nonzero(as_tuple=True)
    assert int(cols.min()) >= 20 and int(cols.max()) < 100 and int(rows.min()) >= 10 and int(rows.max()) < 110
    assert int(rows.max()) < 10 + 0.6 * 100  # on the upper half of the face, around the eyes
    assert not torch.equal(m[0], m[1])  # placed per face


def test_png_mask_round_trip_and_grey_needs_a_threshold(tmp_path: Path) -> None:
    from PIL import Image

    arr = torch.zeros(10, 12, dtype=torch.uint8)
    arr[2:5, 3:9] = 255
    Image.fromarray(arr.numpy()).save(tmp_path / "m.png")
    m = from_png(tmp_path / "m.png")
    assert m.shape == (1, 1, 10, 12) and int(m.sum()) == 18
    arr[0, 0] = 128
    Image.fromarray(arr.numpy()).save(tmp_path / "grey.png")
    with pytest.raises(InputError, match="not binary"):
        from_png(tmp_path / "grey.png")
    assert int(from_png(tmp_path / "grey.png", threshold=0.4).sum()) == 19


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.zeros(28, 28), "empty"),
        (torch.full((28, 28), 0.5), "not binary"),
        (torch.ones(27, 28), "27×28 but the images are 28×28"),
        (torch.ones(2, 28, 28), "2 channels"),
        ([[1, 0]], "torch.Tensor"),
    ],
)
def test_bad_masks_are_one_line_errors(mask, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        check_mask(mask, (4, 1, 28, 28))
    assert "\n" not in str(err.value)


def test_bad_mask_reaches_the_user_through_the_attack(linear_model) -> None:
    x, y = torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2])
    with pytest.raises(InputError, match="but the images are 4×4"):
        ar.attacks.PGD(Masked(torch.ones(5, 5)), steps=2)(linear_model, x, y)


@pytest.mark.parametrize("inner", [None, ar.L2(eps=2.0), ar.L1(eps=3.0)])
def test_masked_attack_changes_nothing_outside_the_mask_exactly(small_cnn, mnist_batch, inner) -> None:
    x, y = mnist_batch[0][:40], mnist_batch[1][:40]
    mask = rectangle((28, 28), (8, 8, 20, 20))
    threat = Masked(mask, inner)
    res = ar.attacks.PGD(threat, steps=20)(small_cnn, x, y)
    outside = (1 - mask).bool().expand_as(x)
    assert torch.equal(res.x_adv[outside], x[outside])  # bit for bit
    assert bool(threat.contains(res.x_adv, x).all())
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    if inner is None:
        assert res.success_rate > 0.3  # a 12×12 unbounded square breaks many digits
    else:
        assert float(res.norm.max()) <= inner.eps * (1 + 1e-5)


def test_masked_projection_is_exact_and_contains_detects_a_leak() -> None:
    mask = rectangle((5, 5), (1, 1, 3, 4))
    threat = Masked(mask)
    x = torch.rand(2, 3, 5, 5)
    v = torch.rand(2, 3, 5, 5) * 3 - 1
    p = threat.project(v, x)
    inside = mask.bool().expand_as(x)
    assert torch.equal(p[~inside], x[~inside])
    assert torch.equal(p[inside], v.clamp(0, 1)[inside])
    leaked = p.clone()
    leaked[0, 0, 0, 0] += 1e-7 if leaked[0, 0, 0, 0] < 0.5 else -1e-7
    assert not bool(threat.contains(leaked, x)[0])


def test_masked_threat_keeps_the_inner_norm_and_budget() -> None:
    t = Masked(torch.ones(4, 4), ar.L2(eps=0.5))
    assert t.name == "l2" and t.eps == 0.5
    assert t.with_eps(1.0).eps == 1.0 and isinstance(t.with_eps(1.0), Masked)
    with pytest.raises(InputError):
        Masked(torch.ones(4, 4), ar.L0(eps=3))


def test_nps_is_zero_on_palette_colours_and_positive_otherwise() -> None:
    palette = default_palette()
    gen = torch.Generator().manual_seed(0)
    texture = palette[torch.randint(0, len(palette), (48,), generator=gen)].T.reshape(3, 6, 8)
    for reduction in ("min", "product"):
        assert float(nps(texture, palette, reduction=reduction)) == pytest.approx(0.0, abs=1e-6)
    off = texture.clone()
    off[:, 2, 3] = torch.tensor([0.2, 0.6, 0.75])
    assert float(nps(off, palette)) > 1e-3
    assert float(nps(off, palette, reduction="product")) > 0
    grey = torch.full((1, 4, 4), 0.3)  # a grey texture is compared as (v, v, v): 0.3 is in the palette
    assert float(nps(grey, palette)) == pytest.approx(0.0, abs=1e-6)
    assert float(nps(grey + 0.1, palette)) > 1e-3


def test_nps_and_tv_have_gradients_and_tv_is_zero_on_flat_textures() -> None:
    t = torch.rand(3, 6, 6, requires_grad=True)
    (nps(t) + total_variation(t)).backward()
    assert t.grad is not None and bool(torch.isfinite(t.grad).all()) and float(t.grad.abs().sum()) > 0
    assert float(total_variation(torch.full((3, 6, 6), 0.4))) == pytest.approx(0.0, abs=1e-6)
    stripes = torch.zeros(1, 6, 6)
    stripes[..., ::2] = 1
    assert float(total_variation(stripes)) > float(total_variation(stripes * 0.5)) > 0


def test_user_palette_csv(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("r,g,b\n# measured\n255,0,0\n0,128,255\n")
    pal = load_palette(tmp_path / "p.csv")
    assert torch.allclose(pal, torch.tensor([[1.0, 0, 0], [0, 128 / 255, 1]]))
    assert float(nps(torch.tensor([1.0, 0, 0]).reshape(3, 1, 1), pal)) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "holds no colours"), ("1,2\n", "expected three numbers"), ("1,2,x\n3,4,5\n", None),
     ("10,20,300\n", "0–255"), ("0,0,0\n1,2,three\n", "line 2")],
)
def test_bad_palettes_are_one_line_errors(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "p.csv"
    path.write_text(text)
    if message is None:  # a first line that is not numbers is a header
        assert load_palette(path).shape == (1, 3)
        return
    with pytest.raises(InputError, match=message) as err:
        load_palette(path)
    assert "\n" not in str(err.value)


def test_bad_palette_tensors() -> None:
    with pytest.raises(InputError, match="shape"):
        check_palette(torch.rand(4, 2))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        check_palette(torch.tensor([[0.0, 2.0, 0.0]]))
    with pytest.raises(InputError, match="does not exist"):
        load_palette("/nonexistent/p.csv")
