"""Per-epoch training metrics: kept in a :class:`TrainingHistory`, written as JSON lines or CSV."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from advrobust.paths import atomic_path


@dataclass
class EpochRecord:
    """The metrics of one epoch (1-based). Accuracies are fractions in [0, 1]; ``None`` when not
    measured (no validation set, no ``val_attack``). ``note``: a method's warning, if any."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float | None
    val_robust_acc: float | None
    lr: float
    seconds: float
    note: str | None = None

    def metric(self, name: str) -> float | None:
        value = getattr(self, name, None)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass
class TrainingHistory:
    """What :func:`advrobust.training.fit` returns. ``best_epoch``: the epoch whose weights were
    best on the tracked metric (``best_metric``, its name ``monitor``); ``stop_reason``: why training
    ended before ``epochs`` (early stopping or a method's :class:`~advrobust.training.methods.Stop`);
    ``final_epoch``: the epoch whose weights the model holds after training (best or last).
    ``status``: ``"completed"`` (every planned epoch), ``"stopped"`` (early stopping, or a method's
    stop that is not a failure) or ``"failed"``: the run collapsed (:mod:`advrobust.training.collapse`,
    or a method's :class:`~advrobust.training.methods.Collapsed`) and the model is **not** trained;
    ``stop_reason`` then says why and the likely fix, in one line. ``config``: the settings the
    run used (optimizer, learning rate, schedule, the method and its inner attack)."""

    records: list[EpochRecord] = field(default_factory=list)
    monitor: str = "val_acc"
    best_epoch: int | None = None
    best_metric: float | None = None
    stop_reason: str | None = None
    final_epoch: int | None = None
    status: str = "running"
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether the run collapsed (``status == "failed"``): its model is not a trained one."""
        return self.status == "failed"

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> EpochRecord | None:
        return self.records[-1] if self.records else None

    def column(self, name: str) -> list[float | None]:
        return [r.metric(name) for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": [asdict(r) for r in self.records],
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "stop_reason": self.stop_reason,
            "final_epoch": self.final_epoch,
            "status": self.status,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingHistory:
        return cls(
            records=[EpochRecord(**r) for r in data["records"]],
            monitor=data["monitor"],
            best_epoch=data["best_epoch"],
            best_metric=data["best_metric"],
            stop_reason=data["stop_reason"],
            final_epoch=data["final_epoch"],
            status=data.get("status", "running"),
            config=data.get("config", {}),
        )

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write every record, atomically: CSV when ``path`` ends in ``.csv``, else JSON lines."""
        target = Path(path)
        with atomic_path(target) as tmp, open(tmp, "w", newline="") as handle:
            if target.suffix == ".csv":
                writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(EpochRecord)])
                writer.writeheader()
                writer.writerows(asdict(r) for r in self.records)
            else:
                for r in self.records:
                    handle.write(json.dumps(asdict(r)) + "\n")
