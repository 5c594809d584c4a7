"""``cifar10``: the real CIFAR-10 python batches of Krizhevsky (2009), loaded without trusting them.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html): a folder ``cifar-10-batches-py`` (looked for in
``root``, else ``root`` itself) with ``data_batch_1`` .. ``data_batch_5`` (train, 10,000 images each),
``test_batch`` (10,000) and ``batches.meta``. Each batch is a pickled dict whose ``data`` is a
``uint8`` array ``N×3072`` (the red, green then blue 32×32 planes of each image, row-major) and whose
``labels`` is a list of ``N`` ints; ``batches.meta`` holds the ``label_names``.

**Safety.** A pickle can call any importable function while it loads, and even numpy's own array
reconstruction crashes the interpreter on some malformed states, so these untrusted files are parsed
without running anything of numpy's: :class:`SafeUnpickler` resolves only the globals the real files
name (``numpy.core.multiarray._reconstruct`` / ``numpy._core...``, ``numpy.ndarray``, ``numpy.dtype``,
and ``_codecs.encode`` restricted to latin-1, which Python 3 uses to pickle ``bytes`` at protocol 2),
each to an inert stand-in that only records its arguments. Every other global is refused with a
:class:`DataError`. The recorded array is then checked (``uint8``, C order, a shape of non-negative
ints, exactly ``prod(shape)`` raw bytes) and only then turned into an array with ``np.frombuffer``.
"""

from __future__ import annotations

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


class _PickledDType:
    """What a pickled ``numpy.dtype(name, align, copy)`` says; numpy is never called."""

    def __init__(self, name: object, align: object = False, copy: object = True) -> None:
        self.name = name
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class _NDArray:
    """Stands for the class ``numpy.ndarray`` in a pickle."""


class _PickledArray:
    """What a pickled array says: ``_reconstruct(ndarray, shape, typecode)``, then its state
    ``(version, shape, dtype, is_fortran, raw bytes)``; see :func:`to_uint8_array`."""

    def __init__(self, cls: object, shape: object = None, typecode: object = None) -> None:
        self.cls = cls
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 text")
    return text.encode("latin-1")


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _PickledArray,
    ("numpy._core.multiarray", "_reconstruct"): _PickledArray,
    ("numpy", "ndarray"): _NDArray,
    ("numpy", "dtype"): _PickledDType,
    ("_codecs", "encode"): _latin1_encode,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only builtin values and inert records of numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def to_uint8_array(value: object) -> np.ndarray | None:
    """The uint8 array a :class:`_PickledArray` records, or ``None`` if it records anything else."""
    if not (isinstance(value, _PickledArray) and value.cls is _NDArray):
        return None
    state = value.state
    if not (isinstance(state, tuple) and len(state) == 5):
        return None
    _version, shape, dtype, fortran, raw = state
    if not (
        isinstance(dtype, _PickledDType) and dtype.name in ("u1", b"u1")
        and fortran in (False, 0) and isinstance(raw, bytes)
        and isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)
        and len(raw) == math.prod(shape)
    ):
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()


def safe_unpickle(path: Path) -> Any:
    """The object pickled in ``path``, loaded with :class:`SafeUnpickler` (Python 2 strings as bytes)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # any failure to parse untrusted bytes (incl. Memory/OverflowError) = a bad file
        raise DataError(f"{path}: not a valid CIFAR-10 batch ({exc!r}); delete it and download it again") from exc


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
    data = to_uint8_array(_field(batch, "data", path))
    labels = _field(batch, "labels", path)
    size = math.prod(IMAGE_SHAPE)
    if data is None or data.ndim != 2 or data.shape[1] != size:
        shape = "another type" if data is None else data.shape
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
