"""Getting the face models: checksums, truncation, missing npm, conversion to safetensors (no network)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch

from advrobust.errors import ChecksumError, DataError
from advrobust.faces import weights


def _fake_package(root, monkeypatch):
    """A package folder with a tiny "face_recognition_model" and its FILES table patched to match."""
    (root / "model").mkdir(parents=True)
    (root / "demo").mkdir()
    codes = np.array([0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100], dtype=np.uint8)
    (root / "model" / "face_recognition_model.bin").write_bytes(codes.tobytes())
    entry = {"name": "conv/filters", "shape": [1, 2, 3, 2], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}
    manifest = [{"paths": ["face_recognition_model.bin"], "weights": [entry]}]
    (root / "model" / "face_recognition_model-weights_manifest.json").write_text(json.dumps(manifest))
    for name in weights.DEMO_PHOTOS:
        (root / "demo" / name).write_bytes(name.encode())
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            files[str(path.relative_to(root))] = (len(data), hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(weights, "FILES", files)
    monkeypatch.setattr(weights, "MODELS", {"face_recognition": "face_recognition_model"})
    return codes


def test_install_from_folder_and_tarball_converts_to_torch_layout(tmp_path, monkeypatch):
    codes = _fake_package(tmp_path / "pkg" / "package", monkeypatch)
    out = tmp_path / "cache"
    written = weights.download_faces(tmp_path / "pkg", folder=out)  # the folder holding package/
    assert weights.weights_path("face_recognition", out) in written
    assert all(p.is_file() for p in weights.demo_photo_paths(out))
    tensors, meta = weights.load_weights("face_recognition", out)
    hwio = torch.from_numpy((codes.astype(np.float64) * 0.5 - 1.0).astype(np.float32).reshape(1, 2, 3, 2))
    assert torch.equal(tensors["conv.filters"], hwio.permute(3, 2, 0, 1))  # OIHW
    assert meta["source"].startswith("npm @vladmandic/face-api@1.7.15")
    assert meta["license"] == "MIT"
    # the same package as a tarball (what `npm pack` writes)
    tarball = tmp_path / "face-api.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "pkg" / "package", arcname="package")
    weights.download_faces(tarball, folder=tmp_path / "cache2")
    again, _ = weights.load_weights("face_recognition", tmp_path / "cache2")
    assert torch.equal(again["conv.filters"], tensors["conv.filters"])


def test_wrong_checksum_and_truncated_file_are_refused(tmp_path, monkeypatch):
    root = tmp_path / "package"
    _fake_package(root, monkeypatch)
    bin_path = root / "model" / "face_recognition_model.bin"
    good = bin_path.read_bytes()
    bin_path.write_bytes(bytes([good[0] ^ 1]) + good[1:])
    with pytest.raises(ChecksumError, match="SHA-256"):
        weights.download_faces(root, folder=tmp_path / "out")
    bin_path.write_bytes(good[:-3])
    with pytest.raises(ChecksumError, match="truncated"):
        weights.download_faces(root, folder=tmp_path / "out")
    assert not weights.weights_path("face_recognition", tmp_path / "out").exists()
    (root / "demo" / "sample3.jpg").unlink()
    bin_path.write_bytes(good)
    with pytest.raises(DataError, match="missing from the package"):
        weights.download_faces(root, folder=tmp_path / "out")


def test_missing_npm_and_bad_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    with pytest.raises(DataError, match="npm not found"):
        weights.download_faces(folder=tmp_path / "out")
    with pytest.raises(DataError, match="no such file or folder"):
        weights.download_faces(tmp_path / "absent.tgz", folder=tmp_path / "out")
    with pytest.raises(DataError, match="no model/ folder"):
        weights.download_faces(tmp_path, folder=tmp_path / "out")
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="corrupt archive"):
        weights.download_faces(broken, folder=tmp_path / "out")


def test_unsafe_tarball_member_is_refused(tmp_path):
    tarball = tmp_path / "evil.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DataError, match="refusing to extract"):
        weights.download_faces(tarball, folder=tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_load_weights_errors(tmp_path):
    with pytest.raises(DataError, match="advrobust data download faces"):
        weights.load_weights("face_recognition", tmp_path)
    with pytest.raises(DataError, match="unknown face model"):
        weights.load_weights("arcface", tmp_path)
    weights.weights_path("face_recognition", tmp_path).write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable"):
        weights.load_weights("face_recognition", tmp_path)
