"""``cifar10``: the real CIFAR-10 python batches of Krizhevsky (2009), loaded without trusting them.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html): a folder ``cifar-10-batches-py`` (looked for in
``root``, else ``root`` itself) with ``data_batch_1`` .. ``data_batch_5`` (train, 10,000 images each),
``test_batch`` (10,000) and ``batches.meta``. Each batch is a pickled dict whose ``data`` is a
``uint8`` array ``N×3072`` (the red, green then blue 32×32 planes of each image, row-major) and whose
``labels`` is a list of ``N`` ints; ``batches.meta`` holds the ``label_names``.

**Safety.** A pickle can call any importable function while it loads, so these untrusted files go
through :class:`SafeUnpickler`, whose ``find_class`` resolves only the four globals that the real files
(and numpy arrays pickled by Python 2 or 3) need: numpy's ``_reconstruct`` (under ``numpy.core`` or
``numpy._core``), ``numpy.ndarray``, ``numpy.dtype``, and ``_codecs.encode`` (which Python 3 uses to
pickle ``bytes`` at protocol 2). Every other global is refused with a :class:`DataError` before
anything is called. The loaded values are then checked for type, dtype and shape.
"""

from __future__ import annotations

import codecs
import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from advrobust.data.dataset import Dataset, images_to_tensor, labels_to_tensor, load_split
from advrobust.errors import DataError

FOLDER = "cifar-10-batches-py"
FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
META = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)

_RECONSTRUCT = np.ndarray(0).__reduce__()[0]
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only builtin containers, numbers, strings and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def safe_unpickle(path: Path) -> Any:
    """The object pickled in ``path``, loaded with :class:`SafeUnpickler` (Python 2 strings as bytes)."""
    try:
        data = path.read_bytes()
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a valid CIFAR-10 batch ({exc}); delete it and download it again") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def _field(batch: Any, key: str, path: Path) -> Any:
    """``batch[key]``, the key given as str or (as in the real files) as bytes."""
    if isinstance(batch, dict):
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
    raise DataError(f"{path}: not a CIFAR-10 batch: no {key!r} entry")


def _download_hint(root: Path) -> str:
    return f"run `advrobust data download cifar10 --root {root}`"


def find_folder(root: Path) -> Path:
    """``root/cifar-10-batches-py`` if it exists, else ``root`` when it holds the batches."""
    for folder in (root / FOLDER, root):
        if (folder / META).is_file():
            return folder
    raise DataError(f"CIFAR-10 batches not found in {root} (no {FOLDER}/{META}): {_download_hint(root)}")


def read_classes(folder: Path) -> list[str]:
    names = _field(safe_unpickle(folder / META), "label_names", folder / META)
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{folder / META}: label_names must be a non-empty list of strings")
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 ``N×3×32×32``) and labels (int64 ``N``) of one batch file."""
    batch = safe_unpickle(path)
    data = _field(batch, "data", path)
    labels = _field(batch, "labels", path)
    size = math.prod(IMAGE_SHAPE)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{path}: 'data' must be a uint8 array N×{size}, got {shape}")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(type(v) is int for v in labels):
        raise DataError(f"{path}: 'labels' must be a list of {len(data)} ints, one per image")
    return data.reshape(-1, *IMAGE_SHAPE), np.asarray(labels, dtype=np.int64)


def _load_part(folder: Path, classes: list[str], split: str) -> Dataset:
    paths = [folder / name for name in FILES[split]]
    for path in paths:
        if not path.is_file():
            hint = _download_hint(folder.parent if folder.name == FOLDER else folder)
            raise DataError(f"CIFAR-10 file {path} is missing: {hint}")
    batches = [read_batch(path) for path in paths]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    x = images_to_tensor(images, str(folder))
    y = labels_to_tensor(labels, len(labels), len(classes), str(folder))
    return Dataset("cifar10", split, x, y, classes)


def load_cifar10(root: Path, split: str) -> Dataset:
    folder = find_folder(root)
    classes = read_classes(folder)
    return load_split(lambda part: _load_part(folder, classes, part), split, str(folder))
