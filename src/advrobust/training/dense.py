"""The built-in segmenter and detector: trained on ``mnist-seg`` / ``mnist-det`` once, then cached.

    model, meta = default_segmenter()   # mnist-fcn on mnist-seg, trained once (2,500 steps) or the cache
    model, meta = default_detector()    # mnist-centernet on mnist-det

Like :func:`advrobust.training.pretrained.default_model`, the checkpoint lives in the cache directory
under a name that hashes the recipe (every field of :class:`DenseRecipe`), so a changed recipe trains
a new model rather than loading an old one. Losses:

* segmentation: the pixel cross-entropy (Long et al. 2015), background and digits balanced, on
  logit-adjusted scores so that the logits stay calibrated (:func:`segmentation_loss`);
* detection (CenterNet-style, Zhou et al. 2019, with a softmax over background + classes instead of
  per-class focal heatmaps): cross-entropy over the grid cells, the cell holding a box's centre
  labelled with the box's class, its 8 neighbours ignored (they are neither the object's peak nor
  background), every other cell background; plus an L1 loss, at the centre cells only, on the centre
  offset inside the cell and on the log box size in units of the stride.

Both start from the trained default classifier (:func:`advrobust.training.pretrained.default_model`,
itself cached), as FCN does (Long et al. 2015, §4.1): its layers become the window encoder of
:mod:`advrobust.models.dense` (:func:`~advrobust.models.dense.encoder_from_classifier`), so the
models know the digits from the first step and fine-tuning teaches them the scenes (off-centre
digits, neighbours in the window, the background, the boxes). The recipe names the classifier's
recipe, so a change to either trains both again.

The segmenter trains on noisy scenes (:func:`noisy`: Gaussian noise of a standard deviation drawn
per image up to 0.3, the standard augmentation of Rusak et al. 2020), because a control of the
attacks needs it: DAG's perturbations are judged against random noise of the same ‖r‖₂, and a model
trained on clean canvases only lost 40–50% of its mIoU to such noise, so the control could not tell
an attack from noise. With the augmentation, noise of σ = 0.2 / 0.3 per pixel (‖·‖₂ ≈ 10 / 15 on a
64×64 scene before clipping) keeps 94% / 90% of the clean mIoU (100 test scenes). An earlier recipe
drew σ up to 0.5 in batches of 32 scenes: it kept 93% at σ = 0.3 but reached only mIoU 0.853, with
most of its errors on the strokes' rims (ink of intensity 0.3–0.7 called background). Up to 0.3,
in batches of 8 (four times the steps for the same epochs and about 1.3× the CPU time), it reaches
0.90.

Measured on a 2-core machine at load 1–2: the segmenter (10 epochs of 250 steps of 8 scenes)
reaches mIoU 0.901 (pixel accuracy 0.993) on the 400 test scenes in 108 s of wall time with two
threads (165 s of CPU time on one thread: mIoU 0.903, the sums of two threads round differently);
the detector (12 epochs of 125 steps of 16) mAP@0.5 0.871 in 48 s with two threads on a quiet
machine (78 s of CPU time on one thread: 0.879). Trained from scratch for 5 epochs, models of this
kind found the digits but not which digit (mIoU 0.11, mAP 0.04).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.data.scenes import SceneDataset, load_scenes
from advrobust.models.checkpoint import cached_checkpoint
from advrobust.models.dense import BOX_CHANNELS, create_dense, encoder_from_classifier
from advrobust.progress import SILENT, Progress
from advrobust.tasks import resolve_task
from advrobust.tasks.scoring import model_metrics
from advrobust.training.pretrained import DEFAULT_RECIPE, Recipe, default_model

IGNORE = -100


@dataclass(frozen=True)
class DenseRecipe:
    """How a built-in dense model is trained (the cache file's identity is a hash of it). ``width``,
    ``hidden`` must be those of the ``classifier`` the encoder starts from; ``rank`` is the factored
    window's (:mod:`advrobust.models.dense`)."""

    arch: str
    data: str
    width: int = 16
    hidden: int = 128
    rank: int = 32
    epochs: int = 12
    batch_size: int = 16
    lr: float = 1e-3
    noise: float = 0.0
    seed: int = 0
    classifier: Recipe = field(default_factory=lambda: DEFAULT_RECIPE)


SEGMENTER_RECIPE = DenseRecipe(arch="mnist-fcn", data="mnist-seg", epochs=10, batch_size=8, lr=6e-3, noise=0.3)
DETECTOR_RECIPE = DenseRecipe(arch="mnist-centernet", data="mnist-det")


def grid_targets(boxes: Tensor, grid: tuple[int, int], stride: int) -> tuple[Tensor, Tensor, Tensor]:
    """Training targets on the grid for packed boxes ``N×M×5``: the cell classes ``N×h×w`` (centre
    cell: the box's class; its 8 neighbours: ``IGNORE``; elsewhere 0), the regression targets
    ``N×4×h×w`` (offset in the cell, log size in strides) and the centre mask ``N×h×w``."""
    n = boxes.shape[0]
    h, w = grid
    cls = torch.zeros(n, h, w, dtype=torch.long)
    reg = torch.zeros(n, BOX_CHANNELS, h, w)
    centre = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        for label, x1, y1, x2, y2 in boxes[i].tolist():
            if label < 0:
                continue
            cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
            ci, cj = min(int(cy), h - 1), min(int(cx), w - 1)
            area = cls[i, max(ci - 1, 0) : ci + 2, max(cj - 1, 0) : cj + 2]
            area[area == 0] = IGNORE
    for i in range(n):  # centres last, so a neighbour of one box never hides another's centre
        for label, x1, y1, x2, y2 in boxes[i].tolist():
            if label < 0:
                continue
            cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
            ci, cj = min(int(cy), h - 1), min(int(cx), w - 1)
            cls[i, ci, cj] = int(label)
            reg[i, :, ci, cj] = torch.tensor([cx - cj, cy - ci, (x2 - x1) / stride, (y2 - y1) / stride])
            centre[i, ci, cj] = True
    reg[:, 2:] = reg[:, 2:].clamp_min(1e-3).log()
    return cls, reg, centre


def segmentation_loss(out: Tensor, y: Tensor, ignore_index: int = 255) -> Tensor:
    """The pixel cross-entropy with background (class 0) and foreground weighing the same: the mean
    over the background pixels plus the mean over the object pixels. Digits cover about a tenth of a
    scene, and with a plain mean their identity (which is what mIoU counts) would hardly be trained.

    Weighing the foreground ``ρ = n_background / n_foreground`` times as much would teach the model
    ``softmax(z) ∝ w_c·p(c | x)``, i.e. to call a pixel a digit too soon (one digit pixel in ten at
    the strokes' rims); so the loss is taken on the *logit-adjusted* scores ``z_c + log w_c``
    (Menon et al. 2021, "Long-tail learning via logit adjustment", §4), whose minimiser leaves ``z``
    itself calibrated to ``p(c | x)``: the foreground logits get ``+ log ρ`` inside the loss only."""
    labelled = y != ignore_index
    background, foreground = labelled & (y == 0), labelled & (y > 0)
    n_bg, n_fg = int(background.sum()), int(foreground.sum())
    if n_bg and n_fg:
        shift = torch.zeros(out.shape[1], dtype=out.dtype, device=out.device)
        shift[1:] = math.log(n_bg / n_fg)
        out = out + shift.view(1, -1, 1, 1)
    pixel = F.cross_entropy(out, y, ignore_index=ignore_index, reduction="none")
    parts = [pixel[group].mean() for group in (background, foreground) if bool(group.any())]
    return torch.stack(parts).sum()


def detection_loss(out: Tensor, cls: Tensor, reg: Tensor, centre: Tensor) -> Tensor:
    k = out.shape[1] - BOX_CHANNELS
    loss = F.cross_entropy(out[:, :k], cls, ignore_index=IGNORE)
    if bool(centre.any()):
        pred = torch.cat([out[:, k : k + 2].sigmoid(), out[:, k + 2 :]], dim=1).permute(0, 2, 3, 1)[centre]
        loss = loss + F.l1_loss(pred, reg.permute(0, 2, 3, 1)[centre])
    return loss


def noisy(x: Tensor, sigma_max: float, generator: torch.Generator) -> Tensor:
    """Gaussian noise augmentation: ``x + σ·N(0, I)`` clipped to ``[0, 1]``, with ``σ ~ U(0, sigma_max)``
    drawn per image (as in Rusak et al. 2020, "A simple way to make neural networks robust against
    diverse image corruptions"; see also Gilmer et al. 2019, "Adversarial examples are a natural
    consequence of test error in noise"). ``sigma_max <= 0``: ``x`` itself."""
    if sigma_max <= 0:
        return x
    sigma = torch.rand(x.shape[0], generator=generator) * sigma_max
    return (x + torch.randn(x.shape, generator=generator) * sigma.view(-1, 1, 1, 1)).clamp(0, 1)


def fit_dense(model: nn.Module, data: SceneDataset, recipe: DenseRecipe, progress: Progress = SILENT) -> float:
    """Train ``model`` on ``data`` with Adam and a cosine schedule; return the last epoch's mean loss."""
    gen = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = recipe.epochs * -(-len(data) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.15)
    if data.task == "detection":
        stride = int(getattr(model, "stride", 4))
        grid = (data.x.shape[-2] // stride, data.x.shape[-1] // stride)
        cls, reg, centre = grid_targets(data.y, grid, stride)
    model.train()
    last = 0.0
    with progress.task(f"train {recipe.arch} on {recipe.data}", total=recipe.epochs) as bar:
        for _ in range(recipe.epochs):
            order = torch.randperm(len(data), generator=gen)
            total = 0.0
            for start in range(0, len(data), recipe.batch_size):
                idx = order[start : start + recipe.batch_size]
                out = model(noisy(data.x[idx], recipe.noise, gen))
                if data.task == "detection":
                    loss = detection_loss(out, cls[idx], reg[idx], centre[idx])
                else:
                    loss = segmentation_loss(out, data.y[idx], data.ignore_index)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            last = total / len(data)
            bar.advance(1, loss=last)
    model.eval()
    return last


def _cached(recipe: DenseRecipe, progress: Progress) -> tuple[nn.Module, dict[str, Any]]:
    return cached_checkpoint(f"{recipe.arch}-{recipe.data}", recipe, lambda: _train(recipe, progress))


def _train(recipe: DenseRecipe, progress: Progress) -> tuple[nn.Module, dict[str, Any]]:
    train, test = load_scenes(recipe.data, "train"), load_scenes(recipe.data, "test")
    arch_kwargs = {"width": recipe.width, "hidden": recipe.hidden, "rank": recipe.rank}
    model = create_dense(recipe.arch, train.num_classes, tuple(train.x.shape[1:]), seed=recipe.seed, **arch_kwargs)
    classifier, _ = default_model(progress, recipe.classifier)
    encoder_from_classifier(model, classifier)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        train_loss = fit_dense(model, train, recipe, progress)
    meta = {
        "arch": recipe.arch,
        "arch_kwargs": arch_kwargs,
        "num_classes": train.num_classes,
        "input_shape": list(train.x.shape[1:]),
        "data": recipe.data,
        "task": train.task,
        "classes": list(train.classes),
        "clean_metrics": model_metrics(model, test.x, test.y, resolve_task(None, model, test.y)),
        "training": {**asdict(recipe), "train_loss": train_loss},
    }
    return model, meta


def default_segmenter(progress: Progress = SILENT, recipe: DenseRecipe = SEGMENTER_RECIPE) -> tuple[nn.Module, dict]:
    """The built-in segmenter (``mnist-fcn`` on ``mnist-seg``) and its metadata: cached or trained."""
    return _cached(recipe, progress)


def default_detector(progress: Progress = SILENT, recipe: DenseRecipe = DETECTOR_RECIPE) -> tuple[nn.Module, dict]:
    """The built-in detector (``mnist-centernet`` on ``mnist-det``) and its metadata: cached or trained."""
    return _cached(recipe, progress)
