"""Default training recipes: how each method is trained when the user says nothing else.

A :class:`Recipe` is the outer optimization (:class:`Optimization`: epochs, batch, optimizer, peak
learning rate, schedule) and the method's own settings (eps warm-up, inner-attack steps and step
size, TRADES' β). ``fit(model, data, method="pgd-at")`` and ``advrobust train --method pgd-at``
start from :func:`recipe_for` the method; any part can be overridden (keywords of ``fit``, flags of
the CLI), and ``advrobust train --method M --help`` prints the recipe that will run.

Sources (the budget: MNIST l∞ ε = 0.3, ``mnist-cnn`` on the 4000 training digits of mnist-5k):

* ``standard``: SGD with momentum 0.9, weight decay 5e-4 and cosine decay (Loshchilov & Hutter
  2017), the usual recipe of the robustness literature (Rice et al. 2020); peak lr 0.05, batch 64,
  10 epochs measured here (the default model, ``mnist-cnn`` width 16: 96.9 % test accuracy).
* ``pgd-at``: the objective and inner attack of Madry et al. (2018): PGD from a uniform random
  start, here 10 steps of ``2.5·ε/10`` (their MNIST setting is 40 steps of 0.01: a CPU-sized
  preset, see :meth:`~advrobust.training.adversarial.PGDAT.madry`); the optimizer of Wong, Rice &
  Kolter (2020)'s MNIST code: Adam, one cyclic learning-rate triangle peaking at 5e-3, no weight
  decay; ε ramped up linearly over the first 30 % of training (the ε schedule of Gowal et al.
  2018): without it, at ε = 0.3 from the first step, the network stays at chance.
* ``fgsm-rs``: Wong, Rice & Kolter (2020), Algorithm 3: one FGSM step of ``α = 1.25·ε`` from a
  uniform random start, with their catastrophic-overfitting check (an early stop on a PGD probe);
  the ``standard`` recipe's SGD and cosine decay, at full ε from the first step, for 20 epochs.
  Against APGD-CE + APGD-T on 200 test points (benchmarks/results/recipe_trials.json) 20 epochs
  reached 58.5 % where 10 reached 48.5 % (from the default command, 45.4 % ``standard``-robust on
  500 points); 30 epochs did no better (56 %). Tried instead, none better: their MNIST optimizer
  (Adam with a cyclic rate peaking at 5e-3) overfits catastrophically in 5 epochs without an ε
  warm-up and reaches 23 % with PGD-AT's; ε ramped over half of 20 epochs, 49 %; ``α = ε``, 49.5 %
  against APGD-CE (1.25·ε: 52.0 %); N-FGSM's larger noise without projection (de Jorge et al.
  2022), 22 % or chance; GradAlign (Andriushchenko & Flammarion 2020, λ = 1), 8.5 %; random
  translations of 2 pixels (``shift``), 59–60 % on two seeds, within the noise of 20 epochs alone;
  30 and 40 epochs, 59.5 and 61.5 % (the same 20 epochs again: 62.5 %); dropout scheduling (Vivek &
  Babu 2020), 57–60 %; training at ε = 0.4, 37 %; Wong et al.'s MNIST network, chance or 28.5 %.
  The gap between its PGD-10 validation (about 79 %) and APGD is gradient masking: FGSM-RS on these
  4000 digits stays well below PGD-AT and TRADES at ε = 0.3; ``fgsm-ep`` (below) does not.
* ``fgsm-ep``: Jia et al. (2022): FGSM-RS's step from each example's perturbation of the previous
  epoch (the epoch prior; a random start on the first visit) plus their regularizer
  ``λ·MSE(f(x_adv), f(x_0))`` with λ = 10 (``beta``), FGSM-RS's recipe otherwise (SGD, cosine, 20
  epochs, full ε). In a plain loop of that recipe, against APGD-CE + APGD-T on the same 200 test
  points: FGSM-RS 63 %, the epoch prior alone 75.5 %, with the regularizer 86.5 % (λ = 100: 75.5 %),
  at 1.5× FGSM-RS's CPU time (:mod:`advrobust.training.prior`).
* ``trades``: Zhang et al. (2019): ``CE + β·KL`` with β = 6 (their main setting), the KL
  maximized by 10 steps of ``2.5·ε/10`` from ``x + 0.001·N(0, I)``; the PGD-AT recipe's optimizer
  (Adam, one cyclic triangle peaking at 5e-3, batch 128) and ε warm-up over the first 30 %, for 20
  epochs. That reached 97.5 % clean and 91.0 % against APGD-CE + APGD-T on 200 test points (PGD-10
  validation 91.5 %), and from the default command 88.8 % ``standard``-robust on 500 test points,
  where the ``standard`` recipe's SGD, cosine decay and 10 epochs at full ε
  reached 95.8 % and 78.0 % ``standard``-robust (100 points) from the same command
  (benchmarks/results/recipe_trials.json).

What each reaches here is in :data:`MEASURED` (benchmarks/bench_training_defaults.py runs the
exact CLI commands; results in benchmarks/results/training_defaults.json).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from advrobust.errors import InputError

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class Optimization:
    """The outer minimization: ``epochs`` over the data in batches of ``batch_size``, ``optimizer``
    (``"sgd"`` with ``momentum``, or ``"adam"`` with its paper's betas, Kingma & Ba 2015) at peak
    learning rate ``lr`` following ``schedule`` (:mod:`advrobust.training.schedules`), with
    ``weight_decay``; each batch translated at random by up to ``shift`` pixels
    (:func:`advrobust.training.augment.random_shift`; 0: no augmentation). The defaults are the
    ``standard`` recipe."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    shift: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise InputError(
                f"epochs, batch_size and lr must be positive; got {self.epochs}, {self.batch_size}, {self.lr}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}: choose sgd or adam")
        from advrobust.training.schedules import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.shift < 0:
            raise InputError(f"shift must be >= 0 pixels (0: no augmentation), got {self.shift}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise InputError(f"weight_decay and momentum must be >= 0; got {self.weight_decay}, {self.momentum}")

    def optimization(self) -> dict[str, Any]:
        """The outer-optimization fields, as keywords (for :class:`~advrobust.training.config.FitConfig`)."""
        return {f.name: getattr(self, f.name) for f in fields(Optimization)}


#: the method settings a recipe may carry, in the order they are shown
METHOD_SETTINGS = ("warmup", "steps", "step_size", "beta")


@dataclass(frozen=True)
class Recipe(Optimization):
    """A whole recipe: the outer optimization plus the method's settings (``None``: not used by
    the method, or for ``step_size`` the method's own rule, e.g. ``2.5·ε/steps``). ``source``: where
    it comes from, in a line."""

    warmup: float | None = None
    steps: int | None = None
    step_size: float | None = None
    beta: float | None = None
    source: str = ""

    def method_options(self) -> dict[str, Any]:
        """The method constructor's keywords this recipe sets."""
        return {k: getattr(self, k) for k in METHOD_SETTINGS if getattr(self, k) is not None}

    def replace(self, **changes: Any) -> Recipe:
        """This recipe with some parts overridden (``None`` values are ignored: "not given")."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise InputError(f"a recipe has no setting {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


_ADAM_CYCLIC = {"optimizer": "adam", "lr": 5e-3, "weight_decay": 0.0, "schedule": "cyclic", "batch_size": 128}

RECIPES: dict[str, Recipe] = {
    "standard": Recipe(source="SGD + momentum, cosine decay (Loshchilov & Hutter 2017); lr 0.05 measured here"),
    "pgd-at": Recipe(
        epochs=40, warmup=0.3, steps=10, **_ADAM_CYCLIC,
        source="Madry et al. 2018 (PGD-AT, 10 steps of 2.5·eps/10); Adam + cyclic lr of Wong et al. 2020; "
               "eps warm-up of Gowal et al. 2018",
    ),
    "fgsm-rs": Recipe(
        epochs=20, warmup=0.0,
        source="Wong, Rice & Kolter 2020 (FGSM from a random start, step 1.25·eps, their overfitting check); "
               "the standard recipe's SGD and cosine decay, 20 epochs",
    ),
    "fgsm-ep": Recipe(
        epochs=20, warmup=0.0, beta=10.0,
        source="Jia et al. 2022 (FGSM from the example's perturbation of the previous epoch, step 1.25·eps, and "
               "their regularizer, lambda 10); FGSM-RS's overfitting check, SGD and cosine decay, 20 epochs",
    ),
    "trades": Recipe(
        epochs=20, warmup=0.3, steps=10, beta=6.0, **_ADAM_CYCLIC,
        source="Zhang et al. 2019 (TRADES, beta 6, 10 KL steps of 2.5·eps/10); Adam + cyclic lr of Wong et al. "
               "2020; eps warm-up of Gowal et al. 2018",
    ),
}

#: What each default recipe reached here at l∞ ε = 0.3 on mnist-5k (``mnist-cnn``, width 32): clean and
#: ``standard``-suite robust accuracy on test points, training time on 2 cores, each from
#: ``advrobust train --method M --eps 0.3`` (benchmarks/bench_training_defaults.py,
#: benchmarks/results/training_defaults.json).
MEASURED: dict[str, str] = {
    "pgd-at": "97.4% clean, 86.8% standard-robust (500 test points, 95% CI 83.6-89.5%; its PGD-10 validation "
              "91.5%); 12.4 min of training on 2 cores at load 1-2 by the default command",
    "trades": "97.4% clean, 88.8% standard-robust (500 test points, 95% CI 85.7-91.3%; its PGD-10 validation 92.0%); "
              "6.6 min of training on 2 cores at load 1-2 (benchmarks/results/training_defaults.json)",
    "fgsm-rs": "97.8% clean, 55.6% standard-robust (500 test points, 95% CI 51.2-59.9%; its PGD-10 validation "
               "79.0%: a masked gradient); 2.1 min of training on 2 cores at load 0.4-1.9 by the default command; "
               "far below PGD-AT and TRADES (10 epochs: 45.4%)",
    "fgsm-ep": "97.4% clean, 82.6% standard-robust (500 test points, 95% CI 79.0-85.7%; its PGD-10 validation "
               "89.5%); 2.6 min of training on 2 cores at load 1-2 by the default command: the single-step method "
               "to use at this eps (FGSM-RS: 55.6%)",
}


def recipe_for(method: str) -> Recipe:
    """The default recipe of a training method (``standard``'s for a method without its own)."""
    return RECIPES.get(str(method).strip().lower().replace("_", "-"), RECIPES["standard"])
