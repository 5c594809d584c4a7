"""``write_report``: results in, one HTML page plus its figures (PNG) and results (JSON) out."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from advrobust.errors import InputError
from advrobust.paths import atomic_path
from advrobust.report import html, sections
from advrobust.report.views import (
    audit_view,
    evaluation_view,
    fooling_view,
    one_pixel_view,
    training_view,
    transfer_view,
)
from advrobust.version import __version__

REPORT_FORMAT = "advrobust-report/1"
"""The ``format`` field of the JSON written beside a report (``<name>_results.json``)."""


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def write_report(
    path: str | os.PathLike[str],
    evaluation: Any = None,
    *,
    audit: Any = None,
    transfer: Any = None,
    one_pixel: Any = None,
    fooling: Any = None,
    training: Any = None,
    title: str | None = None,
) -> Path:
    """Write the HTML report of the given results to ``path`` and return its path.

    Beside ``<name>.html`` it writes ``<name>_figures/*.png`` (every figure, to paste into a paper)
    and ``<name>_results.json`` (the results it shows, ``format`` = :data:`REPORT_FORMAT`; ``advrobust
    report <name>_results.json`` renders it again). Each argument is a result object or the dictionary its
    JSON holds: ``evaluation`` an ``EvaluationResult``, ``audit`` an ``AuditResult``, ``transfer`` a
    ``TransferResult``, ``one_pixel`` one All-targets One-Pixel result or a list of them,
    ``fooling`` a fooling-images result, ``training`` a training history. Sections without an input
    are left out; at least one input is required.
    """
    given = {"evaluation": evaluation, "audit": audit, "transfer": transfer,
             "one_pixel": one_pixel, "fooling": fooling, "training": training}
    if all(v is None for v in given.values()):
        raise InputError("nothing to report: pass an evaluation, audit, transfer, one_pixel, "
                         "fooling or training result to write_report")
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"the report is an HTML file: give a path ending in .html, not {path.name!r}")
    fig_dir = figures_dir(path)
    figs = sections.Figures(fig_dir.name)
    ev = evaluation_view(evaluation) if evaluation is not None else None
    au = audit_view(audit) if audit is not None else None
    class_name = ev.class_name if ev is not None else str
    page: list[sections.Section] = []
    if ev is not None:
        page += sections.evaluation_sections(ev, au, figs)
    if au is not None:
        page.append(sections.audit_section(au))
    for i, op in enumerate(_as_list(one_pixel) if one_pixel is not None else []):
        page.append(sections.one_pixel_section(i, one_pixel_view(op), class_name, figs))
    if fooling is not None:
        page.append(sections.fooling_section(fooling_view(fooling), class_name, figs))
    if transfer is not None:
        page.append(sections.transfer_section(transfer_view(transfer), figs))
    if training is not None:
        page.append(sections.training_section(training_view(training), figs))
    if ev is not None:
        page.append(sections.per_class_section(ev))

    fig_dir.mkdir(parents=True, exist_ok=True)
    for stale in fig_dir.glob("*.png"):
        if stale.stem not in figs.pngs:
            stale.unlink()
    for name, data in figs.pngs.items():
        (fig_dir / f"{name}.png").write_bytes(data)
    if title is None:
        title = f"Robustness report: {ev.model_name}" if ev is not None else "advrobust report"
    subtitle = f"advrobust {__version__}"
    _write_atomic(path, html.page(title, page, subtitle))
    results = {"format": REPORT_FORMAT, **{k: _plain(v) for k, v in given.items() if v is not None}}
    _write_atomic(results_path(path), json.dumps(results, indent=1))
    return path


def results_path(report: Path) -> Path:
    """Where the results JSON of the report at ``report`` goes."""
    return report.with_name(report.stem + "_results.json")


def figures_dir(report: Path) -> Path:
    """Where the PNG figures of the report at ``report`` go."""
    return report.with_name(report.stem + "_figures")


def _write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _plain(value: Any) -> Any:
    """A result as JSON-ready data: its own ``to_dict()`` or ``to_json()`` when it has one, else
    its fields."""
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if hasattr(value, "to_json"):
        out = value.to_json()
        return json.loads(out) if isinstance(out, str) else _plain(out)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, SimpleNamespace):
        return _plain(vars(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value
