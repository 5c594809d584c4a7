"""Real file formats and downloads, on tiny files the tests write in those formats.

The writers here follow the published formats byte by byte (IDX headers with struct, CIFAR-10 dicts
pickled as Python 2's cPickle did, PNG/JPEG through Pillow, tar.gz through tarfile), without
using advrobust's code, so a parser bug cannot cancel out a writer bug.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advrobust.cli.main import main
from advrobust.data import Dataset, load
from advrobust.data import download as dl
from advrobust.data.idx import parse_idx
from advrobust.errors import ChecksumError, DataError

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def assert_contract(data: Dataset, n: int, shape: tuple[int, int, int], num_classes: int) -> None:
    assert data.x.dtype == torch.float32 and tuple(data.x.shape) == (n, *shape)
    assert data.y.dtype == torch.int64 and tuple(data.y.shape) == (n,)
    assert float(data.x.min()) >= 0 and float(data.x.max()) <= 1
    assert len(data.classes) == num_classes and int(data.y.max()) < num_classes


# ---------------------------------------------------------------- writers (independent of advrobust)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_mnist(root: Path, n_train: int = 12, n_test: int = 5, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
        arrays[prefix] = (images, labels)
    return arrays


class Py2Pickler(pickle._Pickler):
    """Pickles ``str`` and ``bytes`` as Python 2 strings (``BINSTRING``), and names numpy's
    ``_reconstruct`` as numpy 1 did: the bytes Python 2's cPickle wrote for the real CIFAR-10 files."""

    def save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, str: save_py2_str, bytes: save_py2_str}


def py2_dumps(obj: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def py3_dumps(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)  # bytes via _codecs.encode, numpy 2 global names


def write_cifar(folder: Path, n: int = 3, seed: int = 0, dumps=py2_dumps) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"label_names": CIFAR_NAMES, "num_cases_per_batch": n, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(dumps(meta))
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        filenames = [f"{name}_{i}.png" for i in range(n)]
        batch = {"batch_label": name, "labels": labels, "data": data, "filenames": filenames}
        (folder / name).write_bytes(dumps(batch))
        written[name] = (data, labels)
    return written


def write_images(folder: Path, images: dict[str, list[np.ndarray]], ext: str = ".png") -> None:
    for cls, items in images.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(items):
            Image.fromarray(image).save(folder / cls / f"{i:03d}{ext}")


# ---------------------------------------------------------------- MNIST IDX


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_round_trip(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load("mnist", root=tmp_path, split=split)
        images, labels = written[prefix]
        assert_contract(data, len(images), (1, 28, 28), 10)
        assert torch.equal(data.x[:, 0], torch.from_numpy(images).float() / 255)
        assert torch.equal(data.y, torch.from_numpy(labels.astype(np.int64)))
    every = load("mnist", root=tmp_path, split="all")
    assert len(every) == 17 and torch.equal(every.y[12:], torch.from_numpy(written["t10k"][1].astype(np.int64)))


@pytest.mark.parametrize(("type_code", "dtype"), [(0x0B, np.int16), (0x0D, np.float32)])
def test_parse_idx_reads_big_endian_types(type_code, dtype):
    array = (np.arange(24).reshape(2, 3, 4) * 1000 - 9000).astype(dtype)
    assert np.array_equal(parse_idx(idx_bytes(array, type_code), "x"), array)


def corrupt(root: Path, name: str, how: str) -> None:
    path = root / f"{name}.gz"
    data = gzip.decompress(path.read_bytes())
    if how == "magic":
        data = b"\x00\x01" + data[2:]
    elif how == "type":
        data = data[:2] + b"\x07" + data[3:]
    elif how == "truncated":
        data = data[:-5]
    elif how == "trailing":
        data = data + b"\x00"
    elif how == "header":
        data = data[:6]
    if how == "gzip":
        path.write_bytes(path.read_bytes()[:-12])
    else:
        path.write_bytes(gzip.compress(data))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("magic", "bad magic number"),
        ("type", "bad magic number"),
        ("truncated", "truncated"),
        ("trailing", "trailing bytes"),
        ("header", "truncated IDX header"),
        ("gzip", "cannot read"),
    ],
)
def test_corrupt_idx_names_the_file_and_the_fault(tmp_path, how, message):
    write_mnist(tmp_path)
    corrupt(tmp_path, "t10k-images-idx3-ubyte", how)
    with pytest.raises(DataError, match=message) as info:
        load("mnist", root=tmp_path)
    assert "t10k-images-idx3-ubyte" in str(info.value) and "\n" not in str(info.value)


