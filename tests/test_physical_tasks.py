"""Physical attacks on segmenters and detectors: labels follow the scene's transformation, a texture's
own pixels are not counted, and a universal patch trained through the task beats a random one."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from advrobust.attacks.patch import UniversalMask, UniversalPatch
from advrobust.errors import InputError
from advrobust.evaluation.physical import perturbation_success, texture_success
from advrobust.masks import rectangle
from advrobust.tasks import CLASSIFICATION, Detection, Segmentation, Verification
from advrobust.transforms import Compose, GaussianNoise, Geometric, Identity
from advrobust.transforms.geometric import warp

sys.path.insert(0, str(Path(__file__).parent))
from test_dag import _smooth_threshold_segmenter, _square_detector, per_pixel_linear  # noqa: E402


def _shift(n: int, dx: float, dy: float, size: int) -> dict[str, torch.Tensor]:
    """Geometric parameters of a pure shift by ``(dx, dy)`` pixels of ``size×size`` images."""
    return {"angle": torch.zeros(n), "scale": torch.ones(n), "shift": torch.tensor([[dx / size, dy / size]] * n),
            "corners": torch.zeros(n, 4, 2)}


def test_a_label_map_moves_with_an_integer_shift_and_the_outside_is_ignored():
    shift = Geometric(translation=0.5)
    y = torch.randint(0, 4, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    moved = Segmentation().follow(y, Compose([GaussianNoise(0.1), shift]), [{}, _shift(2, 3, -2, 16)], (16, 16))
    # a pixel at (r, c) shows what was at (r + 2, c − 3)
    assert torch.equal(moved[:, :14, 3:], y[:, 2:, :13])
    assert bool((moved[:, :, :3] == 255).all() and (moved[:, 14:] == 255).all())
    x = y[:, None].float() / 3
    assert torch.allclose(shift.apply(x, _shift(2, 3, -2, 16))[:, 0, :14, 3:], x[:, 0, 2:, :13], atol=1e-5)


def test_a_label_map_follows_a_rotation_and_perspective_as_the_image_does():
    t = Geometric(rotation=30, scale=0.1, translation=0.1, perspective=0.1)
    x = torch.nn.functional.interpolate(torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1)),
                                        size=(32, 32), mode="bilinear", align_corners=False)
    y = (x[:, 0] > 0.5).long()
    params = t.sample(x, torch.Generator().manual_seed(2))
    moved = Segmentation().follow(y, t, params, (32, 32))
    inside = moved != 255
    assert 0.5 < float(inside.float().mean()) < 1.0  # some pixels came from outside the picture
    nearest = (warp(x, t.matrix(params, 32, 32), mode="nearest")[:, 0] > 0.5).long()
    assert torch.equal(nearest[inside], moved[inside])  # each pixel labelled from where the image reads it
    # the interpolated picture differs only along the rims (one pixel off, it would agree on ~89%)
    seen = (t.apply(x, params)[:, 0] > 0.5).long()
    assert float((seen == moved)[inside].float().mean()) > 0.94


def test_boxes_follow_a_quarter_turn_as_the_drawn_box_does():
    t = Geometric(rotation=90)
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 2:6, 3:12] = 1.0  # rows 2..5, columns 3..11: the box (3, 2, 12, 6)
    y = torch.tensor([[[1.0, 3.0, 2.0, 12.0, 6.0], [-1.0, 0, 0, 0, 0]]])
    params = {"angle": torch.tensor([math.pi / 2]), "scale": torch.ones(1), "shift": torch.zeros(1, 2),
              "corners": torch.zeros(1, 4, 2)}
    drawn = t.apply(x, params)[0, 0] > 0.5
    rows, cols = drawn.any(dim=1).nonzero().squeeze(1), drawn.any(dim=0).nonzero().squeeze(1)
    moved = Detection().follow(y, t, params, (16, 16))
    expected = [1.0, float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
    assert moved[0, 0].tolist() == pytest.approx(expected, abs=1e-4)
    assert moved[0, 1, 0] == -1  # padding stays padding


def test_a_box_pushed_mostly_out_of_the_image_is_dropped_and_the_rest_clipped():
    y = torch.tensor([[[1.0, 10.0, 2.0, 16.0, 8.0], [2.0, 0.0, 2.0, 6.0, 8.0]]])
    moved = Detection().follow(y, Geometric(translation=0.5), _shift(1, 4, 0, 16), (16, 16))
    assert moved[0, 0].tolist() == [-1.0, 0.0, 0.0, 0.0, 0.0]  # 2 of its 6 columns left inside
    assert moved[0, 1].tolist() == pytest.approx([2.0, 4.0, 2.0, 10.0, 8.0])


def test_a_textures_own_pixels_are_not_counted_against_a_segmenter():
    # each pixel's class is its own value's: the texture changes only the pixels it covers, which
    # are not the object beneath it, so the counted pixels stay right whatever the texture is
    model = per_pixel_linear()
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(dim=1)
    mask = rectangle((12, 12), (3, 3, 8, 8))
    sticker = UniversalMask(mask, steps=3, transform=Identity()).fit(model, x, y, task="segmentation")
    for texture in (sticker.texture, 1 - x[0]):
        r = texture_success(model, replace(sticker, texture=texture), x, y, transform=Identity(), n_draws=1)
        assert r.metrics["digital"]["pixel_accuracy"] == 1.0 and r.metrics["clean"]["pixel_accuracy"] == 1.0
    # counted as the object, the same pixels would be wrong
    pasted = sticker.apply(x)
    wrong = (model(pasted).argmax(dim=1) != y) & mask[0, 0].bool()
    assert bool(wrong.any()) or torch.equal(pasted, x)


def test_a_box_more_than_half_under_a_texture_is_dropped():
    y = torch.tensor([[[1.0, 0.0, 0.0, 4.0, 4.0], [2.0, 4.0, 4.0, 8.0, 8.0], [-1.0, 0, 0, 0, 0]]])
    covered = torch.zeros(1, 8, 8, dtype=torch.bool)
    covered[0, :3, :4] = True  # 12 of the first box's 16 pixels
    covered[0, 4:6, 4:8] = True  # 8 of the second's 16: half, still there
    hidden = Detection().occlude(y, covered)
    assert hidden[0, 0].tolist() == [-1.0, 0.0, 0.0, 0.0, 0.0] and torch.equal(hidden[0, 1:], y[0, 1:])



def test_occlusion_counts_each_boxs_covered_pixels_as_a_loop_over_the_boxes_does():
    """Random boxes (some reaching outside the picture, some empty) under random coverage: dropped
    exactly when more than half of the box's pixels in the picture are covered."""
    gen = torch.Generator().manual_seed(3)
    n, m, h, w = 6, 5, 20, 24
    corner = torch.rand(n, m, 2, generator=gen) * torch.tensor([w + 6.0, h + 6.0]) - 3
    size = torch.rand(n, m, 2, generator=gen) * 12
    labels = torch.randint(-1, 3, (n, m, 1), generator=gen).float()
    y = torch.cat([labels, corner, corner + size], dim=-1)
    covered = torch.rand(n, h, w, generator=gen) < 0.5
    out = Detection().occlude(y, covered)
    dropped = 0
    for i in range(n):
        for j in range(m):
            x1, y1, x2, y2 = (int(v) for v in y[i, j, 1:].round().clamp_min(0).tolist())
            region = covered[i, y1:y2, x1:x2]
            hide = bool(y[i, j, 0] >= 0) and int(region.sum()) > 0.5 * region.numel()
            dropped += hide
            assert torch.equal(out[i, j], torch.tensor([-1.0, 0, 0, 0, 0]) if hide else y[i, j])
    assert 0 < dropped < int((y[..., 0] >= 0).sum())

