"""The report's inputs, as plain immutable data.

The report draws results that other layers produce (an evaluation, an audit, a transfer matrix,
One-Pixel and fooling-image runs, a training history). Each ``*_view`` function reads one of them
— from the result object itself or from the dictionary its JSON holds (an evaluation through
``EvaluationResult.from_dict``, the others by field name) — and returns a
small frozen dataclass of numbers, strings and numpy arrays (examples and attack records stay
the evaluation's ``Example`` and ``AttackRecord``). The figures and the HTML are written
against these views only, so the report never depends on how a result is stored.

A missing field raises :class:`~advrobust.errors.InputError` naming the field; optional fields get
the defaults stated below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from advrobust.errors import InputError
from advrobust.evaluation.result import AttackRecord, EvaluationResult, Example

_MISSING = object()


def _get(obj: Any, kind: str, *names: str, default: Any = _MISSING) -> Any:
    """The first of ``names`` that ``obj`` has, as an attribute or a mapping key."""
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    if default is _MISSING:
        raise InputError(
            f"the {kind} passed to the report has no field {names[0]!r}: pass the result object "
            f"or the JSON it wrote"
        )
    return default


def _array(value: Any, dtype: Any = None) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def image_hwc(value: Any) -> np.ndarray:
    """A ``C×H×W`` image (tensor or nested lists, values in ``[0, 1]``) as a float ``H×W×C`` array."""
    a = _array(value, np.float64)
    if a.ndim != 3:
        raise InputError(f"the report expects images of shape C×H×W, got shape {a.shape}")
    return np.transpose(a, (1, 2, 0))


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvaluationView:
    """An evaluation: ``robust[e, i]`` is true when point ``i`` is correct and unbroken at
    ``epsilons[e]``; ``broken_by[e, i]`` names the attack that broke it (``""``: none);
    ``min_norm[i]`` is the smallest perturbation found (``inf``: none)."""

    model_name: str
    model_fingerprint: str
    data_name: str
    threat: str
    epsilons: tuple[float, ...]
    suite: str
    attacks: tuple[str, ...]
    classes: tuple[str, ...]
    labels: np.ndarray
    clean_correct: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray
    min_norm: np.ndarray
    per_attack: tuple[AttackRecord, ...]
    examples: tuple[Example, ...]
    clean_accuracy: float
    robust_accuracy: tuple[float, ...]

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    def class_name(self, k: int) -> str:
        return self.classes[k] if 0 <= k < len(self.classes) else str(k)

    def robust_counts(self) -> list[int]:
        """Per eps, how many points are robust (the numerator of robust accuracy)."""
        return [int(row.sum()) for row in self.robust]

    def per_class(self) -> list[tuple[int, int, float, tuple[float, ...]]]:
        """Per class present in ``labels``: (class, points, clean accuracy, robust accuracy per eps)."""
        rows = []
        for k in np.unique(self.labels):
            mask = self.labels == k
            robust = tuple(float(self.robust[e, mask].mean()) for e in range(len(self.epsilons)))
            rows.append((int(k), int(mask.sum()), float(self.clean_correct[mask].mean()), robust))
        return rows

    def broken_counts(self, e: int) -> dict[str, int]:
        """At ``epsilons[e]``: how many points each attack broke (the first to break them)."""
        names, counts = np.unique(self.broken_by[e][self.broken_by[e] != ""], return_counts=True)
        return {str(a): int(c) for a, c in zip(names, counts, strict=False)}


def evaluation_view(ev: EvaluationResult | Mapping[str, Any]) -> EvaluationView:
    """Read an ``EvaluationResult``, or the dictionary its JSON holds (read by ``EvaluationResult.from_dict``)."""
    if isinstance(ev, Mapping):
        try:
            ev = EvaluationResult.from_dict(dict(ev))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"the evaluation passed to the report is not an evaluation result ({exc})") from None
    if not isinstance(ev, EvaluationResult):
        raise InputError(f"the report reads an EvaluationResult or the JSON it wrote, got {type(ev).__name__}")
    n, e = ev.n_points, len(ev.epsilons)
    labels = ev.labels.detach().cpu().numpy().astype(np.int64).reshape(n)
    classes = ev.classes or [str(k) for k in range(int(labels.max()) + 1 if n else 0)]
    broken = np.array([[name or "" for name in row] for row in ev.broken_by], dtype=object).reshape(e, n)
    return EvaluationView(
        model_name=ev.model_name,
        model_fingerprint=ev.model_fingerprint or "",
        data_name=ev.data_name,
        threat=ev.threat,
        epsilons=tuple(float(eps) for eps in ev.epsilons),
        suite=ev.suite or "",
        attacks=tuple(ev.attacks),
        classes=tuple(str(c) for c in classes),
        labels=labels,
        clean_correct=ev.clean_correct.detach().cpu().numpy().astype(bool).reshape(n),
        robust=ev.robust.detach().cpu().numpy().astype(bool).reshape(e, n),
        broken_by=broken,
        min_norm=ev.min_norm.detach().cpu().numpy().astype(np.float64).reshape(n),
        per_attack=tuple(ev.per_attack),
        examples=tuple(ev.examples),
        clean_accuracy=ev.clean_accuracy,
        robust_accuracy=tuple(ev.robust_accuracy.values()),
    )


# ----------------------------------------------------------------------------- audit


@dataclass(frozen=True)
class CheckView:
    name: str
    verdict: str
    evidence: str
    explanation: str


@dataclass(frozen=True)
class AuditView:
    passed: bool
    checks: tuple[CheckView, ...]


def _evidence(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} = {_short(v)}" for k, v in value.items())
    return "" if value is None else _short(value)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def audit_view(audit: Any) -> AuditView:
    """Read an ``AuditResult``: ``passed`` and ``checks`` of (name, verdict, evidence, explanation)."""
    kind = "audit"
    checks = tuple(
        CheckView(
            name=str(_get(c, "audit check", "name")),
            verdict=str(getattr(v := _get(c, "audit check", "verdict"), "value", v)),
            evidence=_evidence(_get(c, "audit check", "evidence", default=None)),
            explanation=str(_get(c, "audit check", "explanation", default="") or ""),
        )
        for c in _get(audit, kind, "checks")
    )
    return AuditView(passed=bool(_get(audit, kind, "passed")), checks=checks)


# ----------------------------------------------------------------------------- transfer


@dataclass(frozen=True)
class TransferView:
    """Success rate ``matrix[r, c]`` of the examples of row ``r`` (attack × source) on target ``c``."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    matrix: np.ndarray
    budget: str