def test_mnist_label_count_mismatch_and_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DataError, match="one per image"):
        load("mnist", root=tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="advrobust data download mnist --root"):
        load("mnist", root=tmp_path, split="train")


# ---------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize(("nested", "dumps"), [(True, py2_dumps), (False, py2_dumps), (True, py3_dumps)])
def test_cifar10_round_trip(tmp_path, nested, dumps):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    written = write_cifar(folder, dumps=dumps)
    train = load("cifar10", root=tmp_path, split="train")
    assert_contract(train, 15, (3, 32, 32), 10)
    assert train.classes == CIFAR_NAMES
    data, labels = written["data_batch_2"]
    # rows are the R, G, B planes one after the other, each 32×32 row-major
    assert torch.equal(train.x[3:6, 0], torch.from_numpy(data[:, :1024].reshape(3, 32, 32)).float() / 255)
    assert torch.equal(train.x[3:6, 2], torch.from_numpy(data[:, 2048:].reshape(3, 32, 32)).float() / 255)
    assert train.y[3:6].tolist() == labels
    test = load("cifar10", root=tmp_path)
    assert test.y.tolist() == written["test_batch"][1] and len(load("cifar10", root=tmp_path, split="all")) == 18


class _Touch:
    """An object whose unpickling would create a file: the attack a restricted unpickler must stop."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_cifar10_refuses_a_pickle_that_calls_code(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Touch(marker)]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match="forbidden global"):
        load("cifar10", root=tmp_path)
    assert not marker.exists()
    assert pickle.loads((tmp_path / "test_batch").read_bytes()) and marker.exists()  # the payload is live


def mutations(good: bytes, count: int, seed: int = 0) -> Iterator[bytes]:
    """``count`` corrupt copies of ``good``: every other one truncated, the rest with 1-4 bytes changed."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        data = bytearray(good[: rng.integers(1, len(good))] if trial % 2 else good)
        for i in rng.integers(0, min(len(data), 400), size=0 if trial % 2 else rng.integers(1, 5)):
            data[i] = rng.integers(0, 256)
        yield bytes(data)


def loads_or_data_error(path: Path, payloads: Iterator[bytes], name: str, root: Path) -> int:
    """Write each payload to ``path`` and load; anything but success or DataError fails. The errors."""
    errors = 0
    for payload in payloads:
        path.write_bytes(payload)
        try:
            load(name, root=root)
        except DataError:
            errors += 1
    return errors


def test_cifar10_corrupt_bytes_give_data_errors_never_crashes(tmp_path):
    """(Handing such bytes to numpy's own unpickling can kill the interpreter; the parser must not.)"""
    write_cifar(tmp_path, n=2)
    good = (tmp_path / "test_batch").read_bytes()
    assert loads_or_data_error(tmp_path / "test_batch", mutations(good, 300), "cifar10", tmp_path) > 100


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_corrupt_images_give_data_errors(tmp_path, ext):
    write_images(tmp_path, {"a": [np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)]}, ext)
    path = tmp_path / "a" / f"000{ext}"
    assert loads_or_data_error(path, mutations(path.read_bytes(), 200), "folder", tmp_path) > 50


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "uint8 array N×3072"),
        ({b"data": np.zeros((2, 3072), np.int16), b"labels": [0, 1]}, "uint8 array N×3072"),
        ({b"data": np.zeros((2, 3072), np.uint8, order="F"), b"labels": [0, 1]}, "uint8 array N×3072"),
        ({b"data": b"\x00" * 3072, b"labels": [0]}, "uint8 array N×3072"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "list of 2 ints"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels must lie in 0..9"),
        ({b"labels": [0]}, "no 'data' entry"),
    ],
)
def test_cifar10_bad_batch(tmp_path, batch, message):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(py2_dumps(batch))
    with pytest.raises(DataError, match=message):
        load("cifar10", root=tmp_path)


