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

from advrobust import __version__
from advrobust.errors import InputError
from advrobust.evaluation.result import Example
from advrobust.paths import atomic_path
from advrobust.report import figures, html
from advrobust.report.views import (
    audit_view,
    evaluation_view,
    fooling_view,
    one_pixel_view,
    training_view,
    transfer_view,
)

REPORT_FORMAT = "advrobust-report/1"
"""The ``format`` field of the JSON written beside a report (``<name>_results.json``)."""

MAX_EXAMPLES = 6
"""Examples in the seed figure: enough to see a pattern, few enough to read in a minute."""


def pick_examples(examples: Sequence[Example], k: int = MAX_EXAMPLES) -> list[Example]:
    """Up to ``k`` examples of distinct points, taken in turn from each eps (smallest first), so the
    figure shows how the perturbation grows with the budget; a point already shown is skipped."""
    by_eps: dict[float, list[Example]] = {}
    for ex in examples:
        by_eps.setdefault(ex.eps, []).append(ex)
    queues = [by_eps[e] for e in sorted(by_eps, key=lambda e: (math.isnan(e), e))]
    picked: list[Example] = []
    shown: set[int] = set()
    while len(picked) < k and any(queues):
        for q in queues:
            while q and q[0].index in shown:
                q.pop(0)
            if q and len(picked) < k:
                picked.append(q.pop(0))
                shown.add(picked[-1].index)
    return sorted(picked, key=lambda ex: (math.isnan(ex.eps), ex.eps))


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
    fig_dir.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}

    def figure(name: str, fig: Any, alt: str, caption: str) -> str:
        if fig is None:
            return ""
        pngs[name] = figures.png_bytes(fig)
        return html.image(pngs[name], alt, f"{caption} (saved as {fig_dir.name}/{name}.png)")

    sections: list[tuple[str, str, str]] = []
    ev = evaluation_view(evaluation) if evaluation is not None else None
    au = audit_view(audit) if audit is not None else None
    class_name = ev.class_name if ev is not None else str
    if ev is not None:
        sections.append(("summary", "Summary", html.summary(ev, au)))
        examples = pick_examples(ev.examples)
        if examples:
            sections.append(("examples", "Adversarial examples", figure(
                "examples", figures.seed_figure(examples, class_name, ev.threat),
                "clean image, amplified perturbation, adversarial image",
                "Left: the test image x, its true class and the model's confidence in it. Middle: the "
                "perturbation r found by the attack, shown as 0.5 + k·r with the factor k in the "
                "title (grey = no change). Right: x + r, the class the model now predicts and its "
                "confidence (red: the prediction changed).",
            ) + html.table(
                ["point", "attack", "ε", "true class", "predicted on x + r",
                 figures.norm_label(ev.threat)],
                [[str(x.index), x.attack, html.num(x.eps), class_name(x.label),
                  class_name(x.adv_pred), html.num(x.norm)] for x in examples],
                [True, False, True, False, False, True],
            )))
        sections.append(("curves", "Robust accuracy against ε", figure(
            "robustness_curves", figures.robustness_curves(ev), "robust accuracy against epsilon",
            "The thick line is the robust accuracy under all attacks, the worst case per point (the "
            "number to quote), with 95% intervals; at ε = 0 it is the clean accuracy. Each dashed "
            "line is the accuracy after that attack (attacks run in order, each on the points the "
            "earlier ones left unbroken).",
        ) + html.attacks_table(ev)))
        dist = figure(
            "min_norm", figures.min_norm_figure(ev), "distribution of minimal perturbations",
            "Left: per point, the smallest perturbation that any attack found to change the "
            "prediction (an upper bound on the true minimum: a fixed-budget attack such as FGSM or "
            "PGD only reports perturbations of about ε; a minimum-norm attack such as FMN spreads "
            "them out). Right: the accuracy the model keeps if the budget is t (dotted: the "
            "evaluated ε).",
        )
        if dist:
            sections.append(("min-norm", "Minimal perturbations", dist))
        sections.append(("per-class", "Per class", html.per_class_table(ev)))
    if au is not None:
        sections.append(("audit", "Gradient-masking audit", html.audit_table(au)))
    for i, op in enumerate(_as_list(one_pixel) if one_pixel is not None else []):
        view = one_pixel_view(op)
        reached = sum(t.success for t in view.targets)
        sections.append((f"one-pixel-{i}", f"One-Pixel: one image towards every class ({i + 1})",
                         figure(f"one_pixel_{i}", figures.one_pixel_figure(view, class_name),
                                "one image pushed to every other class by one pixel",
                                f"Changing one pixel (outlined) reached {reached} of "
                                f"{len(view.targets)} target classes (green titles).")))
    if fooling is not None:
        fv = fooling_view(fooling)
        method = f" by {fv.method}" if fv.method else ""
        sections.append(("fooling", "Fooling images", figure(
            "fooling", figures.fooling_figure(fv.images, class_name), "fooling images per class",
            f"Images found{method} that no person would recognize, each classified as the class in "
            "its title with the confidence shown (green: the requested confidence was reached).",
        ) + html.table(["class", "confidence", "reached", "queries"],
                       [[class_name(f.target), html.pct(f.confidence),
                         {None: "—", True: "yes", False: "no"}[f.reached], html.num(f.queries)]
                        for f in fv.images], [False, True, False, True])))
    if transfer is not None:
        tr = transfer_view(transfer)
        sections.append(("transfer", "Transfer", figure(
            "transfer", figures.transfer_figure(tr), "transfer success-rate matrix",
            "Success rate of adversarial examples crafted on a source model (rows: attack / source) "
            "when shown to each target model (columns); where source and target agree it is the "
            f"white-box rate. Budget: {tr.budget or 'not given'}.",
        ) + html.transfer_table(tr)))
    if training is not None:
        tv = training_view(training)
        sections.append(("training", f"Training ({tv.method})", figure(
            "training", figures.training_figure(tv), "training curves", "Metrics per epoch.",
        ) + html.training_table(tv)))

    for name, data in pngs.items():
        (fig_dir / f"{name}.png").write_bytes(data)
    if title is None:
        title = f"Robustness report: {ev.model_name}" if ev is not None else "advrobust report"
    subtitle = f"advrobust {__version__}"
    _write_atomic(path, html.page(title, sections, subtitle))
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
