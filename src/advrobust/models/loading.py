"""Loading a user's model: ours, theirs with weights, or TorchScript, never unpickling code.

    load_model("cnn.safetensors")                              # an advrobust checkpoint
    load_model("mypkg.nets:resnet18", weights="w.safetensors") # import, call factory(), load weights
    load_model("nets.py:Net", weights="state_dict.pt")         # a factory in a file; torch.load(weights_only=True)
    load_model("model.ts")                                     # TorchScript (torch.jit.load)
    load_model("model.onnx")                                   # ONNX, a score-only black box (onnxruntime)

Every failure raises :class:`~advrobust.errors.ModelLoadError` with a one-line message that says
what was wrong and what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from advrobust.errors import ModelLoadError
from advrobust.models.blackbox import ScoreModel
from advrobust.models.checkpoint import load_checkpoint, load_state

STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def load_model(spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None,
               device: str | torch.device = "cpu") -> nn.Module | ScoreModel:
    """Load a model from ``spec`` (see the module docstring); returned in eval mode on ``device``.

    ``spec`` is a ``.safetensors`` advrobust checkpoint, a TorchScript file, an ``.onnx`` file
    (:func:`advrobust.models.onnx.load_onnx`: scores only, no gradients), or
    ``package.module:factory`` / ``path/to/file.py:factory`` (``factory()`` returns an
    ``nn.Module``), optionally with ``weights``: a ``.safetensors`` file or a state dict
    (``.pt``/``.pth``/``.bin``/``.ckpt``) read with ``torch.load(weights_only=True)``.
    """
    text = os.fspath(spec)
    if _is_factory(text):
        model = _call_factory(text)
        if weights is not None:
            load_state(model, _read_weights(Path(weights)), weights)
        return model.to(device).eval()
    path = Path(text)
    if not path.is_file():
        raise ModelLoadError(
            f"model {text!r} is neither an existing file nor a 'package.module:factory' spec: check the path"
        )
    if weights is not None:
        raise ModelLoadError(f"weights= goes with a 'package.module:factory' spec, not with the file {text}")
    if path.suffix == ".safetensors":
        return load_checkpoint(path, device)[0]
    if path.suffix == ".onnx":
        from advrobust.models.onnx import load_onnx  # needs the optional onnxruntime

        return load_onnx(path)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch deprecates TorchScript, but users still ship it
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as exc:
            raise ModelLoadError(f"{path}: corrupt TorchScript file ({str(exc).splitlines()[0]})") from None
    raise ModelLoadError(
        f"{path} is not a TorchScript file or an advrobust checkpoint; if it holds a state dict, give its "
        f"architecture: load_model('package.module:factory', weights='{path}')"
    )


def _is_factory(text: str) -> bool:
    if ":" not in text or Path(text).exists():
        return False
    module, _, attr = text.rpartition(":")
    return bool(module) and attr.isidentifier() and not (len(module) == 1 and module.isalpha())  # not C:\


def _call_factory(text: str) -> nn.Module:
    module_name, _, attr = text.rpartition(":")
    module = _import(module_name)
    factory: Callable[[], Any] | None = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ModelLoadError(f"{module_name} has no callable {attr!r}: check the name after the ':'")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - user code: report, don't crash
        raise ModelLoadError(f"{text}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{text}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _import(module_name: str) -> Any:
    try:
        if not module_name.endswith(".py"):
            return importlib.import_module(module_name)
        path = Path(module_name)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist: check the path before the ':'")
        spec = importlib.util.spec_from_file_location(f"_advrobust_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    except ModelLoadError:
        raise
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"cannot import {module_name!r} ({exc}): install the package or run from the folder that holds it"
        ) from None
    except Exception as exc:  # noqa: BLE001 - user code
        raise ModelLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} does not exist: check the path")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: not a readable safetensors file ({exc}): is it corrupt?") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{path} holds more than tensors (torch.load(weights_only=True) refused: "
            f"{_first_line(str(exc))}); it may run code, so advrobust will not unpickle it: save "
            "model.state_dict() instead, or convert it to .safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"{path}: cannot read the state dict ({_first_line(str(exc))}): corrupt file?") from None
    return _state_dict_of(obj, path)


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside what ``torch.load`` returned: the dict itself, or under ``state_dict``
    / ``model`` (training scripts' usual layout); a ``module.`` prefix (DataParallel) is dropped."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path} does not hold a state dict (a dict of names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