def test_cifar10_missing_and_truncated_files(tmp_path):
    with pytest.raises(DataError, match="advrobust data download cifar10"):
        load("cifar10", root=tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4 is missing"):
        load("cifar10", root=tmp_path, split="train")
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="not a valid CIFAR-10 batch"):
        load("cifar10", root=tmp_path)


# ---------------------------------------------------------------- image folders


def test_image_folder_round_trip_gray_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    gray = {c: [rng.integers(0, 256, (5, 7), dtype=np.uint8) for _ in range(2)] for c in ("cat", "ant")}
    write_images(tmp_path / "g", gray)
    data = load("folder", root=tmp_path / "g")
    assert_contract(data, 4, (1, 5, 7), 2)
    assert data.classes == ["ant", "cat"] and data.split == "all" and data.y.tolist() == [0, 0, 1, 1]
    assert torch.equal(data.x[2, 0], torch.from_numpy(gray["cat"][0]).float() / 255)

    rgb = {c: [rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)] for c in ("b", "a")}
    write_images(tmp_path / "c", rgb)
    data = load("imagefolder", root=tmp_path / "c", split="all")
    assert_contract(data, 2, (3, 4, 6), 2)
    assert torch.equal(data.x[1], torch.from_numpy(rgb["b"][0]).permute(2, 0, 1).float() / 255)


def test_image_folder_split_layout_shares_labels(tmp_path):
    rng = np.random.default_rng(1)
    image = lambda: rng.integers(0, 256, (3, 3), dtype=np.uint8)  # noqa: E731
    write_images(tmp_path / "train", {"a": [image()], "b": [image()], "c": [image()]})
    write_images(tmp_path / "test", {"c": [image(), image()]})
    test = load("folder", root=tmp_path)
    assert test.classes == ["a", "b", "c"] and test.y.tolist() == [2, 2] and test.split == "test"
    assert len(load("folder", root=tmp_path, split="all")) == 5
    with pytest.raises(DataError, match="no 'train' split"):
        load("folder", root=tmp_path / "test", split="train")


def test_image_folder_reads_jpeg(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    write_images(tmp_path, {"x": [np.stack([smooth] * 3, axis=2)]}, ext=".JPG")
    data = load("folder", root=tmp_path)
    assert_contract(data, 1, (3, 16, 16), 1)
    assert float((data.x[0, 0] - torch.from_numpy(smooth).float() / 255).abs().max()) < 0.1  # lossy


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (np.zeros((5, 8), np.uint8), "differs from"),
        (np.zeros((5, 7, 3), np.uint8), "differs from"),
        (np.zeros((5, 7, 4), np.uint8), "unsupported image mode 'RGBA'"),
        (None, "not a readable PNG/JPEG"),
    ],
)
def test_image_folder_refuses_inconsistent_images(tmp_path, second, message):
    write_images(tmp_path, {"a": [np.zeros((5, 7), np.uint8)]})
    (tmp_path / "b").mkdir()
    if second is None:
        (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    else:
        Image.fromarray(second).save(tmp_path / "b" / "x.png")
    with pytest.raises(DataError, match=message) as info:
        load("folder", root=tmp_path)
    assert str(tmp_path / "b") in str(info.value)


def test_image_folder_empty_and_classless(tmp_path):
    with pytest.raises(DataError, match="no class sub-folders"):
        load("folder", root=tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="has no .png/.jpg/.jpeg images"):
        load("folder", root=tmp_path)


# ---------------------------------------------------------------- npz


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5), lambda x: x[:, None] / 255),
        (np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3), lambda x: x.transpose(0, 3, 1, 2) / 255),
        (np.linspace(0, 1, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5), lambda x: x),
        (np.arange(2 * 1 * 4 * 5, dtype=np.int64).reshape(2, 1, 4, 5), lambda x: x / 255),
    ],
)
def test_npz_layouts_and_dtypes(tmp_path, x, expected):
    np.savez(tmp_path / "d.npz", x=x, y=np.array([[1], [0]]))
    data = load("npz", root=tmp_path / "d.npz")
    want = torch.from_numpy(expected(x).astype(np.float32))
    assert_contract(data, 2, tuple(want.shape[1:]), 2)
    assert torch.allclose(data.x, want, atol=1e-7, rtol=0) and data.y.tolist() == [1, 0]


