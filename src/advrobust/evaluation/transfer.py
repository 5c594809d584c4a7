"""Transfer attacks: craft on source (surrogate) models, measure success on target models.

The matrix has the form of Table 1 of Dong et al. (2018, "Boosting adversarial attacks with
momentum"): one row per attack × source model, one column per target model, each entry the success
rate (%) of the adversarial examples crafted on the source against the target; an entry whose
source is its target is the white-box success rate (``*`` in the paper).

Success on a target counts the points both the source and that target classify correctly (an
example "fools" a model only if the model was right without it). As in the paper, iterative attacks
run all their steps on every point (no early stop at the source's first success): the goal is an
example that fools *other* models, and stopping at the source's decision boundary transfers worse.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from advrobust.attacks import registry
from advrobust.attacks.base import Attack, FixedBudgetAttack
from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.inputs import check_inputs
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress
from advrobust.runtime.runner import Model
from advrobust.threat import Linf, Threat


@dataclass
class TransferResult:
    """``success[a][s][t]``: success rate of attack ``a`` crafted on source ``s`` against target
    ``t``; ``counts[a][s][t]``: the number of points it is measured on."""

    attacks: list[str]
    sources: list[str]
    targets: list[str]
    threat: str
    eps: float
    success: list[list[list[float]]]
    counts: list[list[list[int]]]

    def table(self) -> list[tuple[str, str, dict[str, float]]]:
        """``(attack, source, {target: success rate})`` rows, the table's layout."""
        return [
            (attack, source, dict(zip(self.targets, self.success[a][s], strict=True)))
            for a, attack in enumerate(self.attacks)
            for s, source in enumerate(self.sources)
        ]

    @property
    def rows(self) -> list[str]:
        """Row labels ``"attack / source"`` of :attr:`matrix`."""
        return [f"{attack} / {source}" for attack, source, _ in self.table()]

    @property
    def columns(self) -> list[str]:
        return list(self.targets)

    @property
    def matrix(self) -> list[list[float]]:
        """The 2-D table: one row per attack × source, one column per target (what the report draws)."""
        return [list(rates.values()) for _, _, rates in self.table()]

    def white_box(self, attack: str, model: str) -> float:
        """The diagonal entry: ``attack`` crafted on ``model`` against itself."""
        return self.success[self.attacks.index(attack)][self.sources.index(model)][self.targets.index(model)]

    def to_dict(self) -> dict[str, Any]:
        """The fields, plus the derived 2-D ``matrix`` with its ``rows`` / ``columns`` labels."""
        return {**vars(self), "rows": self.rows, "columns": self.columns, "matrix": self.matrix}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> TransferResult:
        d = json.loads(text)
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def _build(item: str | Attack, threat: Threat) -> tuple[str, Attack]:
    if isinstance(item, Attack):
        return item.name or type(item).__name__.lower(), item
    cls = registry.get(item)
    if not issubclass(cls, FixedBudgetAttack):
        raise InputError(f"transfer needs fixed-budget attacks (eps-bounded examples); {item!r} is not one")
    extra = {"early_stop": False} if "early_stop" in inspect.signature(cls.__init__).parameters else {}
    return str(item).lower(), registry.create(item, threat=threat, **extra)


@torch.no_grad()
def _predict(model: Model, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])


def transfer_matrix(
    sources: Mapping[str, Model],
    targets: Mapping[str, Model],
    x: Tensor,
    y: Tensor,
    attacks: Sequence[str | Attack] = ("fgsm", "i-fgsm", "mi-fgsm"),
    threat: Threat | None = None,
    *,
    batch_size: int = 256,
    progress: Progress = SILENT,
) -> TransferResult:
    """The success-rate matrix of ``attacks`` crafted on each source against each target.

    Defaults: the attacks of Dong et al.'s table (FGSM, I-FGSM, MI-FGSM) and ``threat`` l∞ 0.3 (the
    MNIST budget of Madry et al. 2018).
    """
    threat = Linf(eps=0.3) if threat is None else threat
    if threat.eps is None:
        raise InputError("transfer needs a threat model with an eps, e.g. ar.Linf(eps=0.3)")
    if not sources or not targets:
        raise InputError("give at least one source and one target model")
    built = [_build(a, threat) for a in attacks]
    models = {**sources, **targets}
    for m in models.values():
        x, y, _ = check_inputs(m, x, y)
    with ExitStack() as stack:
        for m in models.values():
            stack.enter_context(evaluation_mode(m))
        clean_ok = {name: _predict(m, x, batch_size) == y for name, m in models.items()}
        success = [[[0.0] * len(targets) for _ in sources] for _ in built]
        counts = [[[0] * len(targets) for _ in sources] for _ in built]
        with progress.task("transfer", total=len(built) * len(sources)) as task:
            for a, (_, attack) in enumerate(built):
                for s, (s_name, source) in enumerate(sources.items()):
                    idx = clean_ok[s_name].nonzero().squeeze(1)
                    parts = [attack(source, x[c], y[c]).x_adv for c in idx.split(batch_size)]
                    x_adv = torch.cat(parts) if parts else x[idx]
                    for t, (t_name, target) in enumerate(targets.items()):
                        keep = clean_ok[t_name][idx]
                        counts[a][s][t] = int(keep.sum())
                        if counts[a][s][t]:
                            fooled = _predict(target, x_adv[keep], batch_size) != y[idx][keep]
                            success[a][s][t] = float(fooled.float().mean())
                    task.advance()
    return TransferResult(
        attacks=[name for name, _ in built],
        sources=list(sources),
        targets=list(targets),
        threat=threat.name,
        eps=float(threat.eps),
        success=success,
        counts=counts,
    )
