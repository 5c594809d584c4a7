"""Adversarial training methods: PGD-AT, FGSM-RS and TRADES, each with an optional eps warm-up.

All three solve the min–max of Madry et al. (2018, eq. 2.1),
``min_θ E_{(x,y)~D} [ max_{r ∈ Δ} L(θ, x + r, y) ]``: the inner maximization is an attack of the
library run on the training batch, the outer minimization is the engine's optimizer step on the loss
returned by :meth:`loss`. Importing this module registers them in
:data:`advrobust.training.methods.METHODS` (``pgd-at``, ``fgsm-rs``, ``trades``), so
``advrobust train --method pgd-at --eps 0.3`` and ``create_method("trades", eps=0.3)`` find them.

Decisions that hold for every method here:

* **Every point is attacked**, the misclassified ones included (:func:`maximize`). An evaluation
  skips points already wrong at ``r = 0``; training must not, or early in training (most points
  wrong) the model would see almost only clean inputs, which is not the objective above.
* **The inner attack runs in eval mode** (the attack base's contract: dropout off, BatchNorm on its
  running statistics), then the outer forward runs in the mode the engine set (train). So attack
  iterations never update BatchNorm statistics and a point's perturbation does not depend on the
  rest of its batch; this is also what the released TRADES code does (``model.eval()`` for the
  attack). Wong et al.'s code attacks in train mode; for the BatchNorm-free default CNN both agree.
* **Parameters get no gradient from the attack** (input gradients only, ``torch.autograd.grad``):
  the engine's ``backward`` sees exactly the gradient of the returned loss.
* **Randomness** (random starts) is drawn from a generator seeded, per batch, from torch's global
  RNG: a seeded run repeats itself, and a resumed run repeats the uninterrupted one as long as the
  engine restores the global RNG state, with no extra state to checkpoint.
* **Eps warm-up** (:func:`warmup_eps`): ``eps`` grows linearly from 0 over the first ``warmup``
  fraction of training (``progress`` from the engine), then stays; default ``warmup=0`` (none:
  Madry et al. and Zhang et al. train at the full eps throughout). Step sizes given as ``None``
  follow the current eps.
* Under DistributedDataParallel the attack runs on the wrapped module (shared parameters), so DDP
  only sees the outer forward/backward.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from advrobust.attacks.base import Attack, FixedBudgetAttack
from advrobust.attacks.fgsm_rs import RandomStartFGSM
from advrobust.attacks.gradient import PGD
from advrobust.attacks.registry import get as get_attack
from advrobust.attacks.trades_kl import KLAttack
from advrobust.errors import InputError
from advrobust.threat import Threat, threat_from_name
from advrobust.training.methods import METHODS, Collapsed, describe_attack
from advrobust.training.overfitting import Action, OverfittingGuard

# the inner attacks live in advrobust.attacks (importable from here too, where they were first defined)
__all__ = ["FGSMRS", "PGDAT", "TRADES", "KLAttack", "RandomStartFGSM", "maximize", "warmup_eps"]

#: Madry et al. (2018), MNIST: eps = 0.3 (the budget every method here defaults to).
MNIST_EPS = 0.3
#: PGD-AT's inner steps by default: a fast preset (Madry et al. use 40 on MNIST, 7 on CIFAR-10).
FAST_STEPS = 10


def warmup_eps(eps: float, progress: float, warmup: float) -> float:
    """Linear eps warm-up: ``eps · min(1, progress / warmup)``; ``warmup = 0`` gives ``eps`` at once.

    ``progress`` in [0, 1] is the fraction of training done; ``warmup`` the fraction over which eps
    ramps from 0 to its final value.
    """
    if warmup <= 0:
        return eps
    return eps * min(1.0, max(0.0, progress) / warmup)


def maximize(attack: Attack, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The inner maximization for training: :meth:`Attack.perturb` (every point attacked, no
    bookkeeping), its random start seeded from the global generator, which the engine seeds per
    epoch, so that a resumed run draws what the uninterrupted one drew."""
    seed = int(torch.randint(0, 2**62, (1,)))
    device = torch.as_tensor(x).device
    return attack.perturb(model, x, y, generator=torch.Generator(device=device).manual_seed(seed))


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or DataParallel) wrapper, else ``model``."""
    return model.module if isinstance(model, (DistributedDataParallel, nn.DataParallel)) else model


def _check_fraction(owner: str, name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{owner}: {name} must be a fraction of training in [0, 1], got {value!r}")
    return float(value)


class _AdversarialMethod:
    """What the methods share: the threat model at full eps, the inner attack, the warm-up."""

    name = ""

    def __init__(self, attack: Attack, warmup: float) -> None:
        if not isinstance(attack, FixedBudgetAttack):
            raise InputError(
                f"{type(attack).__name__} is a minimum-norm attack; adversarial training needs a "
                "fixed-budget attack (e.g. 'pgd', 'apgd-ce', 'mi-fgsm')"
            )
        self.attack = attack
        self.threat: Threat = attack.threat
        self.eps = float(attack.threat.eps)
        self.warmup = _check_fraction(type(self).__name__, "warmup", warmup)

    def eps_at(self, progress: float) -> float:
        """The training budget at ``progress`` (the warm-up ramp, then ``eps``)."""
        return warmup_eps(self.eps, progress, self.warmup)

    def attack_at(self, progress: float) -> Attack:
        """The inner attack at the current eps (the warm-up's; step-size rules follow it)."""
        eps = self.eps_at(progress)
        return self.attack if eps == self.eps else self.attack.with_threat(self.threat.with_eps(eps))

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> Tensor:
        """The adversarial batch at the current eps (``x`` itself while the warm-up eps is 0)."""
        attack = self.attack_at(progress)
        if attack.threat.eps == 0:
            return x
        return maximize(attack, _unwrap(model), x, y)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "norm": self.threat.name,
            "eps": self.eps,
            "warmup": self.warmup,
            "attack": describe_attack(self.attack),
        }


