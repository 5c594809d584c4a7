"""What an evaluation returns: per-point outcomes at every eps, per-attack numbers, a few examples.

Robust accuracy at eps (docs/architecture.md, "Conventions") counts a point as robust only if the model classifies it
correctly *and* no attack of the ensemble found an adversarial example within the eps-ball; it is
an upper bound on the true robust accuracy. Every accuracy comes with a 95% Wilson interval
(:mod:`advrobust.evaluation.stats`).
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.evaluation.stats import wilson_interval
from advrobust.paths import atomic_path

FORMAT_VERSION = 1


@dataclass(kw_only=True)
class AttackRecord:
    """One attack at one eps, run on the points still robust when its turn came.

    ``robust_accuracy``: of the ensemble *after* this attack (cumulative, over all points);
    ``success_rate``: fraction of the points this attack was run on that it broke; ``median_norm``:
    median ``‖r‖_p`` of its successes (``nan`` if none); ``mean_queries``: per attacked point;
    ``attacked``: how many points it was run on; ``skipped_reason``: why it did not run, if so.
    A minimum-norm attack runs once for all eps: its ``seconds`` and ``mean_queries`` are those of
    that one run, repeated in its record at every eps.
    """

    attack: str
    eps: float
    robust_accuracy: float
    success_rate: float
    median_norm: float
    mean_queries: float
    seconds: float
    attacked: int = 0
    broken: int = 0
    skipped_reason: str | None = None

    @classmethod
    def idle(cls, attack: str, eps: float, robust_accuracy: float, skipped_reason: str | None = None) -> AttackRecord:
        """The record of an attack that attacked no point at ``eps`` (none was left, or it was skipped)."""
        return cls(attack=attack, eps=eps, robust_accuracy=robust_accuracy, success_rate=0.0, median_norm=math.nan,
                   mean_queries=0.0, seconds=0.0, skipped_reason=skipped_reason)


@dataclass
class Example:
    """A broken point for the report: clean and adversarial input with the model's answers."""

    index: int
    x: Tensor
    x_adv: Tensor
    label: int
    clean_pred: int
    clean_conf: float
    adv_pred: int
    adv_conf: float
    norm: float
    eps: float
    attack: str