def test_npz_keras_layout_with_class_names(tmp_path):
    path = tmp_path / "k.npz"
    np.savez(path, x_train=np.zeros((3, 2, 2), np.uint8), y_train=np.array([0, 1, 2]),
             x_test=np.full((1, 2, 2), 255, np.uint8), y_test=np.array([2]), classes=np.array(["a", "b", "c"]))
    test = load("npz", root=path)
    assert test.classes == ["a", "b", "c"] and test.y.tolist() == [2] and float(test.x.min()) == 1.0
    assert len(load("npz", root=path, split="all")) == 4 and load("npz", root=path, split="train").split == "train"


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.full((2, 3, 3), 1.5), "y": np.array([0, 1])}, r"float pixels must .* \[0, 1\]"),
        ({"x": np.full((2, 3, 3), 300), "y": np.array([0, 1])}, "0..255"),
        ({"x": np.zeros((2, 3, 3), np.uint8)}, "has x but no y"),
        ({"images": np.zeros((2, 3, 3))}, "needs arrays x and y"),
        ({"x": np.zeros((2, 5, 3, 5), np.uint8), "y": np.array([0, 1])}, "cannot tell the channel axis"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.array([0, 2]), "classes": np.array(["a", "b"])}, "0..1"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.array([0.0, 1.0])}, "labels must be 2 integers"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.array([0, 1], dtype=object)}, "pickled objects"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load("npz", root=tmp_path / "bad.npz")


def test_npz_not_a_zip(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 nonsense")
    with pytest.raises(DataError, match="not a readable .npz"):
        load("npz", root=tmp_path / "bad.npz")


# ---------------------------------------------------------------- downloads


def resource_for(path: Path, name: str, *urls: str) -> dl.Resource:
    return dl.Resource(name, path.stat().st_size, dl.sha256_of(path), urls or (path.as_uri(),))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_verifies_and_writes_atomically(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(3000))
    dest = tmp_path / "dest"
    path = dl.fetch(resource_for(source, "f.bin"), dest)
    assert path == dest / "f.bin" and path.read_bytes() == source.read_bytes() and leftovers(dest) == []

    def refuse(url):
        raise AssertionError("a verified file must not be downloaded again")

    assert dl.fetch(resource_for(source, "f.bin"), dest, opener=refuse) == path


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"abc" * 100)
    wrong = dl.Resource("f.bin", 300, "0" * 64, (source.as_uri(),))
    with pytest.raises(ChecksumError, match="SHA-256") as info:
        dl.fetch(wrong, tmp_path / "dest")
    assert "\n" not in str(info.value)
    assert list((tmp_path / "dest").iterdir()) == []


