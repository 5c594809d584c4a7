"""Universal patches and masked textures, their physical evaluation and export."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import advrobust as ar
from advrobust.attacks.masked import attack_per_mask
from advrobust.attacks.patch import RandomPlacement, UniversalMask, UniversalPatch
from advrobust.errors import InputError
from advrobust.evaluation.physical import accuracy_under, perturbation_success, texture_success
from advrobust.masks import rectangle
from advrobust.report.printable import printable_texture, save_preview, save_printable
from advrobust.transforms import Brightness, Identity


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", ["square", "circle"])
def test_a_placed_patch_lies_wholly_inside_its_region(shape: str) -> None:
    placement = RandomPlacement(area=0.1, scale_min=0.5, rotation=45, shape=shape, region=(0.1, 0.2, 0.9, 1.0))
    x = torch.rand(300, 3, 40, 50, generator=gen(1))
    texture = torch.rand(*placement.texture_shape((3, 40, 50)), generator=gen(2))
    params = placement.sample(x, torch.arange(300), gen(3))
    alpha, _ = placement.alpha_and_pixels(x, texture, params)
    assert float(alpha[..., :8, :].sum()) == 0 and float(alpha[..., :, :5].sum()) == 0  # above / left of region
    assert float(alpha[..., :, 45:].sum()) == 0
    # nothing is cut off at the region's edge: the pasted area is the patch's whole area (to bilinear edges)
    per_shape = 1.0 if shape == "square" else math.pi / 4
    expected = per_shape * params["side"].square()
    assert torch.allclose(alpha.sum(dim=(1, 2, 3)), expected, rtol=0.12)
    pasted = placement.paste(x, texture, params)
    assert float(pasted.min()) >= 0 and float(pasted.max()) <= 1
    # outside the patch the image is unchanged
    assert torch.equal(pasted[alpha.expand_as(x) == 0], x[alpha.expand_as(x) == 0])


def test_patch_too_big_for_its_region_is_an_error() -> None:
    with pytest.raises(InputError, match="does not fit"):
        RandomPlacement(area=0.5, rotation=45).sample(torch.rand(2, 1, 10, 10), torch.arange(2), gen())
    for bad in ({"area": 0}, {"scale_min": 0}, {"shape": "star"}, {"region": (0.5, 0, 0.2, 1)}):
        with pytest.raises(InputError):
            RandomPlacement(**bad)


def test_patch_training_is_seeded_reports_progress_and_stays_in_the_box(small_cnn, mnist_batch) -> None:
    x, y = mnist_batch
    seen: list[tuple[int, dict]] = []
    attack = UniversalPatch(0.15, steps=6, batch_size=16, nps_weight=0.1, tv_weight=0.1)
    a = attack.fit(small_cnn, x, y, target=3, callback=lambda step, m: seen.append((step, m)))
    b = attack.fit(small_cnn, x, y, target=3)
    c = UniversalPatch(0.15, steps=6, batch_size=16, nps_weight=0.1, tv_weight=0.1, seed=1).fit(small_cnn, x, y, 3)
    assert torch.equal(a.texture, b.texture) and not torch.equal(a.texture, c.texture)
    assert float(a.texture.min()) >= 0 and float(a.texture.max()) <= 1
    assert [s for s, _ in seen] == list(range(6)) and {"objective", "nps", "tv", "success"} <= set(seen[0][1])
    assert a.nps > 0 and a.tv > 0 and a.target == 3
    assert all(p.grad is None for p in small_cnn.parameters())
    assert all(p.requires_grad for p in small_cnn.parameters())


def test_targeted_patch_beats_a_random_patch_of_the_same_size(small_cnn, mnist_split) -> None:
    x_train, y_train, x_test, y_test = mnist_split
    attack = UniversalPatch(0.2, steps=60, batch_size=32, lr=0.1, transform=Identity(), loss="margin",
                            region=(0.1, 0.1, 0.9, 0.9), rotation=10)
    patch = attack.fit(small_cnn, x_train[:1000], y_train[:1000], target=8)
    control = attack.fit(small_cnn, x_train[:1000], y_train[:1000], target=8)
    control.texture = torch.rand(patch.texture.shape, generator=gen(5))
    held_out = slice(0, 200)
    trained = texture_success(small_cnn, patch, x_test[held_out], y_test[held_out], transform=Identity(), n_draws=3)
    random = texture_success(small_cnn, control, x_test[held_out], y_test[held_out], transform=Identity(), n_draws=3)
    assert trained.physical > random.physical + 0.15
    assert trained.n_points == int((y_test[held_out] != 8).sum())  # the target's own images are left out


def test_digital_pgd_loses_success_under_transformations(small_cnn, mnist_batch) -> None:
    x, y = mnist_batch[0][:60], mnist_batch[1][:60]
    res = ar.attacks.PGD(ar.Linf(eps=0.15), steps=20)(small_cnn, x, y)
    ok = res.success
    r = perturbation_success(small_cnn, x[ok], res.x_adv[ok], y[ok], n_draws=10, name="pgd")
    assert r.digital == 1.0 and r.physical < 0.9 and 0 <= r.baseline <= r.physical
    assert len(r.per_point) == int(ok.sum())
    curve = perturbation_success(small_cnn, x[ok], res.x_adv[ok], y[ok], n_draws=4, strengths=[0.0, 1.0]).curve
    assert curve[0] == (0.0, 1.0)  # at strength 0 nothing changes



class _CornerReader(torch.nn.Module):
    """Class 1 where the top-left pixel is above one half, else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x[:, 0, 0, 0] - 0.5
        return torch.stack([-bright, bright], dim=1)


