"""Checkpoints: one safetensors file holding the weights and a JSON metadata entry.

    save_checkpoint("cnn.safetensors", model, {"arch": "mnist-cnn", "num_classes": 10,
                                              "input_shape": [1, 28, 28], "data": "mnist-5k"})
    model, meta = load_checkpoint("cnn.safetensors")

safetensors stores raw tensors and a string header, nothing executable, so loading a checkpoint
from an untrusted source cannot run code (unlike unpickling). Files are written atomically.

Metadata keys (all JSON): ``arch``, ``arch_kwargs``, ``num_classes``, ``input_shape`` (needed to
rebuild the model), ``normalization`` (``{"mean", "std"}`` when the model is
:class:`~advrobust.models.normalize.Normalized`, filled in automatically), ``data``, ``classes``,
``clean_accuracy``, ``robust_accuracy``, ``training`` (method, eps, epochs, seed, ...), and, filled
in automatically, ``advrobust_version``, ``created`` (UTC, ISO 8601) and ``fingerprint``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from advrobust.errors import InputError, ModelLoadError
from advrobust.models.architectures import ARCHITECTURES, create
from advrobust.models.dense import DENSE_ARCHITECTURES, create_dense
from advrobust.models.fingerprint import fingerprint
from advrobust.models.normalize import Normalized, with_normalization
from advrobust.paths import atomic_path, cache_path
from advrobust.version import __version__

FORMAT = "advrobust.checkpoint"
FORMAT_VERSION = "1"
REQUIRED = ("arch", "num_classes", "input_shape")


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model``'s weights and ``meta`` (JSON-serializable) to one safetensors file, atomically.

    ``meta`` should name the architecture (``arch``, ``arch_kwargs``, ``num_classes``,
    ``input_shape``) so that :func:`load_checkpoint` can rebuild the model; without them the file
    can still be loaded with ``load_model("pkg.module:factory", weights=path)``.
    """
    meta = dict(meta)
    if isinstance(model, Normalized):
        meta["normalization"] = {
            "mean": model.normalize.mean.flatten().tolist(),
            "std": model.normalize.std.flatten().tolist(),
        }
    meta.setdefault("advrobust_version", __version__)
    meta.setdefault("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    meta["fingerprint"] = fingerprint(model)
    try:
        header = json.dumps(meta, sort_keys=True, allow_nan=True)
    except TypeError as exc:
        raise InputError(f"checkpoint metadata must be JSON-serializable: {exc}") from None
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "format_version": FORMAT_VERSION, "meta": header})
    return Path(path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of an advrobust checkpoint, without loading its weights."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable safetensors file ({exc}): is it corrupt?") from None
    if header.get("format") != FORMAT or "meta" not in header:
        raise ModelLoadError(
            f"{path} is a safetensors file but not an advrobust checkpoint (no metadata): load it with "
            f"load_model('package.module:factory', weights='{path}')"
        )
    try:
        return json.loads(header["meta"])
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} has corrupt checkpoint metadata ({exc})") from None


def build_model(meta: dict[str, Any]) -> nn.Module:
    """The (untrained) model that a checkpoint's metadata describes."""
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ModelLoadError(
            f"checkpoint metadata lacks {', '.join(missing)}: it cannot rebuild the model; load it with "
            "load_model('package.module:factory', weights=PATH)"
        )
    if meta["arch"] in DENSE_ARCHITECTURES:  # a segmenter or detector (advrobust.models.dense)
        return create_dense(meta["arch"], int(meta["num_classes"]), tuple(meta["input_shape"]),
                            **meta.get("arch_kwargs", {}))
    if meta["arch"] not in ARCHITECTURES:
        raise ModelLoadError(
            f"checkpoint architecture {meta['arch']!r} is not registered here (have {', '.join(ARCHITECTURES)}): "
            "upgrade advrobust or load it with load_model('package.module:factory', weights=PATH)"
        )
    model = create(meta["arch"], int(meta["num_classes"]), tuple(meta["input_shape"]), **meta.get("arch_kwargs", {}))
    norm = meta.get("normalization")
    return with_normalization(model, norm["mean"], norm["std"]) if norm else model


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike[str]) -> None:
    """``model.load_state_dict(state)`` with a one-line error naming missing, unexpected or
    mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_few(shapes)}")
    if problems:
        raise ModelLoadError(
            f"weights in {source} do not fit the model: {'; '.join(problems)} "
            "(is it the right architecture / factory?)"
        )
    model.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of an advrobust checkpoint, load its weights; return ``(model, meta)``.

    The model is in eval mode on ``device``. Never unpickles anything.
    """
    meta = read_metadata(path)
    model = build_model(meta)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read the weights ({exc}): is the file corrupt?") from None
    load_state(model, state, path)
    return model.to(device).eval(), meta


def recipe_key(recipe: Any) -> str:
    """A short hash of a training recipe (a dataclass or a JSON-able dict): the identity of its cached
    checkpoint."""
    plain = asdict(recipe) if is_dataclass(recipe) else recipe
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:12]


def cached_checkpoint(
    name: str, recipe: Any, train: Callable[[], tuple[nn.Module, dict[str, Any]]]
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, meta)`` of the checkpoint ``<name>-<hash of recipe>.safetensors`` in the cache's
    ``models/`` folder: loaded if it is there and readable, else ``train()``-ed and saved (a corrupt or
    outdated entry is trained again). Any change to ``recipe`` names another file."""
    path = cache_path("models", f"{name}-{recipe_key(recipe)}.safetensors")
    if path.exists():
        try:
            return load_checkpoint(path)
        except ModelLoadError:
            path.unlink()
    model, meta = train()
    return model.eval(), read_metadata(save_checkpoint(path, model, meta))


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"checkpoint {p} does not exist (or is not a file): check the path")
    return p


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
