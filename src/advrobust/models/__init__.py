"""Models: a small CNN zoo, the Normalize wrapper, checkpoints with metadata, loading user models.

    from advrobust import models
    net = models.create("mnist-cnn", num_classes=10, input_shape=(1, 28, 28), seed=0)
    models.save_checkpoint("cnn.safetensors", net, {"arch": "mnist-cnn", ...})
    net, meta = models.load_checkpoint("cnn.safetensors")
    user = models.load_model("mypkg.nets:Net", weights="net.pt")
    models.BPDA(models.defences.BitDepth(2), net)   # attack a non-differentiable defence
"""

from __future__ import annotations

from advrobust.models import defences
from advrobust.models.architectures import ARCHITECTURES, create, list_architectures
from advrobust.models.bpda import BPDA
from advrobust.models.checkpoint import build_model, load_checkpoint, read_metadata, save_checkpoint
from advrobust.models.fingerprint import fingerprint
from advrobust.models.loading import load_model
from advrobust.models.normalize import Normalize, Normalized, with_normalization

__all__ = [
    "ARCHITECTURES",
    "BPDA",
    "Normalize",
    "Normalized",
    "build_model",
    "create",
    "defences",
    "fingerprint",
    "list_architectures",
    "load_checkpoint",
    "load_model",
    "read_metadata",
    "save_checkpoint",
    "with_normalization",
]
from advrobust.models.blackbox import LabelModel as LabelModel, ScoreModel as ScoreModel  # noqa: E402, I001
