"""The built-in mnist-5k split, the Dataset type, the registry's errors and the `advrobust data` CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from advrobust.cli.main import main
from advrobust.data import Dataset, default_root, list_datasets, load
from advrobust.data.builtin import _raw, split_indices
from advrobust.errors import DataError, InputError


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, np.ndarray]:
    return _raw()


@pytest.fixture(scope="module")
def mnist_test() -> Dataset:
    return load("mnist-5k", split="test")


def test_mnist5k_split_is_stratified_disjoint_and_complete(raw):
    _, labels = raw
    split = split_indices(labels)
    train, test = split["train"], split["test"]
    assert len(train) == 4000 and len(test) == 1000
    assert np.bincount(labels[train], minlength=10).tolist() == [400] * 10
    assert np.bincount(labels[test], minlength=10).tolist() == [100] * 10
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.union1d(train, test), np.arange(5000))


def test_mnist5k_split_is_fixed_and_follows_the_documented_rule(raw):
    _, labels = raw
    first, second = split_indices(labels), split_indices(labels.copy())
    assert all(np.array_equal(first[k], second[k]) for k in ("train", "test"))
    # Re-derive the rule of the module docstring independently: per digit, order positions by
    # SHA-256 of "mnist-5k/{digit}/{position}", the first 100 are test.
    expected = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        digests = {int(i): hashlib.sha256(f"mnist-5k/{c}/{i}".encode()).digest() for i in members}
        expected += sorted(digests, key=digests.get)[:100]
    assert np.array_equal(first["test"], np.sort(expected))
    # Not the naive split: every digit draws test points from both halves of its block.
    for c in range(10):
        positions = np.flatnonzero(labels == c)
        in_test = np.isin(positions, first["test"])
        assert 20 < in_test[:250].sum() < 80 and 20 < in_test[250:].sum() < 80


def test_mnist5k_loads_the_split_pixels_exactly(raw, mnist_test):
    images, labels = raw
    test = split_indices(labels)["test"]
    assert mnist_test.x.dtype == torch.float32 and mnist_test.x.shape == (1000, 1, 28, 28)
    assert mnist_test.y.dtype == torch.int64
    assert torch.equal(mnist_test.x, torch.from_numpy(images[test]).float().unsqueeze(1) / 255)
    assert torch.equal(mnist_test.y, torch.from_numpy(labels[test]))
    assert mnist_test.x.min() == 0 and mnist_test.x.max() == 1
    assert mnist_test.classes == [str(d) for d in range(10)]
    everything = load("mnist-5k", split="all")
    assert len(everything) == 5000 and everything.class_counts() == [500] * 10
    assert len(load("mnist-5k", split="train")) == 4000


def test_subset_is_stratified_deterministic_and_drawn_from_the_data(mnist_test):
    sub = mnist_test.subset(200, seed=3)
    assert sub.class_counts() == [20] * 10
    assert torch.equal(sub.x, mnist_test.subset(200, seed=3).x)
    assert not torch.equal(sub.x, mnist_test.subset(200, seed=4).x)
    flat = mnist_test.x.flatten(1)
    rows = [int((flat == row).all(1).nonzero()[0]) for row in sub.x.flatten(1)]
    assert len(set(rows)) == 200 and torch.equal(mnist_test.y[rows], sub.y)
    odd = mnist_test.subset(37)
    assert sum(odd.class_counts()) == 37 and all(3 <= c <= 4 for c in odd.class_counts())


def test_subset_quotas_follow_unequal_class_sizes():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    data = Dataset("toy", "all", torch.rand(100, 1, 2, 2), y, ["a", "b", "c"])
    assert data.subset(10).class_counts() == [6, 3, 1]
    assert data.subset(15).class_counts() == [9, 5, 1]  # exact 9, 4.5, 1.5: ties go to the lower class
    with pytest.raises(InputError):
        data.subset(0)
    with pytest.raises(InputError):
        data.subset(101)


def test_dataset_properties_and_to(mnist_test):
    assert len(mnist_test) == 1000 and mnist_test.num_classes == 10
    assert mnist_test.input_shape == (1, 28, 28)
    moved = mnist_test.to("cpu")
    assert torch.equal(moved.x, mnist_test.x) and moved.classes == mnist_test.classes
    assert "n=1000" in repr(mnist_test)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.full((2, 1, 2, 2), 1.5), torch.tensor([0, 1]), r"\[0, 1\]"),
        (torch.full((2, 1, 2, 2), float("nan")), torch.tensor([0, 1]), r"\[0, 1\]"),
        (torch.zeros(2, 1, 2, 2, dtype=torch.float64), torch.tensor([0, 1]), "float32"),
        (torch.zeros(2, 4), torch.tensor([0, 1]), "N×C×H×W"),
        (torch.zeros(2, 1, 2, 2), torch.tensor([0, 2]), "labels must lie"),
        (torch.zeros(2, 1, 2, 2), torch.tensor([0, 1, 1]), "shape"),
    ],
)
def test_dataset_refuses_broken_invariants(x, y, message):
    with pytest.raises(DataError, match=message):
        Dataset("toy", "all", x, y, ["a", "b"])


def test_list_datasets_names_every_loader():
    names = list_datasets()
    assert set(names) == {"mnist-5k", "mnist", "cifar10", "folder", "npz"}
    assert all(isinstance(d, str) and d and "\n" not in d for d in names.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "nope"}, "unknown data set 'nope'.*advrobust data list"),
        ({"name": "mnist-5k", "split": "val"}, "unknown split 'val'"),
        ({"name": "mnist-5k", "root": "/tmp"}, "built in"),
        ({"name": "folder"}, "needs a root"),
        ({"name": "npz", "root": "/nonexistent/a.npz"}, "does not exist"),
        ({"name": "folder", "root": "/nonexistent/dir"}, "does not exist"),
        ({"name": "folder", "root": "/tmp", "download": True}, "cannot be downloaded"),
    ],
)
def test_load_errors_are_one_line_data_errors(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(DataError, match=message) as info:
        load(name, **kwargs)
    assert "\n" not in str(info.value)


def test_aliases_resolve(tmp_path):
    with pytest.raises(DataError, match="image folder"):
        load("ImageFolder", root=tmp_path / "missing")


def test_default_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVROBUST_DATA_DIR", str(tmp_path / "d"))
    assert default_root("CIFAR10") == tmp_path / "d" / "cifar10"
    monkeypatch.delenv("ADVROBUST_DATA_DIR")
    monkeypatch.delenv("ADVROBUST_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert default_root("mnist") == tmp_path / "c" / "advrobust" / "data" / "mnist"


def test_import_is_light():
    """Beyond torch and numpy, importing advrobust.data loads only advrobust's own small modules."""
    code = (
        "import sys, torch, numpy; before = set(sys.modules); import advrobust.data; "
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('advrobust')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code), out, err


def test_cli_data_list(capsys):
    code, out, _ = run_cli(["data", "list"], capsys)
    assert code == 0
    for name in list_datasets():
        assert name in out


def test_cli_data_show_prints_shape_counts_and_range(capsys):
    code, out, _ = run_cli(["data", "show", "mnist-5k", "--split", "train"], capsys)
    assert code == 0
    assert "4000" in out and "1×28×28" in out and "[0, 1]" in out
    assert out.count(" 400 ") == 10  # one row per digit


def test_cli_data_show_unknown_name_exits_1_with_one_line(capsys):
    code, out, err = run_cli(["data", "show", "nope"], capsys)
    assert code == 1
    assert err.startswith("error: unknown data set 'nope'") and err.count("\n") == 1
    assert out == ""
