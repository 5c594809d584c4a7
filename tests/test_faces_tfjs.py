"""The TF.js weights reader on small files written here: float32, uint8/uint16/float16-quantized, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from advrobust.errors import ModelLoadError
from advrobust.models.tfjs import read_tfjs, to_torch_layout


def _write(folder, entries, blobs, shards=None):
    shards = shards or ["model.bin"]
    payload = b"".join(blobs)
    cut = len(payload) // len(shards)
    for index, shard in enumerate(shards):
        end = None if index == len(shards) - 1 else (index + 1) * cut
        (folder / shard).write_bytes(payload[index * cut : end])
    manifest = folder / "model-weights_manifest.json"
    manifest.write_text(json.dumps([{"paths": shards, "weights": entries}]))
    return manifest


def test_float32_and_uint8_quantized_values(tmp_path):
    plain = np.arange(24, dtype="<f4").reshape(2, 3, 2, 2) - 5.5
    codes = np.array([0, 1, 128, 255], dtype=np.uint8)
    scale, low = 0.013836609615999109, -1.411334180831909
    manifest = _write(
        tmp_path,
        [
            {"name": "a/filters", "shape": [2, 3, 2, 2], "dtype": "float32"},
            {"name": "a/bias", "shape": [4], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": scale, "min": low}},
        ],
        [plain.tobytes(), codes.tobytes()],
        shards=["part1.bin", "part2.bin"],  # the binary split over two shards, read in order
    )
    tensors = read_tfjs(manifest)
    assert torch.equal(tensors["a/filters"], torch.from_numpy(plain))
    expected = (codes.astype(np.float64) * scale + low).astype(np.float32)  # once rounded, as TF.js
    assert tensors["a/bias"].dtype == torch.float32
    assert torch.equal(tensors["a/bias"], torch.from_numpy(expected))
    assert tensors["a/bias"][0].item() == pytest.approx(low, rel=1e-6)
    assert tensors["a/bias"][3].item() == pytest.approx(low + 255 * scale, rel=1e-6)


def test_uint16_and_float16_quantized(tmp_path):
    codes = np.array([0, 65535, 7], dtype="<u2")
    halves = np.array([0.5, -2.25], dtype="<f2")
    manifest = _write(
        tmp_path,
        [
            {"name": "u", "shape": [3], "dtype": "float32",
             "quantization": {"dtype": "uint16", "scale": 0.5, "min": -1}},
            {"name": "h", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        ],
        [codes.tobytes(), halves.tobytes()],
    )
    tensors = read_tfjs(manifest)
    assert tensors["u"].tolist() == [-1.0, 32766.5, 2.5]
    assert tensors["h"].tolist() == [0.5, -2.25]


def test_short_and_long_binary_are_refused(tmp_path):
    entries = [{"name": "w", "shape": [4], "dtype": "float32"}]
    manifest = _write(tmp_path, entries, [np.zeros(3, dtype="<f4").tobytes()])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_tfjs(manifest)
    manifest = _write(tmp_path, entries, [np.zeros(5, dtype="<f4").tobytes()])
    with pytest.raises(ModelLoadError, match="longer than described"):
        read_tfjs(manifest)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a JSON weights manifest"),
        (json.dumps({"weights": []}), "not a TensorFlow.js weights manifest"),
        (json.dumps([{"paths": ["model.bin"], "weights": [{"name": "w", "shape": "4", "dtype": "float32"}]}]),
         "no valid 'shape'"),
        (json.dumps([{"paths": ["model.bin"], "weights": [{"name": "w", "shape": [1], "dtype": "complex64"}]}]),
         "dtype 'complex64'"),
        (json.dumps([{"paths": ["model.bin"], "weights": [
            {"name": "w", "shape": [1], "dtype": "float32", "quantization": {"dtype": "uint8"}}]}]),
         "without numeric scale and min"),
        (json.dumps([{"paths": ["absent.bin"], "weights": []}]), "missing weight file"),
    ],
)
def test_wrong_manifests_are_refused(tmp_path, content, message):
    (tmp_path / "model.bin").write_bytes(np.zeros(1, dtype="<f4").tobytes())
    manifest = tmp_path / "m.json"
    manifest.write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        read_tfjs(manifest)
    with pytest.raises(ModelLoadError, match="no such weights manifest"):
        read_tfjs(tmp_path / "absent.json")


def test_layouts_match_tensorflow_convolutions():
    """HWIO → OIHW and depthwise H×W×C×M → (C·M)×1×H×W give the same convolution as TF's index rules."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 5, 5, generator=gen, dtype=torch.float64)
    hwio = torch.randn(3, 3, 3, 4, generator=gen, dtype=torch.float64)
    out = torch.nn.functional.conv2d(x, to_torch_layout("c/filters", hwio))
    # TF: out[o, i, j] = sum_{dy, dx, c} x[c, i + dy, j + dx] * hwio[dy, dx, c, o]
    patches = x[0].unfold(1, 3, 1).unfold(2, 3, 1)  # C×3×3×kh×kw
    expected = torch.einsum("cijyx,yxco->oij", patches, hwio)
    assert torch.allclose(out[0], expected)
    depthwise = torch.randn(3, 3, 3, 2, generator=gen, dtype=torch.float64)  # multiplier 2
    out = torch.nn.functional.conv2d(x, to_torch_layout("c/depthwise_filter", depthwise), groups=3)
    expected = torch.einsum("cijyx,yxcm->cmij", patches, depthwise).reshape(6, 3, 3)  # channel c·M + m
    assert torch.allclose(out[0], expected)
    bias = torch.arange(3.0)
    assert torch.equal(to_torch_layout("c/bias", bias), bias)
