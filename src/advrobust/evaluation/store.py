"""The results store: every evaluation in one SQLite file, a local leaderboard.

Tables (one row per evaluation in ``runs``, with the full result as JSON so nothing is lost):

* ``runs``: id, time, model name and fingerprint (SHA-256 of the weights), data, threat, suite,
  number of points, clean accuracy, seconds, versions (JSON), the result (JSON);
* ``robustness``: per run and eps, the ensemble's robust accuracy and its 95% Wilson interval;
* ``attacks``: per run, attack and eps, the :class:`~advrobust.evaluation.result.AttackRecord`;
* ``certified``: per run and eps, the certified accuracy (a lower bound), for smoothed classifiers.
* ``task_runs`` / ``task_metrics``: evaluations of segmenters and detectors
  (:class:`~advrobust.evaluation.tasks.TaskEvaluation`): one row per run, and its metrics (mIoU,
  pixel accuracy, mAP, recall) per eps (``"clean"`` for the clean images) and attack; a physical
  evaluation adds the same under its transformations as ``physical_miou``, ``physical_map``, ….

The default file is ``results.sqlite`` in the advrobust cache directory (``$ADVROBUST_HOME``, else
``$XDG_CACHE_HOME/advrobust``, else ``~/.cache/advrobust``; :mod:`advrobust.paths`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advrobust.errors import InputError
from advrobust.evaluation.result import EvaluationResult
from advrobust.paths import atomic_path, cache_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    data_name TEXT NOT NULL,
    threat TEXT NOT NULL,
    suite TEXT NOT NULL,
    n_points INTEGER NOT NULL,
    clean_accuracy REAL NOT NULL,
    seconds REAL NOT NULL,
    versions TEXT NOT NULL,
    result_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS robustness (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    eps REAL NOT NULL,
    robust_accuracy REAL NOT NULL,
    ci_low REAL NOT NULL,
    ci_high REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attacks (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    attack TEXT NOT NULL,
    eps REAL NOT NULL,
    robust_accuracy REAL NOT NULL,
    success_rate REAL NOT NULL,
    median_norm REAL,
    mean_queries REAL NOT NULL,
    seconds REAL NOT NULL,
    attacked INTEGER NOT NULL,
    broken INTEGER NOT NULL,
    skipped_reason TEXT
);
CREATE TABLE IF NOT EXISTS certified (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    eps REAL NOT NULL,
    certified_accuracy REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS task_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    task TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    data_name TEXT NOT NULL,
    threat TEXT NOT NULL,
    n_points INTEGER NOT NULL,
    seconds REAL NOT NULL,
    result_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS task_metrics (
    run_id INTEGER NOT NULL REFERENCES task_runs(id) ON DELETE CASCADE,
    eps TEXT NOT NULL,
    attack TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS robustness_run ON robustness(run_id);
CREATE INDEX IF NOT EXISTS attacks_run ON attacks(run_id);
"""


def default_path() -> Path:
    return cache_dir() / "results.sqlite"


@dataclass
class Row:
    """One stored evaluation as the leaderboard shows it (robust accuracy per eps, with CIs)."""

    id: int
    timestamp: str
    model_name: str
    model_fingerprint: str
    data_name: str
    threat: str
    suite: str
    n_points: int
    clean_accuracy: float
    seconds: float
    robust_accuracy: dict[float, tuple[float, float, float]]  # eps -> (acc, ci_low, ci_high)
    certified_accuracy: dict[float, float] = field(default_factory=dict)  # eps -> lower bound (smoothed only)

    def flat(self) -> dict[str, Any]:
        """A flat dict (for CSV): one ``robust@eps`` column per eps."""
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("id", "timestamp", "model_name", "model_fingerprint", "data_name", "threat",
                      "suite", "n_points", "clean_accuracy", "seconds")
        }
        for eps, (acc, lo, hi) in sorted(self.robust_accuracy.items()):
            out[f"robust@{eps:g}"] = acc
            out[f"robust@{eps:g}_ci"] = f"{lo:.4f}-{hi:.4f}"
        for eps, acc in sorted(self.certified_accuracy.items()):
            out[f"certified@{eps:g}"] = acc
        return out


