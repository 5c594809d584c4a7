"""``npz``: arrays in a numpy ``.npz`` file (``root`` is the file), loaded with ``allow_pickle=False``.

Arrays, by name:

* ``x`` and ``y``: one undivided set, returned for ``split="test"`` or ``"all"``; or
* ``x_train``/``y_train`` and/or ``x_test``/``y_test`` (the layout of Keras' ``mnist.npz``);
* ``classes`` (optional): the class names, strings; otherwise ``"0"`` .. ``str(max label)``.

Images may be ``N×C×H×W``, ``N×H×W`` or ``N×H×W×C`` (``C`` 1 or 3), integers in 0..255 or floats in
``[0, 1]``; labels integers, shape ``N`` or ``N×1`` (see :func:`~advrobust.data.dataset.images_to_tensor`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from advrobust.data.dataset import Dataset, images_to_tensor, labels_to_tensor, load_split
from advrobust.errors import DataError

NAME = "npz"


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array in the ``.npz`` at ``path`` (no pickled objects)."""
    if not path.is_file():
        raise DataError(f"npz file {path} does not exist: give --root FILE.npz")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz without pickled objects ({exc})") from exc


def _classes(arrays: dict[str, np.ndarray], labels: list[np.ndarray], path: Path) -> list[str]:
    if "classes" in arrays:
        names = arrays["classes"]
        if names.dtype.kind not in "US" or names.ndim != 1 or not len(names):
            raise DataError(f"{path}: 'classes' must be a non-empty 1-D array of strings")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    top = max((int(y.max()) for y in labels if y.size and y.dtype.kind in "ui"), default=0)
    return [str(k) for k in range(top + 1)]


def load_npz(root: Path, split: str) -> Dataset:
    arrays = read_arrays(root)
    layout = {part: (f"x_{part}", f"y_{part}") for part in ("train", "test") if f"x_{part}" in arrays}
    layout = layout or ({"all": ("x", "y")} if "x" in arrays else {})
    if not layout:
        raise DataError(f"{root}: needs arrays x and y (or x_train/y_train, x_test/y_test); found {sorted(arrays)}")
    for x_key, y_key in layout.values():
        if y_key not in arrays:
            raise DataError(f"{root}: has {x_key} but no {y_key}")
    classes = _classes(arrays, [arrays[y_key] for _, y_key in layout.values()], root)

    def read_part(part: str) -> Dataset:
        x_key, y_key = layout[part]
        x = images_to_tensor(arrays[x_key], f"{root}:{x_key}")
        y = labels_to_tensor(arrays[y_key], len(x), len(classes), f"{root}:{y_key}")
        return Dataset(NAME, part, x, y, classes)

    return load_split(read_part, split, str(root), list(layout))
