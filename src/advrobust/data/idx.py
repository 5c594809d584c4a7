"""``mnist``: the real MNIST files, parsed with numpy.

MNIST: LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document recognition",
Proc. IEEE 1998; files and format at http://yann.lecun.com/exdb/mnist/.

IDX layout (as documented on that page): a 4-byte magic number ``0x00 0x00 T D`` where ``T``
is the element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and
``D`` the number of dimensions; then ``D`` big-endian uint32 sizes; then the elements, big-endian, in
C order. :func:`read_idx` checks each part and that the file holds exactly the announced number of
bytes, so a corrupt or truncated file is a :class:`DataError` naming the file and the fault.

MNIST files (``.gz`` or raw, in ``root``): ``train-images-idx3-ubyte`` (60,000×28×28 uint8),
``train-labels-idx1-ubyte`` (60,000 uint8), ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``
(10,000 each). A file is read through gzip when it starts with the gzip magic bytes, whatever its name.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from advrobust.data.dataset import Dataset, images_to_tensor, labels_to_tensor, load_split
from advrobust.errors import DataError

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
CLASSES = [str(d) for d in range(10)]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when it is a gzip file."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); delete it and download it again") from exc


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """The array held by the IDX bytes ``data`` (native byte order); ``source`` names it in errors."""
    if len(data) < 4:
        raise DataError(f"{source}: not an IDX file: {len(data)} bytes, shorter than the 4-byte header")
    zero, type_code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or type_code not in IDX_TYPES:
        raise DataError(f"{source}: not an IDX file: bad magic number 0x{data[:4].hex()}")
    if ndim == 0:
        raise DataError(f"{source}: corrupt IDX header: 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header: {ndim} dimensions need {header} bytes, file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        fault = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{source}: {fault}: shape {shape} of {dtype.name} needs {expected} bytes, file has {len(data)}; "
            "delete it and download it again"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (``.gz`` or raw)."""
    return parse_idx(read_bytes(path), str(path))


def find_file(root: Path, stem: str) -> Path:
    """``root/stem`` or ``root/stem.gz``, whichever exists (raw first)."""
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"MNIST file {stem}[.gz] not found in {root}: run `advrobust data download mnist --root {root}` "
        "or copy the four IDX files there"
    )


def _load_part(root: Path, split: str) -> Dataset:
    images_path, labels_path = (find_file(root, stem) for stem in FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"{images_path}: expected uint8 images N×H×W, got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise DataError(
            f"{labels_path}: expected {images.shape[0]} uint8 labels (one per image), got {labels.dtype} {labels.shape}"
        )
    x = images_to_tensor(images, str(images_path))
    y = labels_to_tensor(labels, len(labels), len(CLASSES), str(labels_path))
    return Dataset("mnist", split, x, y, list(CLASSES))


def load_mnist(root: Path, split: str) -> Dataset:
    return load_split(lambda part: _load_part(root, part), split, str(root))