def _segmentation_scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 16, 16)
    for i in range(n):
        r, c = torch.randint(2, 10, (2,), generator=gen).tolist()
        x[i, 0, r : r + 5, c : c + 5] = 1.0
    return x, _smooth_threshold_segmenter()(x).argmax(dim=1)


def test_a_universal_patch_through_a_segmenter_beats_a_random_one_and_metrics_are_reported():
    model = _smooth_threshold_segmenter()
    x, y = _segmentation_scenes(64, 4)
    scene = Geometric(rotation=10, translation=0.05)
    patch = UniversalPatch(area=0.1, steps=40, lr=0.1, transform=scene).fit(model, x, y, task=Segmentation())
    assert patch.task.name == "segmentation" and patch.history[-1]["objective"] > patch.history[0]["objective"]
    x_test, y_test = _segmentation_scenes(32, 5)
    trained = texture_success(model, patch, x_test, y_test, transform=scene, n_draws=4, strengths=(0.0, 1.0))
    assert trained.curve_of == "miou" and trained.curve[0][1] > trained.curve[1][1]  # mIoU falls with strength
    noise = torch.rand(patch.texture.shape, generator=torch.Generator().manual_seed(6))
    random = texture_success(model, replace(patch, texture=noise), x_test, y_test, transform=scene, n_draws=4)
    assert set(trained.metrics) == {"clean", "digital", "physical", "baseline"} == set(trained.intervals)
    for key in ("physical", "baseline"):  # a bootstrap over the 32 scenes, each with its 4 draws
        lo, hi = trained.intervals[key]
        assert lo - 1e-9 <= trained.metrics[key]["miou"] <= hi + 1e-9 and hi - lo > 0.005
    assert trained.metrics["clean"]["miou"] == 1.0 and trained.metrics["baseline"]["miou"] < 1.0
    assert trained.metrics["physical"]["miou"] < random.metrics["physical"]["miou"] - 0.02
    for value in (0.0, 0.5):  # a bright patch spills foreground into the background around it: the best
        flat = replace(patch, texture=torch.full_like(patch.texture, value))
        flat_miou = texture_success(model, flat, x_test, y_test, transform=scene, n_draws=4).metrics["physical"]["miou"]
        assert trained.metrics["physical"]["miou"] < flat_miou
    assert trained.metrics["baseline"] == random.metrics["baseline"]  # the same draws for both


