"""The :class:`Dataset` every loader returns, and the conversions every loader shares.

A data set is a batch of images in the pixel space of docs/architecture.md: ``x`` float32 ``N×C×H×W`` with values
in ``[0, 1]`` (the box ``B = [0,1]^{C×M×N}``), ``y`` int64 labels in ``0..K-1`` and the ``K``
class names. Loaders turn whatever the file holds (``uint8`` 0..255, ``N×H×W`` or ``N×H×W×C``) into
that form with :func:`images_to_tensor` and :func:`labels_to_tensor`, which refuse anything they
would have to guess about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from advrobust.errors import DataError, InputError

SPLITS = ("train", "test", "all")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Images ``x`` (float32 ``N×C×H×W`` in ``[0, 1]``), labels ``y`` (int64 ``N``), class names.

    ``name`` is the registry name it was loaded by (e.g. ``"mnist-5k"``) and ``split`` the part of
    it (``"train"``, ``"test"`` or ``"all"``). The constructor checks every invariant, so a
    ``Dataset`` that exists is one an attack can take as is.
    """

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if x.dtype != torch.float32 or x.dim() != 4:
            raise DataError(f"{self.name}: images must be float32 N×C×H×W, got {x.dtype} {tuple(x.shape)}")
        if y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise DataError(
                f"{self.name}: labels must be int64 of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}"
            )
        if not self.classes:
            raise DataError(f"{self.name}: a data set needs at least one class name")
        if len(x):
            low, high = torch.aminmax(x)
            if not (low >= 0 and high <= 1):  # False for NaN too
                raise DataError(f"{self.name}: pixel values must lie in [0, 1]")
        if len(y) and (y.min() < 0 or y.max() >= len(self.classes)):
            raise DataError(f"{self.name}: labels must lie in 0..{len(self.classes) - 1} (one per class name)")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``: the shape of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def class_counts(self) -> list[int]:
        """Number of points of each class, in the order of :attr:`classes`."""
        return torch.bincount(self.y.cpu(), minlength=self.num_classes).tolist()

    def take(self, index: torch.Tensor) -> Dataset:
        """The points at ``index`` (a 1-D index tensor), in that order."""
        index = index.to(self.x.device)
        return Dataset(self.name, self.split, self.x[index], self.y[index], list(self.classes))

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """``n`` points drawn per class in proportion to the class sizes, deterministically.

        Class ``k`` of size ``n_k`` gets ``floor(n·n_k/N)`` points, and the points still missing go
        one each to the classes with the largest remainders ``n·n_k/N - floor(n·n_k/N)`` (ties: lower
        class index first). Within a class the points are the first of a ``torch.randperm`` drawn
        from a generator seeded with ``seed``; the result keeps the data set's own order.
        """
        if not 0 < n <= len(self):
            raise InputError(f"subset size must be in 1..{len(self)}, got {n}")
        counts = np.asarray(self.class_counts(), dtype=np.int64)
        quota = _largest_remainder(n, counts)
        generator = torch.Generator().manual_seed(seed)
        labels = self.y.cpu()
        chosen = []
        for k, q in enumerate(quota.tolist()):
            members = (labels == k).nonzero().squeeze(1)
            chosen.append(members[torch.randperm(len(members), generator=generator)[:q]])
        return self.take(torch.cat(chosen).sort().values)

    def to(self, device: torch.device | str) -> Dataset:
        """The same data set with ``x`` and ``y`` on ``device``."""
        return Dataset(self.name, self.split, self.x.to(device), self.y.to(device), list(self.classes))


def _largest_remainder(n: int, counts: np.ndarray) -> np.ndarray:
    """Split ``n`` into integer quotas proportional to ``counts`` (Hamilton's method)."""
    exact = n * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    missing = n - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))
    quota[order[:missing]] += 1
    return quota


def concat(parts: Sequence[Dataset], split: str) -> Dataset:
    """The points of ``parts`` one after the other (they must share class names and image shape)."""
    first = parts[0]
    if len(parts) == 1:
        return first if first.split == split else Dataset(first.name, split, first.x, first.y, first.classes)
    for part in parts[1:]:
        if part.classes != first.classes or part.input_shape != first.input_shape:
            raise DataError(
                f"{first.name}: splits {first.split!r} and {part.split!r} differ in classes or image shape"
            )
    x = torch.cat([p.x for p in parts])
    y = torch.cat([p.y for p in parts])
    return Dataset(first.name, split, x, y, list(first.classes))


def pick_parts(split: str, available: Sequence[str], source: str) -> list[str]:
    """The parts of a user's data to load for ``split``.

    ``available`` lists the parts ``source`` has: some of ``"train"``, ``"test"`` (a split layout), or
    just ``"all"`` (one undivided set). An undivided set is what one evaluates on, so it answers
    ``"test"`` and ``"all"``; it has no ``"train"`` part. ``"all"`` of a split layout is every part.
    """
    if split == "all":
        return list(available)
    if split in available:
        return [split]
    if list(available) == ["all"] and split == "test":
        return ["all"]
    raise DataError(
        f"{source} has no {split!r} split (it has: {', '.join(available)}); "
        "choose another split, or lay the data out as train/test parts"
    )


def load_split(
    read_part: Callable[[str], Dataset],
    split: str,
    source: str,
    available: Sequence[str] = ("train", "test"),
) -> Dataset:
    """The ``split`` of a source whose parts ``available`` are each read by ``read_part(part)``.

    The result is named ``split``, except for an undivided source (``available == ["all"]``), whose
    data is always named ``"all"``, whatever split asked for it.
    """
    parts = [read_part(part) for part in pick_parts(split, available, source)]
    return concat(parts, "all" if list(available) == ["all"] else split)


def images_to_tensor(images: np.ndarray, source: str) -> torch.Tensor:
    """Images as float32 ``N×C×H×W`` in ``[0, 1]``.

    Accepted layouts: ``N×H×W`` (one channel), ``N×C×H×W`` when ``C`` is 1 or 3, else ``N×H×W×C``
    when ``C`` is 1 or 3 (channels first wins when both would fit). Accepted values: integers in
    0..255 (divided by 255) or floats in ``[0, 1]`` (kept). Anything else is a :class:`DataError`
    naming ``source``.
    """
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[1] not in (1, 3):
        if images.shape[3] not in (1, 3):
            raise DataError(
                f"{source}: cannot tell the channel axis of images of shape {images.shape}; "
                "give N×C×H×W or N×H×W×C with 1 or 3 channels"
            )
        images = images.transpose(0, 3, 1, 2)
    elif images.ndim != 4:
        raise DataError(f"{source}: images must be N×H×W, N×C×H×W or N×H×W×C, got shape {images.shape}")
    if images.dtype.kind in "ui":
        if images.dtype != np.uint8 and images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{source}: integer pixels must lie in 0..255")
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).float().div_(255.0)
    if images.dtype.kind == "f":
        if images.size and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
            raise DataError(f"{source}: float pixels must be finite and lie in [0, 1] (divide 0..255 data by 255)")
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    raise DataError(f"{source}: pixels must be uint8 (0..255) or float (0..1), got dtype {images.dtype}")


def labels_to_tensor(labels: np.ndarray, n: int, num_classes: int, source: str) -> torch.Tensor:
    """Labels as int64 of shape ``(n,)`` with values in ``0..num_classes-1`` (``N×1`` is flattened)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dtype.kind not in "ui" or labels.shape != (n,):
        raise DataError(f"{source}: labels must be {n} integers, got dtype {labels.dtype} shape {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{source}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return torch.from_numpy(labels.astype(np.int64))