def test_fetch_falls_back_to_the_next_mirror(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload")
    resource = resource_for(source, "f.bin", (tmp_path / "absent.bin").as_uri(), source.as_uri())
    assert dl.fetch(resource, tmp_path / "dest").read_bytes() == b"payload"
    unreachable = resource_for(source, "g.bin", (tmp_path / "absent.bin").as_uri())
    with pytest.raises(DataError, match="could not download g.bin") as info:
        dl.fetch(unreachable, tmp_path / "dest")
    assert not isinstance(info.value, ChecksumError)


class _Broken(io.RawIOBase):
    """A response that sends some bytes and then fails: a dropped connection or a Ctrl-C."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.sent = error, False

    def read(self, n: int = -1) -> bytes:
        if self.sent:
            raise self.error
        self.sent = True
        return b"x" * 100


@pytest.mark.parametrize(
    ("error", "raised"), [(ConnectionResetError("reset by peer"), DataError), (KeyboardInterrupt(), KeyboardInterrupt)]
)
def test_interrupted_download_leaves_no_partial_file(tmp_path, error, raised):
    resource = dl.Resource("f.bin", 1000, "0" * 64, ("https://example.invalid/f.bin",))
    with pytest.raises(raised):
        dl.fetch(resource, tmp_path, opener=lambda url: _Broken(error))
    assert list(tmp_path.iterdir()) == []


def test_download_mnist_then_load(tmp_path, monkeypatch, capsys):
    served = tmp_path / "server"
    written = write_mnist(served)
    files = sorted(served.iterdir())
    monkeypatch.setitem(dl.SOURCES, "mnist", tuple(resource_for(p, p.name) for p in files))
    data = load("mnist", root=tmp_path / "data", download=True)
    assert torch.equal(data.x[:, 0], torch.from_numpy(written["t10k"][0]).float() / 255)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [p.name for p in files]
    with pytest.raises(SystemExit) as info:  # the CLI: the same files, already verified
        main(["data", "download", "mnist", "--root", str(tmp_path / "data")])
    assert info.value.code == 0 and capsys.readouterr().out.count("verified") == 4
    unreachable = tuple(dl.Resource(r.filename, r.size, r.sha256, ("file:///absent",)) for r in dl.SOURCES["mnist"])
    monkeypatch.setitem(dl.SOURCES, "mnist", unreachable)
    assert len(load("mnist", root=tmp_path / "data", download=True)) == 5  # present: nothing fetched
    with pytest.raises(DataError, match="could not download t10k-images-idx3-ubyte.gz"):
        load("mnist", root=tmp_path / "elsewhere", download=True)


def tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_download_cifar10_unpacks_and_loads(tmp_path, monkeypatch):
    written = write_cifar(tmp_path / "build" / "cifar-10-batches-py")
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setitem(dl.SOURCES, "cifar10", (resource_for(archive, archive.name),))
    files = dl.download_dataset("cifar10", tmp_path / "data")
    assert files == [tmp_path / "data" / archive.name, tmp_path / "data" / "cifar-10-batches-py"]
    assert leftovers(tmp_path / "data") == []
    assert load("cifar10", root=tmp_path / "data").y.tolist() == written["test_batch"][1]
    (tmp_path / "data" / archive.name).unlink()  # unpacked batches are enough for download=True
    assert load("cifar10", root=tmp_path / "data", download=True).y.tolist() == written["test_batch"][1]


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 3 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("bad", "fault"),
    [
        (_member("/tmp/evil"), "absolute path"),
        (_member("cifar/../../evil"), "'..'"),
        (_member("cifar/link", tarfile.SYMTYPE, "/etc/passwd"), "link or special"),
        (_member("cifar/hard", tarfile.LNKTYPE, "cifar/ok"), "link or special"),
        (_member("cifar/dev", tarfile.CHRTYPE), "link or special"),
    ],
)
def test_safe_extract_refuses_unsafe_members_and_writes_nothing(tmp_path, bad, fault):
    archive = tar_gz(tmp_path / "a.tar.gz", [(_member("cifar/ok"), b"abc"), (bad, b"bad" if bad.isfile() else None)])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DataError, match=fault):
        dl.safe_extract(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil").exists()


def test_safe_extract_corrupt_archive(tmp_path):
    archive = tar_gz(tmp_path / "a.tar.gz", [(_member("cifar/ok"), b"abc")])
    archive.write_bytes(archive.read_bytes()[:20])
    with pytest.raises(DataError, match="corrupt archive"):
        dl.safe_extract(archive, tmp_path)