def transfer_view(tr: Any) -> TransferView:
    """Read a ``TransferResult`` (or its dictionary): ``matrix`` with its ``rows`` and ``columns``
    labels, and optionally ``threat`` and ``eps`` (shown as the budget)."""
    kind = "transfer result"
    matrix = _array(_get(tr, kind, "matrix", "success_rate", "success"), np.float64)
    if matrix.ndim != 2:
        raise InputError(f"the transfer matrix must be 2-D (rows × targets), got shape {matrix.shape}")
    rows = tuple(str(r) for r in _get(tr, kind, "rows", "row_labels", "sources"))
    columns = tuple(str(c) for c in _get(tr, kind, "columns", "column_labels", "targets"))
    if matrix.shape != (len(rows), len(columns)):
        raise InputError(
            f"the transfer matrix has shape {matrix.shape} but {len(rows)} row and "
            f"{len(columns)} column labels"
        )
    threat, eps = _get(tr, kind, "threat", default=None), _get(tr, kind, "eps", default=None)
    budget = "" if threat is None or eps is None else f"{threat} ε = {float(eps):g}"
    return TransferView(rows=rows, columns=columns, matrix=matrix, budget=budget)


# ----------------------------------------------------------------------------- query attacks


@dataclass(frozen=True)
class PixelTarget:
    """One image pushed towards one target class: the attacked image and the target's confidence."""

    target: int
    x_adv: np.ndarray
    success: bool
    confidence: float


@dataclass(frozen=True)
class OnePixelView:
    x: np.ndarray
    label: int
    targets: tuple[PixelTarget, ...]