def _encode_tensor(t: Tensor) -> dict[str, Any]:
    a = t.detach().cpu().float().contiguous().numpy()
    return {"shape": list(a.shape), "f32": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode_tensor(d: dict[str, Any]) -> Tensor:
    a = np.frombuffer(base64.b64decode(d["f32"]), dtype=np.float32).reshape(d["shape"])
    return torch.from_numpy(a.copy())


def _float(v: float) -> float | str:
    """JSON has no inf/nan: store them as strings."""
    return v if math.isfinite(v) else str(v)


def _unfloat(v: float | str) -> float:
    return float(v)


@dataclass
class EvaluationResult:
    """The outcome of :func:`advrobust.evaluate`.

    Per point (``N``): ``labels``, ``clean_pred``, ``clean_correct``, ``min_norm`` (the smallest
    ``‖r‖_p`` of an adversarial example any attack found; ``0`` for clean errors, ``inf`` if never
    broken). Per eps × point (``E×N``): ``robust`` and ``broken_by`` (the attack that first broke
    the point at that eps, ``None`` if robust or misclassified clean).
    """

    model_name: str
    model_fingerprint: str
    data_name: str
    threat: str
    epsilons: list[float]
    suite: str
    attacks: list[str]
    classes: list[str]
    labels: Tensor
    clean_pred: Tensor
    clean_correct: Tensor
    robust: Tensor
    broken_by: list[list[str | None]]
    min_norm: Tensor
    per_attack: list[AttackRecord] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    seed: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    timestamp: str = ""
    seconds: float = 0.0

    # --- headline numbers ---------------------------------------------------------------------
    @property
    def n_points(self) -> int:
        return int(self.labels.shape[0])

    @property
    def clean_accuracy(self) -> float:
        return int(self.clean_correct.sum()) / self.n_points if self.n_points else 0.0

    @property
    def clean_accuracy_ci(self) -> tuple[float, float]:
        return wilson_interval(int(self.clean_correct.sum()), self.n_points)

    @property
    def robust_accuracy(self) -> dict[float, float]:
        """Robust accuracy of the ensemble at each eps."""
        n = max(self.n_points, 1)
        return {eps: float(self.robust[e].sum()) / n for e, eps in enumerate(self.epsilons)}

    @property
    def robust_accuracy_ci(self) -> dict[float, tuple[float, float]]:
        return {
            eps: wilson_interval(int(self.robust[e].sum()), self.n_points)
            for e, eps in enumerate(self.epsilons)
        }

    def _eps_index(self, eps: float) -> int:
        for e, value in enumerate(self.epsilons):
            if math.isclose(value, float(eps), rel_tol=1e-9, abs_tol=1e-12):
                return e
        raise InputError(f"eps {eps} was not evaluated; evaluated: {self.epsilons}")

    def robust_accuracy_at(self, eps: float | None = None) -> float:
        """Robust accuracy at one eps (the only one if ``eps`` is omitted and only one was run)."""
        if eps is None:
            if len(self.epsilons) != 1:
                raise InputError(f"several eps were evaluated ({self.epsilons}): name one")
            eps = self.epsilons[0]
        return self.robust_accuracy[self.epsilons[self._eps_index(eps)]]

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: ``class``, ``name``, ``n``, ``clean_accuracy``, ``robust_accuracy``
        (a dict eps -> accuracy) and their Wilson intervals."""
        rows = []
        n_classes = max(len(self.classes), int(self.labels.max()) + 1 if self.n_points else 0)
        for c in range(n_classes):
            mask = self.labels == c
            n = int(mask.sum())
            clean = int((self.clean_correct & mask).sum())
            robust = {eps: int((self.robust[e] & mask).sum()) for e, eps in enumerate(self.epsilons)}
            rows.append(
                {
                    "class": c,
                    "name": self.classes[c] if c < len(self.classes) else str(c),
                    "n": n,
                    "clean_accuracy": clean / n if n else float("nan"),
                    "clean_accuracy_ci": wilson_interval(clean, n),
                    "robust_accuracy": {eps: k / n if n else float("nan") for eps, k in robust.items()},
                    "robust_accuracy_ci": {eps: wilson_interval(k, n) for eps, k in robust.items()},
                }
            )
        return rows

    def records_for(self, eps: float) -> list[AttackRecord]:
        """The per-attack records at one eps, in the order the attacks ran."""
        e = self.epsilons[self._eps_index(eps)]
        return [r for r in self.per_attack if math.isclose(r.eps, e, rel_tol=1e-9, abs_tol=1e-12)]

    # --- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "model_name": self.model_name,
            "model_fingerprint": self.model_fingerprint,
            "data_name": self.data_name,
            "threat": self.threat,
            "epsilons": list(self.epsilons),
            "suite": self.suite,
            "attacks": list(self.attacks),
            "classes": list(self.classes),
            "labels": self.labels.tolist(),
            "clean_pred": self.clean_pred.tolist(),
            "clean_correct": self.clean_correct.tolist(),
            "robust": self.robust.tolist(),
            "broken_by": self.broken_by,
            "min_norm": [_float(v) for v in self.min_norm.tolist()],
            "per_attack": [
                {k: (_float(v) if isinstance(v, float) else v) for k, v in asdict(r).items()}
                for r in self.per_attack
            ],
            "examples": [
                {
                    **{k: v for k, v in vars(ex).items() if k not in ("x", "x_adv", "norm")},
                    "norm": _float(ex.norm),
                    "x": _encode_tensor(ex.x),
                    "x_adv": _encode_tensor(ex.x_adv),
                }
                for ex in self.examples
            ],
            "seed": self.seed,
            "versions": self.versions,
            "timestamp": self.timestamp,
            "seconds": self.seconds,
            # derived, for readers that do not load the object (the store, other tools)
            "summary": {
                "n_points": self.n_points,
                "clean_accuracy": self.clean_accuracy,
                "robust_accuracy": {str(k): v for k, v in self.robust_accuracy.items()},
            },
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationResult:
        if d.get("format") != FORMAT_VERSION:
            raise InputError(f"unsupported evaluation result format {d.get('format')!r}")
        records = [
            AttackRecord(
                **{
                    k: (_unfloat(v) if k in ("median_norm", "robust_accuracy", "success_rate",
                                             "mean_queries", "seconds", "eps") else v)
                    for k, v in r.items()
                }
            )
            for r in d["per_attack"]
        ]
        examples = [
            Example(
                **{k: v for k, v in ex.items() if k not in ("x", "x_adv", "norm")},
                norm=_unfloat(ex["norm"]),
                x=_decode_tensor(ex["x"]),
                x_adv=_decode_tensor(ex["x_adv"]),
            )
            for ex in d["examples"]
        ]
        n_eps = len(d["epsilons"])
        return cls(
            model_name=d["model_name"],
            model_fingerprint=d["model_fingerprint"],
            data_name=d["data_name"],
            threat=d["threat"],
            epsilons=[float(e) for e in d["epsilons"]],
            suite=d["suite"],
            attacks=list(d["attacks"]),
            classes=list(d["classes"]),
            labels=torch.tensor(d["labels"], dtype=torch.long),
            clean_pred=torch.tensor(d["clean_pred"], dtype=torch.long),
            clean_correct=torch.tensor(d["clean_correct"], dtype=torch.bool),
            robust=torch.tensor(d["robust"], dtype=torch.bool).reshape(n_eps, -1),
            broken_by=[list(row) for row in d["broken_by"]],
            min_norm=torch.tensor([_unfloat(v) for v in d["min_norm"]], dtype=torch.float32),
            per_attack=records,
            examples=examples,
            seed=int(d["seed"]),
            versions=dict(d["versions"]),
            timestamp=d["timestamp"],
            seconds=float(d["seconds"]),
        )

    @classmethod
    def from_json(cls, text: str) -> EvaluationResult:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"not an advrobust evaluation result ({exc})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result as JSON (atomically: a crash never leaves half a file)."""
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvaluationResult:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no evaluation result at {path}")
        return cls.from_json(path.read_text())
