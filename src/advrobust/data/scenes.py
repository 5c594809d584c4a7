"""``mnist-seg`` and ``mnist-det``: scenes of several MNIST digits, for segmentation and detection.

Real segmentation and detection weights cannot be downloaded here, so the built-in dense tasks are
made from the built-in digits (``mnist-5k``, :mod:`advrobust.data.builtin`). A scene is a
``SIZE×SIZE`` (64×64) grey canvas holding 2 to 4 digits that do not overlap:

* each digit is cropped to its *ink* (pixels ≥ :data:`INK`, i.e. ≥ 0.3) and pasted at a random place
  where its crop, grown by one pixel, touches no other crop (up to 200 tries per digit; a digit that
  finds no place is dropped, never forced);
* the **label map** (``mnist-seg``) gives each ink pixel its digit's class ``1 + d`` and every other
  pixel class 0 (background): 11 classes;
* the **boxes** (``mnist-det``) are the crops, ``(x1, y1, x2, y2)`` in pixels (``x2``/``y2``
  exclusive), labelled ``1 + d`` as well.

Determinism: a scene's digits and places come from NumPy's PCG64 generator seeded with a SHA-256 of
``"{name}/{split}"``; the train scenes draw digits of the mnist-5k **train** split only, the test
scenes digits of its test split, so no test digit is ever seen in training. Sizes: 2,000 train and
400 test scenes (``"all"``: both).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from advrobust.data.builtin import _raw, split_indices
from advrobust.errors import DataError

SIZE = 64
INK = 77  # of 255: 0.3
DIGITS_PER_SCENE = (2, 4)
SCENES = {"train": 2000, "test": 400}
SEG_CLASSES = ["background"] + [str(d) for d in range(10)]


@dataclass
class SceneDataset:
    """Images ``x`` (float32 ``N×C×H×W`` in ``[0, 1]``) and dense labels for a task.

    ``task`` is ``"segmentation"`` (``y``: int64 label maps ``N×H×W``, ``ignore_index`` for unlabelled
    pixels) or ``"detection"`` (``y``: float ``N×M×5`` rows ``(label, x1, y1, x2, y2)`` padded with
    label ``−1``, as :func:`advrobust.tasks.detection.pack_boxes` makes them). ``classes[0]`` is the
    background.
    """

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    task: str
    ignore_index: int = 255

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dim() != 4 or self.x.dtype != torch.float32:
            raise DataError(f"{self.name}: images must be float32 N×C×H×W, got {self.x.dtype} {tuple(self.x.shape)}")
        if self.task == "segmentation" and tuple(self.y.shape) != (n, *self.x.shape[-2:]):
            raise DataError(f"{self.name}: label maps must be N×H×W like the images, got {tuple(self.y.shape)}")
        if self.task == "detection" and (self.y.dim() != 3 or self.y.shape[0] != n or self.y.shape[2] != 5):
            raise DataError(f"{self.name}: boxes must have shape (N, M, 5), got {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def take(self, index: torch.Tensor | slice) -> SceneDataset:
        return SceneDataset(self.name, self.split, self.x[index], self.y[index], self.classes, self.task,
                            self.ignore_index)


def _generator(name: str, split: str) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256(f"{name}/{split}".encode()).digest()[:8], "little")
    return np.random.Generator(np.random.PCG64(seed))


def _ink_crop(digit: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero((digit >= INK).any(axis=1))
    cols = np.flatnonzero((digit >= INK).any(axis=0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def compose(
    digits: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int, int]]]:
    """One scene: the canvas (uint8), its label map and its boxes ``(label, x1, y1, x2, y2)``."""
    canvas = np.zeros((SIZE, SIZE), dtype=np.uint8)
    label_map = np.zeros((SIZE, SIZE), dtype=np.int64)
    taken = np.zeros((SIZE, SIZE), dtype=bool)
    boxes = []
    for i in rng.choice(len(digits), size=count, replace=False):
        crop = _ink_crop(digits[i])
        h, w = crop.shape
        for _ in range(200):
            top, left = int(rng.integers(0, SIZE - h + 1)), int(rng.integers(0, SIZE - w + 1))
            grown = taken[max(top - 1, 0) : top + h + 1, max(left - 1, 0) : left + w + 1]
            if not grown.any():
                break
        else:
            continue
        cls = int(labels[i]) + 1
        canvas[top : top + h, left : left + w] = crop
        label_map[top : top + h, left : left + w][crop >= INK] = cls
        taken[top : top + h, left : left + w] = True
        boxes.append((cls, left, top, left + w, top + h))
    return canvas, label_map, boxes


@lru_cache(maxsize=4)
def _scenes(split: str, count: int) -> tuple[np.ndarray, np.ndarray, list[list[tuple[int, int, int, int, int]]]]:
    """The first ``count`` scenes of ``split`` (scenes are drawn one after the other, so the first
    ``k`` are the same whatever ``count``)."""
    images, labels = _raw()
    index = split_indices(labels)[split]
    rng = _generator("mnist-scenes", split)
    canvases, maps, boxes = [], [], []
    for _ in range(min(count, SCENES[split])):
        count = int(rng.integers(DIGITS_PER_SCENE[0], DIGITS_PER_SCENE[1] + 1))
        canvas, label_map, scene_boxes = compose(images[index], labels[index], count, rng)
        canvases.append(canvas)
        maps.append(label_map)
        boxes.append(scene_boxes)
    return np.stack(canvases), np.stack(maps), boxes


def _parts(split: str) -> list[str]:
    if split == "all":
        return ["train", "test"]
    if split not in SCENES:
        raise DataError(f"unknown split {split!r}: choose train, test or all")
    return [split]


def pack(boxes: list[list[tuple[int, int, int, int, int]]]) -> torch.Tensor:
    """Box lists as the padded ``N×M×5`` float tensor of the detection task."""
    m = max((len(b) for b in boxes), default=0)
    out = torch.full((len(boxes), m, 5), -1.0)
    for i, b in enumerate(boxes):
        if b:
            out[i, : len(b)] = torch.tensor(b, dtype=torch.float32)
    return out


def load_mnist_seg(split: str = "test", limit: int | None = None) -> SceneDataset:
    """Scenes with per-pixel labels (background + 10 digits); ``limit``: only the first scenes."""
    parts = [_scenes(p, limit or SCENES[p]) for p in _parts(split)]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255.0)[:, None]
    y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return SceneDataset("mnist-seg", split, x, y, list(SEG_CLASSES), "segmentation")


def load_mnist_det(split: str = "test", limit: int | None = None) -> SceneDataset:
    """The same scenes with one box and label per digit; ``limit``: only the first scenes."""
    parts = [_scenes(p, limit or SCENES[p]) for p in _parts(split)]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255.0)[:, None]
    y = pack([b for p in parts for b in p[2]])
    return SceneDataset("mnist-det", split, x, y, list(SEG_CLASSES), "detection")


SCENE_DATASETS = {"mnist-seg": load_mnist_seg, "mnist-det": load_mnist_det}


def load_scenes(name: str, split: str = "test", limit: int | None = None) -> SceneDataset:
    """A built-in scene data set by name (``mnist-seg``, ``mnist-det``); ``limit``: the first scenes."""
    key = name.lower()
    if key not in SCENE_DATASETS:
        raise DataError(f"unknown scene data set {name!r}: choose one of {', '.join(SCENE_DATASETS)}")
    return SCENE_DATASETS[key](split, limit)
