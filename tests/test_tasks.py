"""advrobust.tasks: the task definitions, their metrics, the built-in scenes and the dense file formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advrobust.data.dense_files import load_coco, load_mask_folder
from advrobust.data.scenes import compose, load_mnist_det, load_mnist_seg
from advrobust.errors import DataError, InputError
from advrobust.tasks import Classification, Detection, Detections, Segmentation, Verification, resolve_task
from advrobust.tasks.detection import _local_maxima, unpack_boxes
from advrobust.tasks.metrics import (
    average_precision,
    box_iou,
    confusion_matrix,
    mean_average_precision,
    miou_interval,
    per_image_confusion,
    segmentation_metrics,
)

# --- metrics -----------------------------------------------------------------------------------


def test_miou_and_pixel_accuracy_match_a_hand_count():
    y = torch.tensor([[[0, 0, 1, 1], [0, 255, 2, 2]]])
    pred = torch.tensor([[[0, 1, 1, 1], [0, 2, 2, 0]]])
    c = confusion_matrix(pred, y, 3)
    assert c.sum() == 7  # the ignored pixel counts for nothing
    m = segmentation_metrics(c)
    # class 0: tp 2, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 1/2
    assert m["miou"] == pytest.approx((2 / 4 + 2 / 3 + 1 / 2) / 3)
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)


def test_box_iou_and_ap():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10], [20.0, 20, 30, 30]])
    assert box_iou(a, b)[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])
    # precision 1, 0.5, 2/3 at recall 0.5, 0.5, 1 -> monotone envelope: 1 up to 0.5, then 2/3
    assert average_precision(torch.tensor([0.5, 0.5, 1.0]), torch.tensor([1.0, 0.5, 2 / 3])) == pytest.approx(
        0.5 + 0.5 * 2 / 3
    )


def _dets(boxes, scores, labels):
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores),
                      torch.tensor(labels, dtype=torch.long))


def test_map_perfect_missing_and_wrong_label():
    truth = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]), "labels": torch.tensor([1, 2])}]
    perfect = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 2])]
    assert mean_average_precision(perfect, truth)["map"] == pytest.approx(1.0)
    one_missing = [_dets([[0, 0, 10, 10]], [0.9], [1])]
    assert mean_average_precision(one_missing, truth)["map"] == pytest.approx(0.5)
    wrong_label = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [2, 1])]
    assert mean_average_precision(wrong_label, truth) == {"map": 0.0, "recall": 0.0}


# --- the tasks -----------------------------------------------------------------------------------


def test_segmentation_objective_is_the_mean_pixel_cross_entropy_and_skips_ignored_pixels():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 5, 6, generator=gen)
    y = torch.randint(0, 4, (2, 5, 6), generator=gen)
    y[0, 0, :] = 255
    task = Segmentation()
    value = task.objective("ce")(z, y, None)
    expected = torch.stack([F.cross_entropy(z[i : i + 1], y[i : i + 1], ignore_index=255) for i in range(2)])
    torch.testing.assert_close(value, expected)
    t = (y + 1) % 4
    torch.testing.assert_close(
        task.objective("ce")(z, y, t.masked_fill(y == 255, 0)),
        -torch.stack([F.cross_entropy(z[i : i + 1], t[i : i + 1].masked_fill(y[i : i + 1] == 255, 255),
                                      ignore_index=255) for i in range(2)]),
    )


@pytest.mark.parametrize("loss", ["ce", "margin", "dlr"])
@pytest.mark.parametrize("targeted", [False, True])
def test_named_segmentation_objectives_on_the_maps_equal_the_per_pixel_rows(loss, targeted):
    """The named losses run on the N×K×H×W maps directly; a user's callable gets N×K rows. Both
    forms must give the same values, ignored pixels included."""
    from advrobust.losses import get_loss

    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 5, 4, 6, generator=gen)
    y = torch.randint(0, 5, (3, 4, 6), generator=gen)
    y[1, :2] = 255
    t = (y + 2) % 5 if targeted else None
    task = Segmentation()
    on_rows = get_loss(loss)
    torch.testing.assert_close(task.objective(loss)(z, y, t), task.objective(lambda *a: on_rows(*a))(z, y, t))


def test_segmentation_criterion_counts_the_fooled_fraction():
    y = torch.zeros(1, 2, 5, dtype=torch.long)
    z = torch.zeros(1, 2, 2, 5)
    z[0, 1, :, :4] = 1.0  # 8 of 10 pixels predicted as class 1
    assert Segmentation(min_fraction=0.8).is_adversarial(z, y, None).item()
    assert not Segmentation(min_fraction=0.9).is_adversarial(z, y, None).item()
    assert Segmentation().fooled(z, y, None).item() == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("task", "y", "message"),
    [
        (Segmentation(), torch.zeros(2, 8, dtype=torch.long), r"y must be a label map of shape \(2, 8, 8\)"),
        (Segmentation(), torch.zeros(2, 8, 8), "y must hold integer class labels per pixel"),
        (Classification(), torch.zeros(2, 8, 8, dtype=torch.long), r"y must have shape \(2,\)"),
        (Detection(), [{"boxes": [[0, 0, 9, 4]], "labels": [1]}] * 2, "box .* lies outside the 8×8 image"),
        (Detection(), [{"boxes": [[0, 0, 4, 4]], "labels": [0]}] * 2, "foreground classes >= 1"),
        (Detection(), torch.zeros(2, 3), r"y must be a list of 2 dicts"),
        (Detection(), [{"boxes": [[0, 0, 4, 4]], "labels": [1, 2]}] * 2, "1 boxes but 2 labels"),
        (Verification(), torch.zeros(2, 3, dtype=torch.long), "reference embeddings"),
    ],
)
def test_bad_labels_give_one_line_errors(task, y, message):
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(InputError, match=message) as info:
        task.labels(y, x)
    assert "\n" not in str(info.value)


def test_model_outputs_of_the_wrong_shape_are_refused():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(InputError, match="per-pixel scores of shape"):
        Segmentation().check_output(torch.zeros(2, 3), x)
    with pytest.raises(InputError, match="center-grid"):
        Detection(stride=4).check_output(torch.zeros(2, 15, 4, 4), x)


def test_task_is_named_declared_or_inferred_from_y():
    assert resolve_task("segmentation").name == "segmentation"
    with pytest.raises(InputError, match="unknown task 'depth'"):
        resolve_task("depth")
    assert resolve_task(None, None, torch.zeros(2, 4, 4, dtype=torch.long)).name == "segmentation"
    assert resolve_task(None, None, [{"boxes": [], "labels": []}]).name == "detection"
    assert resolve_task(None, None, torch.zeros(2, 5)).name == "verification"
    assert resolve_task(None, None, torch.zeros(2, dtype=torch.long)).name == "classification"

    class Declared(torch.nn.Module):
        task, stride = "detection", 8

    task = resolve_task(None, Declared(), torch.zeros(2, dtype=torch.long))
    assert isinstance(task, Detection) and task.stride == 8



def test_detection_peaks_are_the_cells_equal_to_their_3x3_max_pool():
    """The separable 3×3 maximum gives max_pool2d's peaks, ties and the grid's edges included."""
    gen = torch.Generator().manual_seed(4)
    score = (torch.rand(5, 7, 9, generator=gen) * 4).round() / 4  # few levels: many ties
    expected = score == F.max_pool2d(score[:, None], 3, 1, 1)[:, 0]
    peaks = _local_maxima(score)
    assert torch.equal(peaks, expected) and 0 < int(peaks.sum()) < peaks.numel()

def test_detection_decodes_a_planted_peak_and_judges_it():
    task = Detection(stride=4)
    z = torch.full((1, 3 + 4, 4, 4), 0.0)
    z[0, 0] = 5.0  # background everywhere ...
    z[0, 2, 1, 2] = 10.0  # ... but class 2 at cell (row 1, col 2)
    z[0, 3:5, 1, 2] = 0.0  # centre offset sigmoid(0) = half a cell
    z[0, 5:7, 1, 2] = float(np.log(2.0))  # 2 cells = 8 pixels wide and high
    (d,) = task.decode(z)
    assert d.labels.tolist() == [2]
    torch.testing.assert_close(d.boxes, torch.tensor([[6.0, 2.0, 14.0, 10.0]]))
    y = task.labels([{"boxes": [[6, 2, 14, 10]], "labels": [2]}], torch.rand(1, 1, 16, 16))
    assert not task.is_adversarial(z, y, None).item()
    assert task.is_adversarial(z, y, torch.tensor([1])).item() is False
    z[0, 2, 1, 2] = -10.0
    assert task.is_adversarial(z, y, None).item() and task.is_adversarial(z, y, torch.tensor([0])).item()
    assert unpack_boxes(y)[0]["labels"].tolist() == [2]


def test_the_batched_detection_criterion_is_the_per_image_one():
    """``is_adversarial`` judges every image at once; box by box it must say what ``found`` says."""
    task = Detection(stride=4)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(12, 4 + 4, 6, 6, generator=gen) * 3
    z[:4, 1:4] -= 20  # images without any detection
    dets = task.decode(z)
    rows = []
    for i, d in enumerate(dets):  # truths: some detections (their label or another), some random boxes
        pairs = zip(d.boxes[:2], d.labels[:2], strict=True)
        mine = [[float((int(lb) + i % 2 - 1) % 3 + 1), *b.tolist()] for b, lb in pairs]
        rand = torch.rand(2, 2, generator=gen) * 16
        rows.append(mine + [[1.0, *rand.min(0).values.tolist(), *(rand.max(0).values + 2).tolist()]][: i % 2]
                    + [[-1.0, 0, 0, 0, 0]] * 3)
    m = max(len(r) for r in rows)
    y = torch.tensor([r + [[-1.0, 0, 0, 0, 0]] * (m - len(r)) for r in rows])
    assert any(len(d) for d in dets) and any(len(d) == 0 for d in dets)
    targets = torch.randint(0, 4, (12,), generator=gen)
    for target in (None, torch.zeros(12, dtype=torch.long), targets):
        expected = []
        for i, d in enumerate(dets):
            if target is None:
                expected.append(not bool(task.found(d, y[i]).any()))
            elif int(target[i]) == 0:
                expected.append(len(d) == 0)
            else:
                expected.append(bool(task.found(d, y[i], target[i]).all()))
        got = task.is_adversarial(z, y, target).tolist()
        assert got == expected and len(set(got)) == 2, (target, got)


def _cells_one_box_at_a_time(task, y, h, w):
    """The definition of :meth:`Detection.object_cells`: boxes in order, each writing its label on the
    3×3 cells around its centre that lie in the grid."""
    cells = torch.zeros(y.shape[0], h, w, dtype=torch.long)
    for i in range(y.shape[0]):
        for label, x1, y1, x2, y2 in y[i].tolist():
            ci, cj = min(int((y1 + y2) / 2 // task.stride), h - 1), min(int((x1 + x2) / 2 // task.stride), w - 1)
            for r in range(ci - 1, ci + 2):
                for c in range(cj - 1, cj + 2):
                    if label >= 0 and 0 <= r < h and 0 <= c < w:
                        cells[i, r, c] = int(label)
    return cells


def test_object_cells_let_the_later_box_win_and_stay_in_the_grid():
    task = Detection(stride=4)
    gen = torch.Generator().manual_seed(0)
    corner = torch.rand(6, 7, 2, generator=gen) * 40 - 8  # centres from off the grid (up to 3 cells) to past it
    boxes = torch.cat([corner, corner + torch.rand(6, 7, 2, generator=gen) * 12], dim=-1)
    labels = torch.randint(1, 5, (6, 7, 1), generator=gen).float()
    labels[:, 5:] = -1  # padding rows claim nothing
    y = torch.cat([labels, boxes], dim=-1)
    y[0] = -1  # the first image: two boxes on the same centre, the later one's label wins
    y[0, 0], y[0, 1] = torch.tensor([1.0, 10, 10, 14, 14]), torch.tensor([3.0, 9, 9, 15, 15])
    cells = task.object_cells(y, torch.zeros(6, 9, 8, 8))
    assert torch.equal(cells, _cells_one_box_at_a_time(task, y, 8, 8))
    assert int(cells[0].eq(3).sum()) == 9 and int(cells[0].ne(0).sum()) == 9


def test_verification_dodging_and_impersonation():
    ref = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[1.0, 0.1], [0.0, 1.0]])
    task = Verification(threshold=0.5)
    assert task.is_adversarial(z, ref, None).tolist() == [False, True]
    assert task.is_adversarial(z, ref, torch.tensor([[0.0, 1.0], [0.0, 1.0]])).tolist() == [False, True]


# --- built-in scenes -------------------------------------------------------------------------------


def test_compose_places_digits_without_overlap_and_labels_their_ink():
    rng = np.random.Generator(np.random.PCG64(3))
    digits = np.zeros((4, 28, 28), dtype=np.uint8)
    for i in range(4):
        digits[i, 4:24, 8:20] = 200
    canvas, label_map, boxes = compose(digits, np.arange(4), 4, rng)
    assert len(boxes) >= 2
    for i, (cls, x1, y1, x2, y2) in enumerate(boxes):
        assert (label_map[y1:y2, x1:x2] == cls).all() and (canvas[y1:y2, x1:x2] == 200).all()
        for _, a1, b1, a2, b2 in boxes[i + 1 :]:
            assert x2 < a1 or a2 < x1 or y2 < b1 or b2 < y1  # at least one pixel apart
    assert set(np.unique(label_map)) == {0} | {b[0] for b in boxes}


@pytest.mark.slow
def test_mnist_scenes_hold_2_to_4_digits_whose_boxes_match_their_masks():
    seg, det = load_mnist_seg("test"), load_mnist_det("test")
    assert seg.x.shape == (400, 1, 64, 64) and torch.equal(seg.x, det.x)
    counts = (det.y[..., 0] >= 0).sum(dim=1)
    assert int(counts.min()) >= 2 and int(counts.max()) <= 4
    for i in range(20):
        for label, x1, y1, x2, y2 in det.y[i].tolist():
            if label >= 0:
                window = seg.y[i, int(y1) : int(y2), int(x1) : int(x2)]
                assert set(window.unique().tolist()) <= {0, int(label)}


# --- file formats --------------------------------------------------------------------------------


def _png(path, array, mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)


def test_mask_folder_round_trip_and_errors(tmp_path):
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 2:4] = 2
    mask[0, 0] = 255
    _png(tmp_path / "images" / "a.png", image)
    _png(tmp_path / "masks" / "a.png", mask)
    data = load_mask_folder(tmp_path)
    assert data.x.shape == (1, 1, 8, 8) and torch.equal(data.y[0], torch.from_numpy(mask).long())
    assert data.classes == ["0", "1", "2"]
    (tmp_path / "classes.txt").write_text("background\nline\n")
    with pytest.raises(DataError, match="holds label 2 but .*classes.txt names 2 classes"):
        load_mask_folder(tmp_path)
    (tmp_path / "classes.txt").unlink()
    _png(tmp_path / "masks" / "a.png", mask[:4])
    with pytest.raises(DataError, match="mask is 8×4 but its image a.png is 8×8"):
        load_mask_folder(tmp_path)
    _png(tmp_path / "masks" / "a.png", mask)
    _png(tmp_path / "images" / "b.png", image)
    with pytest.raises(DataError, match="b.png has no mask"):
        load_mask_folder(tmp_path)


def test_coco_json_round_trip_and_errors(tmp_path):
    _png(tmp_path / "one.png", np.zeros((16, 20)))
    spec = {
        "images": [{"id": 7, "file_name": "one.png", "width": 20, "height": 16}],
        "annotations": [{"image_id": 7, "bbox": [2, 3, 5, 4], "category_id": 30}],
        "categories": [{"id": 30, "name": "cat"}, {"id": 10, "name": "dog"}],
    }
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(spec))
    data = load_coco(path)
    assert data.classes == ["background", "dog", "cat"]
    assert data.y[0].tolist() == [[2.0, 2.0, 3.0, 7.0, 7.0]]
    spec["annotations"][0]["bbox"] = [18, 3, 5, 4]
    path.write_text(json.dumps(spec))
    with pytest.raises(DataError, match=r"box \[18, 3, 5, 4\].*outside its 20×16 image"):
        load_coco(path)
    spec["annotations"][0].update(bbox=[2, 3, 5, 4], category_id=99)
    path.write_text(json.dumps(spec))
    with pytest.raises(DataError, match="unknown category_id 99"):
        load_coco(path)
    spec["annotations"][0]["category_id"] = 30
    spec["images"][0]["width"] = 32
    path.write_text(json.dumps(spec))
    with pytest.raises(DataError, match="one.png is 20×16 but boxes.json says 32×16"):
        load_coco(path)


def test_per_image_confusions_sum_to_the_whole_and_the_bootstrap_interval_holds_the_mIoU():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (20, 6, 6), generator=gen)
    pred = torch.where(torch.rand(20, 6, 6, generator=gen) < 0.8, y, torch.randint(0, 3, (20, 6, 6), generator=gen))
    y[0, 0, 0] = 255
    per_image = per_image_confusion(pred, y, 3)
    assert torch.equal(per_image.sum(dim=0), confusion_matrix(pred, y, 3))
    lo, hi = miou_interval(per_image)
    miou = segmentation_metrics(per_image.sum(dim=0))["miou"]
    assert lo < miou < hi and hi - lo < 0.3


def test_classification_runs_the_same_whether_inferred_or_named(small_cnn, mnist_batch):
    """N×K logits are classification: naming the task (by name or object) changes nothing, and the
    FGSM step on a classifier is still the closed form x + ε·sign(∇ CE)."""
    import advrobust as ar

    x, y = mnist_batch[0][:16], mnist_batch[1][:16]
    pgd = ar.attacks.PGD(ar.Linf(eps=0.1), steps=5)
    runs = [pgd(small_cnn, x, y, generator=torch.Generator().manual_seed(0), task=t)
            for t in (None, "classification", Classification())]
    for other in runs[1:]:
        assert torch.equal(runs[0].x_adv, other.x_adv) and torch.equal(runs[0].success, other.success)
    xv = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(small_cnn(xv), y, reduction="sum"), xv)
    expected = (x + 0.1 * grad.sign()).clamp(0, 1)
    fgsm = ar.attacks.FGSM(ar.Linf(eps=0.1))(small_cnn, x, y)
    fooled = fgsm.success
    assert int(fooled.sum()) > 0
    torch.testing.assert_close(fgsm.x_adv[fooled], expected[fooled])