def _detection_scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One bright 4×4 object per 16×16 image, on a grid cell; its box as the detector reports it."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 16, 16)
    y = torch.zeros(n, 1, 5)
    for i in range(n):
        r, c = (4 * torch.randint(0, 4, (2,), generator=gen)).tolist()
        x[i, 0, r : r + 4, c : c + 4] = 1.0
        y[i, 0] = torch.tensor([1.0, c - 2, r - 2, c + 6, r + 6]).clamp(0, 16)
    return x, y


def test_a_vanishing_patch_through_a_detector_learns_to_hide_objects():
    model = _square_detector()
    x, y = _detection_scenes(64, 7)
    patch = UniversalPatch(area=0.1, steps=30, lr=0.1, transform=Identity()).fit(model, x, y, target=0,
                                                                                task="detection")
    assert float(patch.texture.mean()) < 0.25  # a dark patch dims the cells it covers
    x_test, y_test = _detection_scenes(32, 8)
    trained = texture_success(model, patch, x_test, y_test, transform=Identity(), n_draws=8)
    bright = texture_success(model, replace(patch, texture=torch.ones_like(patch.texture)), x_test, y_test,
                             transform=Identity(), n_draws=8)
    assert trained.metrics["clean"]["recall"] == 1.0 and trained.intervals == {}  # mAP is not resampled
    assert trained.physical > bright.physical and trained.metrics["physical"]["recall"] < 1.0


