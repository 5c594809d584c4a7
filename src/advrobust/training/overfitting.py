"""Catastrophic overfitting: detect the collapse of PGD accuracy during fast adversarial training.

Wong, Rice & Kolter (2020, "Fast is better than free: revisiting adversarial training") found that
single-step FGSM training can suddenly overfit to its own attack: within a few batches the PGD
robust accuracy falls to about 0 while the accuracy against FGSM stays high (even rises) — the
model has learned to mask the one-step gradient, not to be robust. Their remedy is early stopping:
measure PGD accuracy on one fixed minibatch every epoch and, when it drops by more than 0.2 from
the previous check, stop and keep the weights of that check.

This module does the same with the library's attacks:

* :func:`detect_collapse` — the rule, on a sequence of :class:`ProbeRecord` (pure, testable on a
  synthetic history). A collapse is either

  - a *drop*: PGD accuracy more than ``drop`` (default 0.2, Wong et al.'s threshold) below the
    best PGD accuracy of the earlier checks — measured from the best rather than the previous
    check, so that a slide over several checks is caught too; or
  - *masking*: FGSM accuracy exceeds PGD accuracy by at least ``gap`` (default 0.5): a single-step
    attack failing where five steps succeed is the signature of a masked gradient (Athalye et al.
    2018), whatever the level of PGD accuracy and even when no earlier check was high (e.g. a
    collapse within the first epoch). A run here had FGSM 94% against PGD-5 34% on the probe while
    APGD left 5%: a rule that also asked for PGD "near 0" missed it.

* :class:`OverfittingGuard` — measures clean, FGSM and PGD accuracy on a fixed probe batch (the
  first ``probe_size`` points of the first training batch, as Wong et al. use a training
  minibatch), keeps a copy of the weights at the best PGD accuracy, and on a collapse reports it
  and, per ``action``, stops training and restores those weights.

The probe always uses the *full* training eps, also during an eps warm-up: accuracies at different
budgets are not comparable, and a drop rule on them would fire as eps grows. Under
DistributedDataParallel the counts of correct points are summed over processes, so every process
sees the same accuracies and takes the same decision.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.registry import create
from advrobust.errors import InputError
from advrobust.threat import Threat

Action = Literal["warn", "stop", "restore"]
ACTIONS: tuple[Action, ...] = ("warn", "stop", "restore")


@dataclass(frozen=True)
class ProbeRecord:
    """Accuracies on the probe batch after ``batches`` training batches (fractions in [0, 1])."""

    batches: int
    clean: float
    fgsm: float
    pgd: float


@dataclass(frozen=True)
class Collapse:
    """A detected collapse: the index of the record where it shows, and why, in one line."""

    index: int
    record: ProbeRecord
    reason: str


def detect_collapse(
    records: Sequence[ProbeRecord], *, drop: float = 0.2, gap: float = 0.5
) -> Collapse | None:
    """The first record showing catastrophic overfitting (see the module docstring), or ``None``."""
    best = -1.0
    for i, rec in enumerate(records):
        if best - rec.pgd > drop:
            return Collapse(
                i, rec, f"PGD accuracy on the probe batch fell from {best:.1%} to {rec.pgd:.1%} "
                f"(more than {drop:.0%} below its best) after {rec.batches} batches",
            )
        if rec.fgsm - rec.pgd >= gap:
            return Collapse(
                i, rec, f"PGD accuracy on the probe batch is {rec.pgd:.1%} while FGSM accuracy is "
                f"{rec.fgsm:.1%} after {rec.batches} batches (gradient masking)",
            )
        best = max(best, rec.pgd)
    return None


def _global_mean(correct: Tensor) -> float:
    """Fraction of ``True`` in ``correct``, over every process of a distributed run."""
    counts = torch.stack([correct.sum(), torch.tensor(correct.numel(), device=correct.device)]).double()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)
    return float(counts[0] / counts[1].clamp_min(1))


class OverfittingGuard:
    """Watches a model for catastrophic overfitting (Wong et al. 2020's early stopping).

    Parameters
    ----------
    threat:
        The training threat model at its full eps (the probe's budget).
    probe_size:
        Points of the first training batch kept as the fixed probe (default 128: a typical
        minibatch, as Wong et al. check one training minibatch).
    pgd_steps:
        Steps of the probe's PGD (random start, step ``2.5·eps/steps``); default 5, Wong et al.'s
        check (a collapse is drastic: a few steps see it, and the check stays cheap).
    every:
        Check every ``every`` training batches; ``None`` (default) checks once per epoch only, as
        Wong et al. do.
    drop, gap:
        The collapse rule of :func:`detect_collapse`.
    action:
        On a collapse: ``"warn"`` report it and go on; ``"stop"`` report and stop training;
        ``"restore"`` (default) also load the weights of the best check, as Wong et al.'s early
        stopping keeps the last weights before the collapse.
    seed:
        Seed of the probe attacks' random starts (fixed, so checks differ only by the weights).
    """

    def __init__(
        self,
        threat: Threat,
        *,
        probe_size: int = 128,
        pgd_steps: int = 5,
        every: int | None = None,
        drop: float = 0.2,
        gap: float = 0.5,
        action: Action = "restore",
        seed: int = 0,
    ) -> None:
        if action not in ACTIONS:
            raise InputError(f"overfitting guard: action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if probe_size < 1 or pgd_steps < 1 or (every is not None and every < 1):
            raise InputError("overfitting guard: probe_size, pgd_steps and every must be positive integers")
        self.threat = threat
        self.probe_size = probe_size
        self.every = every
        self.drop, self.gap = drop, gap
        self.action: Action = action
        self._fgsm = create("fgsm", threat=threat)
        self._pgd = create("pgd", threat=threat, steps=pgd_steps, random_start=True, seed=seed)
        self.records: list[ProbeRecord] = []
        self.collapse: Collapse | None = None
        self._probe: tuple[Tensor, Tensor] | None = None
        self._model: nn.Module | None = None
        self._batches = 0
        self._best_pgd = -1.0
        self._best_state: dict[str, Tensor] | None = None

    def observe(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        """Called on every training batch: keeps the probe (first call) and checks every ``every``."""
        if self._probe is None:
            self._probe = (x[: self.probe_size].detach().clone(), y[: self.probe_size].detach().clone())
        self._model = model
        self._batches += 1
        if self.every is not None and self._batches % self.every == 0 and self.collapse is None:
            self.check()

    def check(self) -> Collapse | None:
        """Measure the probe now; return the collapse if this (or an earlier) check found one."""
        if self._model is None or self._probe is None:
            return None
        model = self._model
        x, y = self._probe
        with torch.no_grad(), evaluation_mode(model):
            clean_ok = model(x).argmax(dim=1) == y
        rec = ProbeRecord(
            batches=self._batches,
            clean=_global_mean(clean_ok),
            fgsm=_global_mean(~self._fgsm(model, x, y).success),
            pgd=_global_mean(~self._pgd(model, x, y).success),
        )
        self.records.append(rec)
        if self.collapse is None:
            self.collapse = detect_collapse(self.records, drop=self.drop, gap=self.gap)
        if self.collapse is None and rec.pgd >= self._best_pgd:
            self._best_pgd = rec.pgd
            self._best_state = copy.deepcopy(model.state_dict())
        return self.collapse

    def end_of_epoch(self) -> Collapse | None:
        """The per-epoch check; on a collapse with ``action="restore"`` the best weights are loaded.

        Returns the collapse when training should stop (``action`` ``"stop"`` or ``"restore"``)
        or be warned about (``"warn"``), ``None`` while training is healthy.
        """
        collapse = self.check() if self.collapse is None else self.collapse
        if collapse is not None and self.action == "restore" and self._best_state is not None:
            assert self._model is not None
            self._model.load_state_dict(self._best_state)
            self._best_state = None  # restored once
        return collapse

    def state_dict(self) -> dict[str, object]:
        """What a resumed run needs to go on watching as if never stopped: the probe, the checks so
        far, the batch count, and the best check's weights (so ``"restore"`` still works)."""
        return {
            "probe": None if self._probe is None else list(self._probe),
            "records": [[r.batches, r.clean, r.fgsm, r.pgd] for r in self.records],
            "batches": self._batches,
            "best_pgd": self._best_pgd,
            "best_state": self._best_state,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Take back :meth:`state_dict`; the collapse, if any, is found again from the records."""
        probe = state["probe"]
        self._probe = None if probe is None else (probe[0], probe[1])  # type: ignore[index]
        self.records = [ProbeRecord(int(b), float(c), float(f), float(p))
                        for b, c, f, p in state["records"]]  # type: ignore[union-attr]
        self.collapse = detect_collapse(self.records, drop=self.drop, gap=self.gap)
        self._batches = int(state["batches"])  # type: ignore[arg-type]
        self._best_pgd = float(state["best_pgd"])  # type: ignore[arg-type]
        self._best_state = state["best_state"]  # type: ignore[assignment]

    @property
    def stops(self) -> bool:
        """Whether a collapse ends training (``action`` is ``"stop"`` or ``"restore"``)."""
        return self.action != "warn"

    def describe(self) -> dict[str, object]:
        return {
            "probe_size": self.probe_size,
            "every": self.every,
            "drop": self.drop,
            "gap": self.gap,
            "action": self.action,
        }

