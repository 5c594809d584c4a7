"""The task interface: what a model returns and what "adversarial" means for it.

A :class:`Task` is the layer between the threat models and the attacks. An attack is written once
against it; classification is one task among several (segmentation, detection, verification). A task
says

* the form of the model's output (:meth:`Task.check_output`, a one-line error otherwise),
* the form of the label ``y`` and of the target (:meth:`Task.labels`, :meth:`Task.targets`): always
  turned into one batch-first tensor, so an attack can select rows with ``y[rows]``,
* the per-point criterion (:meth:`Task.is_adversarial`, one bool per input),
* the objectives an attack maximizes (:meth:`Task.objective`, one value per input; untargeted when the
  target is ``None``),
* and, for dense tasks, the dense classification view DAG attacks (:meth:`Task.dense_view`);
* where a label lies in the picture, for physical attacks: how it follows a transformation of the
  scene (:meth:`Task.follow`), how an output of the moved scene comes back over the unmoved one
  (:meth:`Task.pull_back`, for EOT), what a pasted texture hides (:meth:`Task.occlude`), and the
  target "every object to class ``c``" (:meth:`Task.class_target`).

Metrics live beside the tasks (:mod:`advrobust.tasks.metrics`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.losses import Objective
from advrobust.tensors import class_scores_argmax

Params = Any  # a transformation's draw: what its ``sample`` returns


class Motion(Protocol):
    """What a task needs of a transformation to place its labels and outputs in the picture (every
    :class:`advrobust.transforms.Transform` is one; the transforms, built on the tasks, implement
    it): where a draw moves points and label maps, and how an output of the moved picture comes back."""

    def move_points(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor: ...

    def move_points_back(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor: ...

    def move_map(self, maps: Tensor, params: Params, fill: int) -> Tensor: ...

    def pull_back(self, maps: Tensor, params: Params) -> Tensor: ...


@dataclass
class DenseView:
    """A dense task seen as many small classification problems (Xie et al. 2017, §3.1: "targets").

    ``logits``: ``N×K×P`` class scores of ``P`` targets per input (pixels, or a detector's cells);
    ``labels``: ``N×P`` the true class of each target; ``mask``: ``N×P`` which targets count.
    """

    logits: Tensor
    labels: Tensor
    mask: Tensor


class Task(ABC):
    """Base class of the tasks. Subclasses set :attr:`name` and implement the abstract methods."""

    name: ClassVar[str] = ""
    #: whether the output has one class score vector per target (segmentation, detection)
    dense: ClassVar[bool] = False

    @abstractmethod
    def labels(self, y: Any, x: Tensor) -> Tensor:
        """``y`` checked and in the task's tensor form (batch first); :class:`InputError` otherwise."""

    @abstractmethod
    def targets(self, target: Any, y: Tensor, x: Tensor) -> Tensor:
        """A (not ``None``) ``target`` checked and in tensor form; it must differ from ``y``."""

    @abstractmethod
    def check_output(self, out: Any, x: Tensor) -> Tensor:
        """The model's output for ``x`` as a tensor, checked for this task's shape."""

    def check_classes(self, z: Tensor, y: Tensor, target: Tensor | None, gradients: bool = True) -> None:
        """Checks that need the model's output (class ids in range; ``gradients``: the attack will
        differentiate it, so it should be logits); none by default."""
        return None

    @abstractmethod
    def is_adversarial(self, z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Per input: is the output ``z`` adversarial (untargeted: ``target is None``)?"""

    @abstractmethod
    def objective(self, loss: str | Objective) -> Objective:
        """The per-input objective ``(z, y, target) -> N`` an attack maximizes, for a loss name."""

    def dense_logits(self, z: Tensor) -> Tensor:
        """The class scores ``N×K×P`` of the ``P`` targets of each input (dense tasks only)."""
        raise InputError(f"the {self.name} task has no per-pixel or per-proposal targets: DAG needs a dense task")

    def dense_view(self, z: Tensor, y: Tensor) -> DenseView:
        """The dense classification view: :meth:`dense_logits` with the true class of each target."""
        raise InputError(f"the {self.name} task has no per-pixel or per-proposal targets: DAG needs a dense task")

    def still_correct(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per target (``logits`` ``N×K×P``, ``labels`` ``N×P``): does the model still output its true
        class? By default: the class of highest score."""
        return class_scores_argmax(logits.detach()) == labels

    # --- labels in the picture (physical attacks) ---------------------------------------------------
    def follow(self, y: Tensor, transform: Motion, params: Params, size: tuple[int, int]) -> Tensor:
        """The labels ``y`` of ``size = (h, w)`` images as the images transformed by ``transform``
        with ``params`` show them. Unchanged by default: a class is the same however the picture moves."""
        return y

    def pull_back(self, z: Tensor, transform: Motion, params: Params, size: tuple[int, int],
                  draws: int = 1) -> Tensor:
        """The mean over ``draws`` draws of the model's outputs ``z`` on ``size = (h, w)`` pictures
        moved by ``transform`` with ``params`` (``draws·N`` rows, draw-major), each brought back over
        the unmoved picture first, in the output's own form, so that it meets the picture's labels:
        how EOT averages outputs over poses (the inverse of :meth:`follow`). By default only the
        mean: a class is the same however the picture moves."""
        return z.reshape(draws, -1, *z.shape[1:]).mean(dim=0)

    def occlude(self, y: Tensor, covered: Tensor) -> Tensor:
        """The labels with the pixels ``covered`` (``N×H×W`` bool) by a pasted texture taken out of
        the count where the task labels pixels; unchanged by default."""
        return y

    def class_target(self, c: int, y: Tensor) -> Tensor:
        """The target "class ``c``" for every labelled thing of each image, in the task's form."""
        raise InputError(f"the {self.name} task has no class targets")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def draw_mean(total: Tensor, count: Tensor, draws: int) -> Tensor:
    """``Σ_k total_k / Σ_k count_k`` over the ``draws`` draws of ``draws·N`` rows (draw-major): a
    mean of what the draws saw, each counted by ``count``."""
    total = total.reshape(draws, -1, *total.shape[1:]).sum(dim=0)
    return total / count.reshape(draws, -1, *count.shape[1:]).sum(dim=0).clamp_min(1e-6)


def pulled_mean(maps: Tensor, weight: Tensor, transform: Motion, params: Params, draws: int) -> Tensor:
    """:func:`draw_mean` of ``maps`` brought back over the input (bilinearly), each pixel of a draw
    counted by its ``weight``: ``Σ_k back_k(weight_k · maps_k) / Σ_k back_k(weight_k)``."""
    count = transform.pull_back(weight.expand_as(maps[:, :1]), params)
    return draw_mean(transform.pull_back(maps * weight, params), count, draws)


def as_tensor(name: str, value: Any, device: torch.device) -> Tensor:
    """``value`` as a tensor on ``device``; a one-line error if it cannot be one."""
    if isinstance(value, Tensor):
        if value.device != device:
            raise InputError(f"{name} is on {value.device} but x is on {device}: move them to one device")
        return value
    try:
        return torch.as_tensor(value, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{name} must be a tensor, got {type(value).__name__}") from None


def integer_tensor(name: str, value: Any, device: torch.device, what: str = "class indices") -> Tensor:
    """``value`` as an ``int64`` tensor; a one-line error for floats, bools or complex numbers."""
    t = as_tensor(name, value, device)
    if t.numel() == 0:  # an empty list becomes a float tensor
        return t.long()
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise InputError(f"{name} must hold integer {what}, got dtype {t.dtype}")
    return t.long()