def test_dense_physical_targets_and_tasks_without_class_targets_give_one_line_errors():
    model = per_pixel_linear()
    x = torch.rand(2, 1, 6, 6)
    y = model(x).argmax(dim=1)
    with pytest.raises(InputError, match="one class id"):
        perturbation_success(model, x, x, y, torch.zeros(2, 6, 6, dtype=torch.long), transform=Identity(), n_draws=1)
    with pytest.raises(InputError, match="no class targets"):
        Verification().class_target(0, torch.zeros(2, 8))
    from advrobust.tasks.scoring import RunningMetrics

    with pytest.raises(InputError, match="needs the image index of every row"):
        RunningMetrics(Segmentation(), n_images=2).add(model(x), y)
    r = perturbation_success(model, x, 1 - x, y, 0, transform=Identity(), n_draws=1, task="segmentation")
    assert r.metrics["digital"]["pixel_accuracy"] < 1.0 and r.metrics["clean"]["pixel_accuracy"] == 1.0


class _EchoSegmenter(torch.nn.Module):
    """Two classes per pixel with scores ``(1 − x, x)``: its output is the picture itself."""

    task = "segmentation"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([1 - x, x], dim=1)


def test_a_segmenters_scores_of_a_moved_picture_come_back_over_the_input():
    from advrobust.transforms.model import TransformedModel

    t = Compose([GaussianNoise(0.0), Geometric(rotation=20, scale=0.1, translation=0.05, perspective=0.05)])
    x = torch.nn.functional.interpolate(torch.rand(3, 1, 3, 3, generator=torch.Generator().manual_seed(9)),
                                        size=(40, 40), mode="bilinear", align_corners=False)  # smooth: two
    wrapped = TransformedModel(_EchoSegmenter(), t, draws=3, seed=1)
    assert wrapped.task == "segmentation"
    z = wrapped(x)
    inner = (slice(None), slice(None), slice(10, 30), slice(10, 30))  # every draw keeps the centre in view
    assert torch.allclose(z[inner], _EchoSegmenter()(x)[inner], atol=0.02)  # resamplings blur it a little
    params = t.sample(x, torch.Generator().manual_seed(2))  # without the pull-back, the scores are moved
    assert (_EchoSegmenter()(t.apply(x, params)) - _EchoSegmenter()(x))[inner].abs().max() > 0.1