def test_accuracy_under_a_transformation_counts_what_it_alone_breaks() -> None:
    """Brightness ±1 moves a black or white corner across one half on a quarter of the draws (b < −½
    for white, b > ½ for black): 100% read correctly as they are, ~75% under the draws."""
    x = torch.zeros(10, 1, 4, 4)
    x[::2, 0, 0, 0] = 1.0
    y = torch.tensor([1, 0] * 5)
    as_is, drawn = accuracy_under(_CornerReader(), x, y, Brightness(delta=1.0), n_draws=200, seed=3)
    assert as_is == 1.0 and 0.70 < drawn < 0.80
    assert accuracy_under(_CornerReader(), x, y, Identity(), n_draws=5) == (1.0, 1.0)

def test_per_image_masks_change_only_their_own_support(small_cnn, mnist_batch) -> None:
    x, y = mnist_batch[0][:12], mnist_batch[1][:12]
    masks = torch.cat([rectangle((28, 28), (4, 4, 16, 16)), rectangle((28, 28), (12, 12, 24, 24))])
    masks = masks.repeat_interleave(6, dim=0)
    res = attack_per_mask(ar.attacks.PGD(ar.Linf(eps=1.0), steps=10), small_cnn, x, y, masks)
    outside = (1 - masks).bool().expand_as(x)
    assert torch.equal(res.x_adv[outside], x[outside])
    changed = (res.x_adv != x).flatten(1).any(dim=1)
    assert bool(changed[~(small_cnn(x).argmax(1) != y)].all())


def test_export_png_has_the_physical_size_and_dpi(tmp_path: Path) -> None:
    from PIL import Image

    texture = torch.rand(3, 9, 9, generator=gen())
    info = save_printable(texture, tmp_path / "patch.png", width_mm=50, dpi=300)
    with Image.open(info.path) as img:
        assert img.size == (591, 591) and info.width_px == 591
        assert img.info["dpi"][0] == pytest.approx(300, abs=0.1)
    assert info.width_mm == pytest.approx(50, abs=0.1)
    info = save_printable(texture[:1], tmp_path / "in.png", width_in=2, dpi=150, alpha=torch.ones(9, 9))
    with Image.open(info.path) as img:
        assert img.size == (300, 300) and img.mode == "RGBA"
    with pytest.raises(InputError):
        save_printable(texture, tmp_path / "x.png", width_mm=10, width_in=1)
    preview = save_preview([torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)], tmp_path / "preview.png", scale=2)
    with Image.open(preview) as img:
        assert img.size == (3 * 58 + 2, 2 * 58 + 2)


def test_masked_texture_exports_its_mask_bounding_box(small_cnn, mnist_batch) -> None:
    mask = rectangle((28, 28), (3, 5, 10, 9))
    tex = UniversalMask(mask, steps=1, batch_size=4).fit(small_cnn, *mnist_batch)
    rgb, alpha = printable_texture(tex)
    assert rgb.shape == (1, 4, 7) and alpha is not None and bool(alpha.bool().all())