def _build_attack(
    attack: str | Attack | None, norm: str | None, eps: float | None, options: dict[str, Any]
) -> Attack:
    """The inner attack: an instance re-budgeted to ``eps``, a registry name, or (``None``) PGD."""
    if isinstance(attack, Attack):
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise InputError(f"{', '.join(given)}: configure the attack instance itself instead")
        if norm is not None and norm != attack.threat.name:
            raise InputError(f"norm={norm!r} contradicts the attack's threat model {attack.threat}")
        return attack if eps is None else attack.with_threat(attack.threat.with_eps(eps))
    threat = threat_from_name(norm or "linf", MNIST_EPS if eps is None else eps)
    if not threat.bounded:
        raise InputError("adversarial training needs a finite eps")
    cls = PGD if attack is None else get_attack(attack)
    accepted = inspect.signature(cls).parameters
    unknown = [k for k, v in options.items() if v is not None and k not in accepted]
    if unknown:
        raise InputError(f"the attack {cls.__name__} takes no option {', '.join(unknown)}")
    # keep maximizing after a success (training wants the highest loss, not the first success)
    kwargs: dict[str, Any] = {"early_stop": False} if "early_stop" in accepted else {}
    if "steps" in accepted:
        kwargs["steps"] = FAST_STEPS
    kwargs.update({k: v for k, v in options.items() if v is not None})
    return cls(threat, **kwargs)


class PGDAT(_AdversarialMethod):
    """PGD adversarial training (Madry et al. 2018, eq. 2.1): the mean
    ``CE(θ, x_adv, y)`` over the batch, ``x_adv`` from the inner attack run on every point.

    Parameters
    ----------
    eps:
        The budget (default 0.3, Madry et al.'s MNIST). With an ``attack`` instance, ``None`` keeps
        the instance's own eps.
    norm:
        ``"linf"`` (default) or ``"l2"``/``"l1"`` where the attack supports them.
    attack:
        The inner maximization: ``None`` (PGD), any fixed-budget attack of the registry by name
        (``"apgd-ce"``, ``"mi-fgsm"``, ...; built with ``early_stop=False`` when it has that option)
        or an :class:`~advrobust.attacks.base.Attack` instance used as configured.
    steps, step_size:
        Passed to an attack built here (an error with an instance). ``steps=None`` means
        :data:`FAST_STEPS` (10) for attacks that take steps; ``step_size=None`` the attack's own rule
        (PGD: ``α = 2.5·ε/steps``, 0.075 at ε = 0.3, from a uniform random start). 10 steps is a
        *fast preset* for CPU-sized runs; the paper's MNIST setting, 40 steps of 0.01, is
        :meth:`madry`.
    warmup:
        Fraction of training over which eps ramps linearly from 0 (default 0: none).

    The logits returned for train accuracy are those of ``x_adv`` (robust train accuracy).
    """

    name = "pgd-at"

    def __init__(
        self,
        eps: float | None = None,
        *,
        norm: str | None = None,
        attack: str | Attack | None = None,
        steps: int | None = None,
        step_size: float | None = None,
        warmup: float = 0.0,
    ) -> None:
        options = {"steps": steps, "step_size": step_size}
        super().__init__(_build_attack(attack, norm, eps, options), warmup)

    @classmethod
    def madry(cls, eps: float = MNIST_EPS, **kwargs: Any) -> PGDAT:
        """Madry et al. (2018)'s MNIST setting: 40 PGD steps of size 0.01 from a random start."""
        return cls(eps, steps=40, step_size=0.01, **kwargs)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        logits = model(self.perturb(model, x, y, progress))
        return F.cross_entropy(logits, y), logits


