"""Reader of TensorFlow.js layers-free weight files: a JSON manifest and the binary shards it names.

    tensors = read_tfjs("model/face_recognition_model-weights_manifest.json")   # name -> float32 tensor
    weight = to_torch_layout("conv0/filters", tensors["conv0/filters"])         # HWIO -> OIHW

The format (TensorFlow.js ``tf.io`` weights manifest): a JSON list of groups, each with ``paths``
(binary shards, read in order and concatenated) and ``weights``, a list of entries ``{name, shape,
dtype}`` whose bytes follow one another in the concatenated binary. An entry may carry
``quantization: {dtype, scale, min}``: its bytes then hold ``uint8`` or ``uint16`` codes ``q`` and the
value is ``min + scale * q`` (computed in double precision and rounded once to float32, as
TensorFlow.js's ``io.decodeWeights`` does), or ``float16`` halves.

TensorFlow stores convolution filters as ``H×W×in×out`` (HWIO) and depthwise filters as
``H×W×in×multiplier``; PyTorch wants ``out×in×H×W`` and ``(in·multiplier)×1×H×W``:
:func:`to_torch_layout` converts both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from advrobust.errors import ModelLoadError

# bytes per stored element
_PLAIN_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4")}
_QUANTIZED_DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}


def _entry_dtype(entry: dict, where: str) -> tuple[np.dtype, dict | None]:
    quantization = entry.get("quantization")
    if quantization is not None:
        kind = quantization.get("dtype") if isinstance(quantization, dict) else None
        if kind not in _QUANTIZED_DTYPES:
            raise ModelLoadError(
                f"{where}: weight {entry.get('name')!r} has quantization dtype {kind!r}; "
                f"supported: {', '.join(_QUANTIZED_DTYPES)}"
            )
        if kind != "float16" and not all(isinstance(quantization.get(k), int | float) for k in ("scale", "min")):
            raise ModelLoadError(f"{where}: weight {entry.get('name')!r} is quantized without numeric scale and min")
        return _QUANTIZED_DTYPES[kind], quantization
    dtype = entry.get("dtype")
    if dtype not in _PLAIN_DTYPES:
        raise ModelLoadError(
            f"{where}: weight {entry.get('name')!r} has dtype {dtype!r}; supported: {', '.join(_PLAIN_DTYPES)}"
        )
    return _PLAIN_DTYPES[dtype], None


def _check_entry(entry: object, where: str) -> tuple[str, list[int]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ModelLoadError(f"{where}: a weight entry lacks its 'name': {str(entry)[:80]}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ModelLoadError(f"{where}: weight {entry['name']!r} has no valid 'shape' (a list of sizes): {shape!r}")
    return entry["name"], shape


def _decode(raw: bytes, dtype: np.dtype, quantization: dict | None, shape: list[int]) -> torch.Tensor:
    codes = np.frombuffer(raw, dtype=dtype)
    if quantization is None:
        values = codes.copy()
    elif quantization["dtype"] == "float16":
        values = codes.astype(np.float32)
    else:  # value = min + scale * q in double, rounded once to float32
        values = (codes.astype(np.float64) * float(quantization["scale"]) + float(quantization["min"])).astype(
            np.float32
        )
    return torch.from_numpy(values.reshape(shape))


def _load_manifest(manifest: Path) -> list:
    try:
        groups = json.loads(manifest.read_text())
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{manifest}: no such weights manifest; check the path") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{manifest}: not a JSON weights manifest ({exc})") from exc
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("paths"), list) and isinstance(g.get("weights"), list)
        for g in groups
    ):
        raise ModelLoadError(
            f"{manifest}: not a TensorFlow.js weights manifest (expected a list of groups with 'paths' and 'weights')"
        )
    return groups


def read_tfjs(manifest: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the TensorFlow.js weights ``manifest``, by name, as float32/int32 in TF layout.

    Raises :class:`~advrobust.errors.ModelLoadError` for a manifest that is not one, an unsupported
    dtype, a missing shard, or shards whose total size differs from what the manifest describes
    (truncated or over-long: a mismatch means the files do not belong together).
    """
    manifest = Path(manifest)
    tensors: dict[str, torch.Tensor] = {}
    for group in _load_manifest(manifest):
        shards = [manifest.parent / str(p) for p in group["paths"]]
        missing = [str(s) for s in shards if not s.is_file()]
        if missing:
            raise ModelLoadError(f"{manifest}: missing weight file(s) {', '.join(missing)}")
        blob = b"".join(s.read_bytes() for s in shards)
        layout = []
        for entry in group["weights"]:
            name, shape = _check_entry(entry, str(manifest))
            dtype, quantization = _entry_dtype(entry, str(manifest))
            layout.append((name, shape, dtype, quantization, math.prod(shape) * dtype.itemsize))
        expected = sum(item[-1] for item in layout)
        if len(blob) != expected:
            fault = "truncated" if len(blob) < expected else "longer than described"
            raise ModelLoadError(
                f"{manifest}: weight files hold {len(blob)} bytes but the manifest describes {expected} "
                f"({fault}); download the model again"
            )
        offset = 0
        for name, shape, dtype, quantization, size in layout:
            tensors[name] = _decode(blob[offset : offset + size], dtype, quantization, shape)
            offset += size
    return tensors


def to_torch_layout(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (TF layout) in PyTorch's layout: 4-D filters HWIO → OIHW; ``*depthwise_filter`` H×W×C×M → (C·M)×1×H×W.

    Tensors of other ranks are returned as they are (biases, scales, fully connected matrices).
    """
    if tensor.dim() != 4:
        return tensor.contiguous()
    if name.endswith("depthwise_filter"):
        height, width, channels, multiplier = tensor.shape
        return tensor.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, height, width).contiguous()
    return tensor.permute(3, 2, 0, 1).contiguous()
