"""Training methods: what loss each batch minimizes. The engine (:func:`advrobust.training.fit`)
does everything else (data order, optimizer, schedule, AMP, checkpoints, DDP, logging).

A method implements :class:`TrainingMethod`; ``standard`` (empirical risk minimization,
``min_θ E[L(θ, x, y)]``) lives here, the adversarial methods (PGD-AT,
FGSM-RS, TRADES) in :mod:`advrobust.training.adversarial` and FGSM-EP in
:mod:`advrobust.training.prior`, which register them in :data:`METHODS` when imported;
:func:`create_method` and :func:`method_names` import them on first use.

A method may also define ``on_epoch_end(history) -> str | None``: a returned string is recorded in
the history as a warning; a returned :class:`Stop` (a ``str``) also ends training, and the engine
keeps the best weights seen so far; a :class:`Collapsed` marks the run failed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from advrobust.attacks.base import Attack
from advrobust.attacks.registry import keyword_options
from advrobust.errors import InputError

# Modules that add methods to METHODS when imported (the adversarial methods).
PLUGINS = (
    "advrobust.training.adversarial",
    "advrobust.training.prior",
    "advrobust.training.noise",
    "advrobust.training.ablation",
    "advrobust.training.occlusion",
)


class Stop(str):
    """Returned by a method's ``on_epoch_end`` to stop training; the text is the reason."""

    __slots__ = ()


class Collapsed(Stop):
    """A :class:`Stop` because training failed (e.g. catastrophic overfitting): the run ends with
    ``status="failed"``; the text says why and the likely fix."""

    __slots__ = ()


@runtime_checkable
class TrainingMethod(Protocol):
    """What the engine asks of a training method."""

    name: str

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        """Scalar loss to minimize and the logits used for train accuracy. ``progress`` in [0, 1] is
        the fraction of training done, ``(epoch + batch fraction) / epochs``, e.g. for eps warm-up."""
        ...

    def describe(self) -> dict[str, Any]:
        """The method and its hyper-parameters, for checkpoint metadata: ``{"method": "pgd-at", "eps": 0.3}``."""
        ...


# Optional, as on ``nn.Module``: a method with state that must survive a resume (FGSM-RS's
# overfitting guard) also defines ``state_dict() -> dict`` and ``load_state_dict(dict)``; the engine
# saves it in the training checkpoint every epoch and gives it back on resume. Tensors, numbers,
# strings, lists and dicts only: the checkpoint is read with ``torch.load(weights_only=True)``.
# A method with per-example state (FGSM-EP's priors) sets ``wants_index = True``: the engine then
# calls ``loss(model, x, y, progress, index=rows)``, ``rows`` the batch's positions in the training set.


class Standard:
    """Standard training: the mean cross-entropy of the clean batch, ``L(θ, x, y)``."""

    name = "standard"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        logits = model(x)
        return nn.functional.cross_entropy(logits, y), logits

    def describe(self) -> dict[str, Any]:
        return {"method": self.name}


METHODS: dict[str, Callable[..., TrainingMethod]] = {"standard": Standard}


def describe_attack(attack: Attack) -> dict[str, Any]:
    """An attack's name, threat model, plain hyper-parameters and step size in use (``alpha``,
    where the attack resolves a rule such as ``2.5·ε/steps``), for checkpoint metadata. Not its
    ``seed``: training draws the random numbers (see ``adversarial.maximize``)."""
    plain = (bool, int, float, str, type(None))
    options = {
        k: v for k, v in vars(attack).items() if not k.startswith("_") and k != "seed" and isinstance(v, plain)
    }
    alpha = getattr(attack, "alpha", None)
    resolved = {"alpha": float(alpha())} if callable(alpha) else {}
    return {"name": attack.name, "norm": attack.threat.name, "eps": float(attack.threat.eps), **options, **resolved}

_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGINS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the plugin exists but one of its imports is missing: a real error
                raise


def method_names() -> list[str]:
    """The registered training methods (``standard`` and, once available, the adversarial ones)."""
    _load_plugins()
    return list(METHODS)


def method_options(name: str) -> list[str]:
    """The keyword arguments the method's constructor accepts (for the CLI's pass-through options);
    a class constructor that passes ``**kwargs`` on to its base accepts the base's too."""
    _load_plugins()
    return keyword_options(METHODS[_canonical(name)])


def create_method(name: str, **kwargs: Any) -> TrainingMethod:
    """Build the training method ``name`` with its hyper-parameters, e.g.
    ``create_method("pgd-at", eps=0.3)``."""
    _load_plugins()
    factory = METHODS[_canonical(name)]
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise InputError(f"bad options {kwargs} for training method {name!r}: {exc}") from None


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key not in METHODS:
        raise InputError(f"unknown training method {name!r}: choose one of {', '.join(METHODS)}")
    return key