class FGSMRS(PGDAT):
    """FGSM with random start, "fast is better than free" (Wong, Rice & Kolter 2020, Algorithm 3):
    PGD-AT whose inner maximization is one FGSM step of ``α = 1.25·ε`` from a uniform random point
    of the ball (:class:`~advrobust.attacks.fgsm_rs.RandomStartFGSM`), plus their guard against
    catastrophic overfitting.

    Parameters
    ----------
    eps, norm, warmup:
        As for :class:`PGDAT` (default ε = 0.3, l∞, no warm-up).
    step_size:
        ``None`` (default): ``α = 1.25·ε``, the paper's choice; a number: a fixed ``α``.
    guard:
        Watch for catastrophic overfitting (default on): PGD and FGSM accuracy of a fixed probe
        batch are measured at each epoch end (and every ``guard_every`` batches if given), see
        :class:`~advrobust.training.overfitting.OverfittingGuard`. A collapse is recorded in the
        history; ``guard_action`` ``"restore"`` (default, Wong et al.'s early stopping) stops
        training with the weights of the best check, ``"stop"`` stops with the current weights,
        ``"warn"`` only reports it. The guard starts once the warm-up is over (the probe is the
        first batch at full eps): a model still trained at a smaller eps is not yet comparable.
        On a stop the engine then loads *its* best weights (by its monitored metric): give it a
        ``val_attack`` so that they are the best by robust accuracy, hence from before a collapse.
    probe_size, probe_steps:
        The probe batch (default 128 points of the first training batch) and its PGD steps
        (default 5, Wong et al.'s check).
    """

    name = "fgsm-rs"

    def __init__(
        self,
        eps: float | None = None,
        *,
        norm: str | None = None,
        step_size: float | None = None,
        warmup: float = 0.0,
        guard: bool = True,
        guard_every: int | None = None,
        guard_action: Action = "restore",
        probe_size: int = 128,
        probe_steps: int = 5,
    ) -> None:
        threat = threat_from_name(norm or "linf", MNIST_EPS if eps is None else eps)
        super().__init__(attack=RandomStartFGSM(threat, step_size=step_size), warmup=warmup)
        self.guard = (
            OverfittingGuard(
                threat, probe_size=probe_size, pgd_steps=probe_steps, every=guard_every, action=guard_action
            )
            if guard
            else None
        )
        self._reported = False

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        self._watch(model, x, y, progress)
        return super().loss(model, x, y, progress)

    def _watch(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> None:
        """Show the batch to the overfitting guard (once the warm-up is over)."""
        if self.guard is not None and self.eps_at(progress) == self.eps:
            self.guard.observe(_unwrap(model), x, y)

    def on_epoch_end(self, history: object) -> str | None:
        """The guard's verdict: ``None`` while healthy; on a collapse a :class:`Collapsed` (``"stop"``,
        ``"restore"``) or, once, a warning (``"warn"``)."""
        if self.guard is None or self._reported:
            return None
        collapse = self.guard.end_of_epoch()
        if collapse is None:
            return None
        self._reported = True
        text = f"catastrophic overfitting: {collapse.reason}"
        if self.guard.action == "restore":
            text += ", weights restored to the best check"
        if not self.guard.stops:
            return text
        return Collapsed(f"{text}; likely fix: a lower learning rate, a smaller step size, or pgd-at")

    def describe(self) -> dict[str, Any]:
        guard = None if self.guard is None else self.guard.describe()
        return {**super().describe(), "guard": guard}

    def state_dict(self) -> dict[str, Any]:
        """The guard's watch so far, saved in the training checkpoint (see ``fit``'s resume)."""
        return {"reported": self._reported, "guard": None if self.guard is None else self.guard.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reported = bool(state["reported"])
        if self.guard is not None and state["guard"] is not None:
            self.guard.load_state_dict(state["guard"])


class TRADES(_AdversarialMethod):
    """TRADES (Zhang et al. 2019, "Theoretically principled trade-off between robustness and
    accuracy", eq. 5): ``CE(f(x), y) + β · KL(f(x) ‖ f(x'))`` averaged over the batch, with ``x'``
    maximizing the KL in the ball (:class:`~advrobust.attacks.trades_kl.KLAttack`, from ``x + 0.001·N(0, I)``).

    Defaults: ``beta=6`` and ``steps=10`` (the paper's CIFAR-10 setting, its main one; the released
    MNIST script uses β = 1 and 40 steps of 0.01 at ε = 0.3), ``step_size=None -> 2.5·ε/steps``,
    ε = 0.3, l∞. Both terms use the model in the engine's mode (train); gradients flow through
    ``f(x)`` in both, as in the paper. The logits returned for train accuracy are the clean ones.
    """

    name = "trades"

    def __init__(
        self,
        eps: float | None = None,
        *,
        norm: str | None = None,
        beta: float = 6.0,
        steps: int = 10,
        step_size: float | None = None,
        warmup: float = 0.0,
    ) -> None:
        if not float(beta) >= 0:
            raise InputError(f"TRADES: beta must be >= 0, got {beta!r}")
        threat = threat_from_name(norm or "linf", MNIST_EPS if eps is None else eps)
        super().__init__(KLAttack(threat, steps=steps, step_size=step_size), warmup)
        self.beta = float(beta)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        x_adv = self.perturb(model, x, y, progress)
        logits = model(x)
        robust = F.kl_div(
            F.log_softmax(model(x_adv), dim=1), F.log_softmax(logits, dim=1),
            reduction="batchmean", log_target=True,
        )
        return F.cross_entropy(logits, y) + self.beta * robust, logits

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "beta": self.beta}


METHODS.update({"pgd-at": PGDAT, "fgsm-rs": FGSMRS, "trades": TRADES})