def one_pixel_view(op: Any) -> OnePixelView:
    """Read a One-Pixel all-targets result: the image ``x``, its ``label``, and per target class
    ``targets``, ``x_adv``, ``success`` and the target's ``confidence``."""
    kind = "One-Pixel result"
    if _get(op, kind, "x", default=None) is None and _get(op, kind, "result", default=None) is not None:
        raise InputError("a One-Pixel all-targets result holds no clean images or confidences: pass "
                         "advrobust.report.inputs.one_pixel_inputs(model, x, y, result) instead")
    targets = _array(_get(op, kind, "targets"), np.int64).reshape(-1)
    x_adv = _get(op, kind, "x_adv")
    success = _array(_get(op, kind, "success"), bool).reshape(-1)
    conf = _array(_get(op, kind, "confidence", "target_confidence", "adv_conf"), np.float64)
    return OnePixelView(
        x=image_hwc(_get(op, kind, "x")),
        label=int(_get(op, kind, "label", "y")),
        targets=tuple(
            PixelTarget(int(t), image_hwc(x_adv[i]), bool(success[i]), float(conf.reshape(-1)[i]))
            for i, t in enumerate(targets)
        ),
    )


@dataclass(frozen=True)
class FoolingImage:
    target: int
    image: np.ndarray
    confidence: float
    queries: float
    reached: bool | None


@dataclass(frozen=True)
class FoolingView:
    method: str
    images: tuple[FoolingImage, ...]


def fooling_view(fo: Any) -> FoolingView:
    """Read a ``FoolingResult`` (or its fields): per requested class (``classes`` or ``targets``)
    the ``images``, the ``confidence`` reached, and optionally the ``queries`` spent (default
    ``nan``), whether the requested level was ``reached`` (default unknown) and the ``method``."""
    kind = "fooling result"
    images = _get(fo, kind, "images", "x")
    targets = _array(_get(fo, kind, "classes", "targets"), np.int64).reshape(-1)
    conf = _array(_get(fo, kind, "confidence", "confidences"), np.float64).reshape(-1)
    n = len(targets)
    queries = _get(fo, kind, "queries", default=None)
    q = np.full(n, np.nan) if queries is None else _array(queries, np.float64).reshape(-1)
    reached = _get(fo, kind, "reached", default=None)
    ok = [None] * n if reached is None else [bool(v) for v in _array(reached, bool).reshape(-1)]
    return FoolingView(
        method=str(_get(fo, kind, "method", default="") or ""),
        images=tuple(
            FoolingImage(int(t), image_hwc(images[i]), float(conf[i]), float(q[i]), ok[i])
            for i, t in enumerate(targets)
        ),
    )


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingView:
    """Per-epoch metrics: ``metrics[name]`` holds one value per entry of ``epochs`` (``nan`` where
    not measured); ``notes`` the per-epoch warnings (``""``: none); ``summary`` why and where
    training stopped, when the history says."""

    method: str
    epochs: tuple[int, ...]
    metrics: dict[str, tuple[float, ...]]
    notes: tuple[str, ...]
    summary: str


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def training_view(history: Any) -> TrainingView:
    """Read a ``TrainingHistory`` (or its dictionary, or the list of its JSON-lines records):
    ``records`` of per-epoch numeric metrics (``None``: not measured) and an optional ``note``;
    ``method`` (default ``"training"``), ``best_epoch``, ``monitor``, ``stop_reason`` if given."""
    kind = "training history"
    records = history if isinstance(history, list) else _get(history, kind, "records", "epochs")
    rows = [r if isinstance(r, Mapping) else vars(r) for r in records]
    epochs = tuple(int(r.get("epoch", i + 1)) for i, r in enumerate(rows))
    names = [
        k for k in (rows[0] if rows else {})
        if k != "epoch"
        and all(_numeric(r.get(k)) or r.get(k) is None for r in rows)
        and any(_numeric(r.get(k)) for r in rows)
    ]
    meta = {} if isinstance(history, list) else {
        k: _get(history, kind, k, default=None) for k in ("method", "best_epoch", "monitor", "stop_reason")
    }
    summary = []
    if meta.get("best_epoch") is not None:
        summary.append(f"best epoch {meta['best_epoch']} on {meta.get('monitor') or 'the tracked metric'}")
    if meta.get("stop_reason"):
        summary.append(f"stopped early: {meta['stop_reason']}")
    return TrainingView(
        method=str(meta.get("method") or "training"),
        epochs=epochs,
        metrics={k: tuple(_float(r.get(k)) for r in rows) for k in names},
        notes=tuple(str(r.get("note") or "") for r in rows),
        summary="; ".join(summary),
    )