class ResultStore:
    """Record and query evaluations in a SQLite file (created on first use)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        if self.path.is_dir():
            raise InputError(f"the results store {self.path} is a folder: give a file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as con:
                con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path} is not an advrobust results database ({exc})") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA foreign_keys = ON")
            with con:  # one transaction: committed on success, rolled back on error
                yield con
        finally:
            con.close()

    def add(self, result: EvaluationResult) -> int:
        """Record ``result``; returns its id."""
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO runs (timestamp, model_name, model_fingerprint, data_name, threat, suite,"
                " n_points, clean_accuracy, seconds, versions, result_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (result.timestamp, result.model_name, result.model_fingerprint, result.data_name,
                 result.threat, result.suite, result.n_points, result.clean_accuracy, result.seconds,
                 json.dumps(result.versions), result.to_json()),
            )
            run_id = int(cur.lastrowid or 0)
            ci = result.robust_accuracy_ci
            con.executemany(
                "INSERT INTO robustness VALUES (?, ?, ?, ?, ?)",
                [(run_id, eps, acc, *ci[eps]) for eps, acc in result.robust_accuracy.items()],
            )
            con.executemany(
                "INSERT INTO attacks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r.attack, r.eps, r.robust_accuracy, r.success_rate,
                  None if math.isnan(r.median_norm) else r.median_norm, r.mean_queries, r.seconds,
                  r.attacked, r.broken, r.skipped_reason) for r in result.per_attack],
            )
            con.executemany(
                "INSERT INTO certified VALUES (?, ?, ?)",
                [(run_id, eps, acc) for eps, acc in (result.certified_accuracy or {}).items()],
            )
        return run_id

    def add_task(self, result: Any) -> int:
        """Record a :class:`~advrobust.evaluation.tasks.TaskEvaluation`; returns its id."""
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO task_runs (timestamp, task, model_name, model_fingerprint, data_name, threat, n_points,"
                " seconds, result_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (result.timestamp, result.task, result.model_name, result.model_fingerprint, result.data_name,
                 result.threat, result.n_points, result.seconds, json.dumps(result.to_dict())),
            )
            run_id = int(cur.lastrowid or 0)
            rows = [(run_id, "clean", "none", k, v) for k, v in result.clean.items()]
            rows += [(run_id, eps, attack, k, v) for eps, by_attack in result.metrics.items()
                     for attack, values in by_attack.items() for k, v in values.items()]
            # a physical evaluation: the metrics under the transformations, as "physical_<metric>"
            rows += [(run_id, "clean", "none", f"physical_{k}", v) for k, v in result.baseline.items()]
            rows += [(run_id, eps, attack, f"physical_{k}", v) for eps, by_attack in result.physical.items()
                     for attack, values in by_attack.items() for k, v in values.items()]
            con.executemany("INSERT INTO task_metrics VALUES (?, ?, ?, ?, ?)", rows)
        return run_id

    def task_metrics(self, run_id: int) -> list[tuple[str, str, str, float]]:
        """The metrics of a stored task evaluation: ``(eps, attack, metric, value)`` rows."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT eps, attack, metric, value FROM task_metrics WHERE run_id = ? ORDER BY rowid", (int(run_id),)
            ).fetchall()
        if not rows:
            raise InputError(f"no stored task evaluation with id {run_id} in {self.path}")
        return [(str(e), str(a), str(m), float(v)) for e, a, m, v in rows]

    def get(self, run_id: int) -> EvaluationResult:
        """The full result stored under ``run_id``."""
        with self._connect() as con:
            row = con.execute("SELECT result_json FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise InputError(f"no stored evaluation with id {run_id} in {self.path}")
        return EvaluationResult.from_json(row[0])

    def delete(self, run_id: int) -> None:
        with self._connect() as con:
            if con.execute("DELETE FROM runs WHERE id = ?", (int(run_id),)).rowcount == 0:
                raise InputError(f"no stored evaluation with id {run_id} in {self.path}")

    def rows(
        self,
        model: str | None = None,
        data: str | None = None,
        threat: str | None = None,
        eps: float | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Stored evaluations, filtered (``model`` matches the name or a fingerprint prefix), best
        robust accuracy first (at ``eps`` if given, else at each run's largest eps), newest first on
        ties."""
        where, args = [], []
        if model:
            where.append("(model_name = ? OR model_fingerprint LIKE ?)")
            args += [model, f"{model}%"]
        if data:
            where.append("data_name = ?")
            args.append(data)
        if threat:
            where.append("threat = ?")
            args.append(threat.lower())
        sql = "SELECT id, timestamp, model_name, model_fingerprint, data_name, threat, suite, n_points," \
              " clean_accuracy, seconds FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect() as con:
            runs = con.execute(sql, args).fetchall()
            robust: dict[int, dict[float, tuple[float, float, float]]] = {}
            query = "SELECT run_id, eps, robust_accuracy, ci_low, ci_high FROM robustness"
            for run_id, e, acc, lo, hi in con.execute(query):
                robust.setdefault(run_id, {})[e] = (acc, lo, hi)
            certified: dict[int, dict[float, float]] = {}
            for run_id, e, acc in con.execute("SELECT run_id, eps, certified_accuracy FROM certified"):
                certified.setdefault(run_id, {})[e] = acc
        out = [Row(*r, robust_accuracy=robust.get(r[0], {}), certified_accuracy=certified.get(r[0], {})) for r in runs]
        if eps is not None:
            out = [r for r in out if any(math.isclose(e, eps, abs_tol=1e-12) for e in r.robust_accuracy)]

        def score(r: Row) -> float:
            if eps is not None:
                return next(v[0] for e, v in r.robust_accuracy.items() if math.isclose(e, eps, abs_tol=1e-12))
            return r.robust_accuracy[max(r.robust_accuracy)][0] if r.robust_accuracy else -1.0

        out.sort(key=lambda r: r.timestamp, reverse=True)
        out.sort(key=lambda r: -score(r))
        return out[:limit] if limit else out

    def export_json(self, path: str | os.PathLike[str], rows: list[Row]) -> Path:
        """Write the full stored results of ``rows`` as a JSON list."""
        with self._connect() as con:
            texts = [con.execute("SELECT result_json FROM runs WHERE id = ?", (r.id,)).fetchone()[0] for r in rows]
        payload = [{"id": r.id, "result": json.loads(t)} for r, t in zip(rows, texts, strict=True)]
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(payload, indent=1))
        return Path(path)

    @staticmethod
    def export_csv(path: str | os.PathLike[str], rows: list[Row]) -> Path:
        """Write the leaderboard ``rows`` as CSV, one ``robust@eps`` column per eps."""
        flats = [r.flat() for r in rows]
        columns: list[str] = []
        for f in flats:
            columns += [k for k in f if k not in columns]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(flats)
        return Path(path)
