"""``folder``: a user's images, one sub-folder per class, read with Pillow (a dependency of matplotlib).

Layouts (``root`` is the folder given):

* ``root/<class>/<image>``: one undivided set, returned for ``split="test"`` or ``"all"``;
* ``root/train/<class>/<image>`` and/or ``root/test/<class>/<image>``: a split layout.

Class names are the sorted sub-folder names (over every part, so a class has the same label in train
and test). Images are the ``.png``, ``.jpg`` and ``.jpeg`` files (any case); hidden files and other
files are skipped. Nothing is resized: every image must have the same size, and all must be
grayscale (Pillow modes ``1``, ``L``) or all colour (``RGB``, or palette ``P`` without transparency,
converted to RGB). An alpha channel, 16-bit or other modes are refused rather than guessed at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from advrobust.data.dataset import Dataset, images_to_tensor, load_split
from advrobust.errors import DataError

NAME = "folder"
EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
GRAY_MODES = frozenset({"1", "L"})
COLOR_MODES = frozenset({"RGB", "P"})


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS
    )


def read_image(path: Path) -> np.ndarray:
    """One image as uint8 ``H×W`` (grayscale) or ``H×W×3`` (RGB)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in GRAY_MODES:
                return np.asarray(image.convert("L"))
            if mode in COLOR_MODES and "transparency" not in image.info:
                return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # Pillow's "broken file"
        raise DataError(f"{path}: not a readable PNG/JPEG image ({exc})") from exc
    raise DataError(f"{path}: unsupported image mode {mode!r}: save it as 8-bit grayscale or RGB without alpha")


def _read_part(folder: Path, classes: list[str], part: str) -> Dataset:
    images: list[np.ndarray] = []
    labels: list[int] = []
    first: Path | None = None
    for class_dir in _subfolders(folder):
        files = _images_in(class_dir)
        if not files:
            raise DataError(f"{class_dir}: class folder has no .png/.jpg/.jpeg images")
        for path in files:
            image = read_image(path)
            if first is None:
                first = path
            elif image.shape != images[0].shape:
                raise DataError(
                    f"{path}: {_describe(image)} differs from {first}: {_describe(images[0])}; "
                    "all images must have one size and all be grayscale or all RGB"
                )
            images.append(image)
            labels.append(classes.index(class_dir.name))
    if not images:
        raise DataError(f"{folder}: no class sub-folders with images (expected {folder}/<class>/<image>.png)")
    x = images_to_tensor(np.stack(images), str(folder))
    return Dataset(NAME, part, x, torch.tensor(labels, dtype=torch.int64), classes)


def _describe(image: np.ndarray) -> str:
    kind = "RGB" if image.ndim == 3 else "grayscale"
    return f"{kind} {image.shape[1]}×{image.shape[0]}"


def load_folder(root: Path, split: str) -> Dataset:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: give --root DIR with one sub-folder per class")
    folders = {part: root / part for part in ("train", "test") if (root / part).is_dir()} or {"all": root}
    classes = sorted({d.name for folder in folders.values() for d in _subfolders(folder)})
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected {root}/<class>/<image>.png)")
    return load_split(lambda part: _read_part(folders[part], classes, part), split, str(root), list(folders))
