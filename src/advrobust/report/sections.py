"""The report's sections: each turns one view into ``(anchor, heading, markup)``, drawing its
figures through a :class:`Figures` collector that embeds them and keeps their PNG bytes to save."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure

from advrobust.evaluation.result import Example
from advrobust.report import figures, html
from advrobust.report.views import (
    AuditView,
    EvaluationView,
    FoolingView,
    OnePixelView,
    TrainingView,
    TransferView,
)

Section = tuple[str, str, str]
ClassName = Callable[[int], str]

MAX_EXAMPLES = 6
"""Examples in the seed figure: enough to see a pattern, few enough to read in a minute."""


class Figures:
    """Collects the figures of a page: ``add`` embeds one and keeps its PNG under ``name``."""

    def __init__(self, folder_name: str) -> None:
        self.folder_name = folder_name
        self.pngs: dict[str, bytes] = {}

    def add(self, name: str, fig: Figure | None, alt: str, caption: str) -> str:
        if fig is None:
            return ""
        self.pngs[name] = figures.png_bytes(fig)
        return html.image(self.pngs[name], alt, f"{caption} (saved as {self.folder_name}/{name}.png)")


def pick_examples(examples: Sequence[Example], k: int = MAX_EXAMPLES) -> list[Example]:
    """Up to ``k`` examples of distinct points, taken in turn from each eps (smallest first), so the
    figure shows how the perturbation grows with the budget; a point already shown is skipped, and a
    label not shown yet goes first (test sets often come sorted by class: the first broken points
    would all be zeros)."""
    by_eps: dict[float, list[Example]] = {}
    for ex in examples:
        by_eps.setdefault(ex.eps, []).append(ex)
    queues = [by_eps[e] for e in sorted(by_eps, key=lambda e: (math.isnan(e), e))]
    picked: list[Example] = []
    shown: set[int] = set()
    labels: set[int] = set()
    while len(picked) < k and any(queues):
        for q in queues:
            q[:] = [ex for ex in q if ex.index not in shown]
            if q and len(picked) < k:
                ex = next((ex for ex in q if ex.label not in labels), q[0])
                q.remove(ex)
                picked.append(ex)
                shown.add(ex.index)
                labels.add(ex.label)
    return sorted(picked, key=lambda ex: (math.isnan(ex.eps), ex.eps))


def evaluation_sections(ev: EvaluationView, audit: AuditView | None, figs: Figures) -> list[Section]:
    """Summary, adversarial examples, robustness curves, minimal perturbations."""
    out = [("summary", "Summary", html.summary(ev, audit))]
    examples = pick_examples(ev.examples)
    if examples:
        out.append(("examples", "Adversarial examples", figs.add(
            "examples", figures.seed_figure(examples, ev.class_name, ev.threat),
            "clean image, amplified perturbation, adversarial image",
            "Left: the test image x, its true class and the model's confidence in it. Middle: the "
            "perturbation r found by the attack, shown as 0.5 + k·r with the factor k in the "
            "title (grey = no change). Right: x + r, the class the model now predicts and its "
            "confidence (red: the prediction changed).",
        ) + html.table(
            ["point", "attack", "ε", "true class", "predicted on x + r", figures.norm_label(ev.threat)],
            [[str(x.index), x.attack, html.num(x.eps), ev.class_name(x.label),
              ev.class_name(x.adv_pred), html.num(x.norm)] for x in examples],
            [True, False, True, False, False, True],
        )))
    out.append(("curves", "Robust accuracy against ε", figs.add(
        "robustness_curves", figures.robustness_curves(ev), "robust accuracy against epsilon",
        "The thick line is the robust accuracy under all attacks, the worst case per point (the "
        "number to quote), with 95% intervals; at ε = 0 it is the clean accuracy. Each dashed "
        "line is the accuracy after that attack (attacks run in order, each on the points the "
        "earlier ones left unbroken).",
    ) + html.attacks_table(ev)))
    band = figs.add(
        "interval", figures.interval_figure(ev), "certified and attacked robust accuracy against epsilon",
        "A smoothed classifier's robust accuracy is known to lie in the shaded band: below it the "
        "certified accuracy (points whose prediction is certified on the whole threat set: the l2 ball, "
        "Cohen et al. 2019; every m×m patch, Levine & Feizi 2020), above it the accuracy the attack "
        "left (points it could not break). A wide band is robustness neither side could settle.",
    )
    if band:
        out.append(("interval", "Certified and attacked robust accuracy", band))
    dist = figs.add(
        "min_norm", figures.min_norm_figure(ev), "distribution of minimal perturbations",
        "Left: per point, the smallest perturbation that any attack found to change the "
        "prediction (an upper bound on the true minimum: a fixed-budget attack such as FGSM or "
        "PGD only reports perturbations of about ε; a minimum-norm attack such as FMN spreads "
        "them out). Right: the accuracy the model keeps if the budget is t (dotted: the "
        "evaluated ε).",
    )
    if dist:
        out.append(("min-norm", "Minimal perturbations", dist))
    return out


def per_class_section(ev: EvaluationView) -> Section:
    return ("per-class", "Per class", html.per_class_table(ev))


def audit_section(audit: AuditView) -> Section:
    return ("audit", "Gradient-masking audit", html.audit_table(audit))


def one_pixel_section(i: int, view: OnePixelView, class_name: ClassName, figs: Figures) -> Section:
    reached = sum(t.success for t in view.targets)
    pixels = max(
        (int((np.abs(t.x_adv - view.x).max(axis=2) > 1e-6).sum()) for t in view.targets), default=0
    )
    return (f"one-pixel-{i}", f"One-Pixel: one image towards every class ({i + 1})", figs.add(
        f"one_pixel_{i}", figures.one_pixel_figure(view, class_name),
        "one image pushed to every other class by changing pixels",
        f"Changing at most {pixels} pixel{'s' if pixels != 1 else ''} (outlined) reached {reached} "
        f"of {len(view.targets)} target classes (green titles: reached; the percentage is the "
        "model's confidence in the target).",
    ))


def fooling_section(fv: FoolingView, class_name: ClassName, figs: Figures) -> Section:
    method = f" by {fv.method}" if fv.method else ""
    return ("fooling", "Fooling images", figs.add(
        "fooling", figures.fooling_figure(fv.images, class_name), "fooling images per class",
        f"Images found{method} that no person would recognize, each classified as the class in "
        "its title with the confidence shown (green: the requested confidence was reached).",
    ) + html.table(
        ["class", "confidence", "reached", "queries"],
        [[class_name(f.target), html.pct(f.confidence), {None: "—", True: "yes", False: "no"}[f.reached],
          html.num(f.queries)] for f in fv.images],
        [False, True, False, True],
    ))


def transfer_section(tr: TransferView, figs: Figures) -> Section:
    return ("transfer", "Transfer", figs.add(
        "transfer", figures.transfer_figure(tr), "transfer success-rate matrix",
        "Success rate of adversarial examples crafted on a source model (rows: attack / source) "
        "when shown to each target model (columns); where source and target agree it is the "
        f"white-box rate. Budget: {tr.budget or 'not given'}.",
    ) + html.transfer_table(tr))


def training_section(tv: TrainingView, figs: Figures) -> Section:
    return ("training", f"Training ({tv.method})", figs.add(
        "training", figures.training_figure(tv), "training curves", "Metrics per epoch.",
    ) + html.training_table(tv))