def _oracle_grid(y: torch.Tensor, classes: int = 4, size: int = 64, stride: int = 4) -> torch.Tensor:
    """The grid a perfect detector returns for boxes ``y``: a peak at each box's centre cell with its
    offset and size, its 8 neighbours leaning to the class (as a trained detector's do), and untrained
    boxes (size 0) everywhere but at the peaks."""
    from advrobust.training.dense import grid_targets

    cls, reg, _ = grid_targets(y, (size // stride, size // stride), stride)
    logits = torch.zeros(y.shape[0], classes, size // stride, size // stride)
    logits[:, 0] = 6.0
    for c in range(1, classes):
        logits[:, c][cls == c] = 10.0
    logits[:, 0][cls > 0] = 0.0
    near = torch.nn.functional.max_pool2d(logits[:, 1:], 3, 1, 1)
    logits[:, 1:] = torch.where(logits[:, 1:] > 0, logits[:, 1:], 0.7 * near)
    return torch.cat([logits, reg[:, :2].clamp(1e-3, 1 - 1e-3).logit(), reg[:, 2:]], dim=1)


def _best_ious(task: Detection, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per box of ``y``: the best IoU of a detection with its label (0 if none)."""
    from advrobust.tasks.metrics import box_iou

    best = []
    for d, boxes in zip(task.decode(z), y, strict=True):
        for label, *box in boxes.tolist():
            same = d.labels == int(label)
            best.append(float(box_iou(torch.tensor([box]), d.boxes[same]).max()) if bool(same.any()) else 0.0)
    return torch.tensor(best)


@pytest.mark.parametrize("pose, least", [(Geometric(scale=0.3, translation=0.1), 0.95),
                                         (Geometric(rotation=15, scale=0.1, translation=0.1, perspective=0.05), 0.6)])
def test_a_detectors_boxes_of_a_moved_picture_come_back_over_the_input(pose, least):
    task = Detection(stride=4)
    y = torch.tensor([[[1, 10, 12, 24, 30], [2, 36, 30, 50, 44], [3, 20, 40, 32, 60]]]).float().repeat(6, 1, 1)
    params = pose.sample(torch.zeros(6, 1, 64, 64), torch.Generator().manual_seed(3))
    seen = _oracle_grid(task.follow(y, pose, params, (64, 64)))  # what the detector sees in each moved picture
    back = task.pull_back(seen, pose, params, (64, 64))
    assert back.shape == seen.shape
    assert float(_best_ious(task, back, y).min()) >= least  # a shift or zoom comes back exactly
    assert all(len(d) == 3 for d in task.decode(back))  # every peak once, none lost or doubled
    assert float(_best_ious(task, pose.pull_back(seen, params), y).median()) < 0.1  # resampling the grid: lost
    three = task.pull_back(seen, pose, params, (64, 64), draws=3)  # the draws of two images, averaged
    assert three.shape[0] == 2 and float(_best_ious(task, three, y[:2]).min()) >= min(least, 0.7)


def test_a_detector_seen_through_a_pose_change_keeps_its_objects_and_task():
    from advrobust.transforms.model import TransformedModel

    model = _square_detector()
    x, y = torch.zeros(4, 1, 16, 16), torch.zeros(4, 1, 5)
    for i, (r, c) in enumerate([(4, 4), (4, 8), (8, 4), (8, 8)]):  # one object on an inner cell each
        x[i, 0, r : r + 4, c : c + 4] = 1.0
        y[i, 0] = torch.tensor([1.0, c - 2, r - 2, c + 6, r + 6])
    moved = TransformedModel(model, Geometric(rotation=10, scale=0.1), draws=4)
    assert moved(x).shape == (4, 6, 4, 4) and moved.task == "detection" and moved.stride == 4
    assert float(_best_ious(Detection(stride=4), moved(x), y).min()) >= 0.5
    with pytest.raises(InputError, match="not per-pixel scores"):  # a grid of an undeclared task
        TransformedModel(torch.nn.AvgPool2d(4), Geometric(rotation=10))(x)
    photometric = TransformedModel(_square_detector(), GaussianNoise(0.01), draws=2)
    assert photometric(x).shape == (4, 6, 4, 4)


def test_texture_examples_show_the_same_draw_with_and_without_the_texture():
    from advrobust.evaluation.physical import texture_examples

    model = _smooth_threshold_segmenter()
    x, y = _segmentation_scenes(6, 11)
    patch = UniversalPatch(area=0.1, steps=2, transform=Identity()).fit(model, x, y, task="segmentation")
    examples = texture_examples(model, patch, x, y, transform=Geometric(rotation=10), k=3)
    assert len(examples) == 3
    for e in examples:
        changed = (e.x_adv - e.x).abs()[0] > 1e-6
        assert 0 < int(changed.sum()) < changed.numel() // 3  # only where the patch went: the same draw
        assert torch.equal(e.clean, model(e.x[None]).argmax(dim=1)[0]) and bool((e.truth[changed] == 255).any())
    with pytest.raises(InputError, match="segmenter's or detector's"):
        texture_examples(model, replace(patch, task=CLASSIFICATION), x, y)


@pytest.mark.parametrize(("task", "target", "message"), [
    ("segmentation", 5, r"target holds class indices outside \[0, 1\]"),
    ("detection", 3, r"target holds class indices outside \[0, 1\]"),
    ("classification", None, r"the model must return scores of shape \(N, classes\)"),
])
def test_a_patch_for_the_wrong_model_or_class_is_refused_in_one_line(task, target, message):
    model = _square_detector() if task == "detection" else _smooth_threshold_segmenter()
    x = torch.rand(4, 1, 16, 16)
    y = {"segmentation": model(x).argmax(dim=1), "detection": torch.full((4, 1, 5), -1.0),
         "classification": torch.zeros(4, dtype=torch.long)}[task]
    with pytest.raises(InputError, match=message):
        UniversalPatch(area=0.1, steps=1, transform=Identity()).fit(model, x, y, target=target, task=task)
