"""Verification: the model returns embeddings ``N×D``; ``y`` is each input's reference embedding.

Two faces are "the same identity" when the cosine distance ``1 − cos(f(x), e)`` of their embeddings is
at most ``threshold`` (Schroff et al. 2015, FaceNet, §4: a distance threshold on embeddings).
Untargeted (dodging): an input is adversarial when its distance to its own reference exceeds the
threshold. Targeted (impersonation): ``target`` is another identity's reference embedding ``N×D``,
reached when the distance to it falls to the threshold. The objective is the distance itself
(dodging) or its negative (impersonation), whatever loss is named: embeddings have no classes.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from advrobust.errors import InputError
from advrobust.losses import Objective
from advrobust.tasks.base import Task, as_tensor


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 − cos(a_i, b_i)`` per row."""
    return 1.0 - F.cosine_similarity(a, b, dim=1)


class Verification(Task):
    """Embeddings compared with reference embeddings at a cosine-distance ``threshold``."""

    name = "verification"

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= float(threshold) <= 2.0:
            raise InputError(f"Verification: threshold is a cosine distance in [0, 2], got {threshold!r}")
        self.threshold = float(threshold)

    def _embeddings(self, name: str, e: Any, x: Tensor) -> Tensor:
        e = as_tensor(name, e, x.device)
        if not e.dtype.is_floating_point or e.dim() != 2 or e.shape[0] != x.shape[0]:
            raise InputError(
                f"{name} must be reference embeddings, a float tensor of shape ({x.shape[0]}, D); "
                f"got {tuple(e.shape)} of dtype {e.dtype}"
            )
        return e

    def labels(self, y: Any, x: Tensor) -> Tensor:
        return self._embeddings("y", y, x)

    def targets(self, target: Any, y: Tensor, x: Tensor) -> Tensor:
        target = self._embeddings("target", target, x)
        if target.shape != y.shape:
            raise InputError(f"target embeddings have shape {tuple(target.shape)}, the references {tuple(y.shape)}")
        return target

    def check_output(self, out: Any, x: Tensor) -> Tensor:
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InputError(f"a verification model must return embeddings of shape (N, D); it returned {shape}")
        return out

    def check_classes(self, z: Tensor, y: Tensor, target: Tensor | None, gradients: bool = True) -> None:
        if z.shape[1] != y.shape[1]:
            raise InputError(f"the model returns {z.shape[1]}-d embeddings but the references are {y.shape[1]}-d")

    def is_adversarial(self, z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is None:
            return cosine_distance(z, y) > self.threshold
        return cosine_distance(z, target) <= self.threshold

    def objective(self, loss: str | Objective) -> Objective:
        def distance(z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
            return cosine_distance(z, y) if target is None else -cosine_distance(z, target)

        return distance

    def __repr__(self) -> str:
        return f"Verification(threshold={self.threshold})"
