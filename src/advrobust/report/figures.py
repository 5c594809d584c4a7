"""The report's figures, drawn with matplotlib on the Agg backend.

Every function takes a view (:mod:`advrobust.report.views`) and returns a
:class:`matplotlib.figure.Figure` bound to an Agg canvas: no pyplot, so no global figure state, no
window, and nothing to close. :func:`png_bytes` turns a figure into PNG bytes.

Text drawn by matplotlib treats ``$…$`` as math; user text (class, model and attack names) goes
through :func:`_text` so a ``$`` in a class name prints as a dollar sign.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from advrobust.evaluation.result import Example
from advrobust.evaluation.stats import wilson_interval
from advrobust.report.views import (
    EvaluationView,
    FoolingImage,
    OnePixelView,
    TrainingView,
    TransferView,
    image_hwc,
)

DPI = 110
"""Resolution of the saved PNGs: sharp on a laptop screen and in print, ~50–150 kB per figure."""

GOOD, BAD = "#1a7f37", "#c62828"

NORM_SYMBOLS = {"linf": "∞", "l2": "2", "l1": "1", "l0": "0"}


def norm_label(threat: str) -> str:
    """``‖r‖∞`` for ``"linf"``, ``‖r‖2`` for ``"l2"``...; for ``"patch"`` the side of the square
    patch (its eps); unknown names as given."""
    if threat.lower() == "patch":
        return "patch side (pixels)"
    return f"‖r‖{NORM_SYMBOLS.get(threat.lower(), '_' + threat)}"


def _text(s: str) -> str:
    return s.replace("$", r"\$")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (no timestamp in the metadata, so equal figures give equal files)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _show(ax: Axes, image: np.ndarray, title: str, color: str = "black") -> None:
    image = np.clip(image, 0.0, 1.0)
    if image.shape[2] == 1:
        ax.imshow(image[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_title(_text(title), fontsize=9, color=color)
    ax.set_xticks([])
    ax.set_yticks([])


def amplification(peak: float) -> float:
    """The factor ``k`` that shows ``r`` as ``0.5 + k·r``: the largest of …, 0.5, 1, 2, 5, 10, …
    with ``k·peak ≤ 0.5``, so the largest change spans half the grey scale and none is clipped.
    ``1`` when ``r = 0``."""
    if not peak > 0:
        return 1.0
    limit = 0.5 / peak
    decade = 10.0 ** math.floor(math.log10(limit))
    return next(m * decade for m in (5.0, 2.0, 1.0) if m * decade <= limit * (1 + 1e-12))


def seed_figure(
    examples: Sequence[Example], class_name: Callable[[int], str], threat: str, per_row: int = 2
) -> Figure:
    """The seed's figure (Goodfellow et al. 2015, Fig. 1), three panels per example, ``per_row``
    examples side by side: ``x`` with its label and confidence, the perturbation ``r = x_adv − x``
    amplified to be visible (``0.5 + k·r``, ``k`` in the title), and ``x + r`` with the new label,
    its confidence and ``‖r‖``."""
    per_row = max(1, min(per_row, len(examples)))
    rows = math.ceil(len(examples) / per_row)
    fig = _figure(3 * per_row * 1.6, rows * 1.95)
    axes = fig.subplots(rows, 3 * per_row, squeeze=False)
    for ax in axes.ravel()[3 * len(examples):]:
        ax.set_axis_off()
    for i, ex in enumerate(examples):
        a, b, c = axes[i // per_row, 3 * (i % per_row): 3 * (i % per_row) + 3]
        x, x_adv = image_hwc(ex.x), image_hwc(ex.x_adv)
        r = x_adv - x
        k = amplification(float(np.abs(r).max()))
        _show(a, x, f"x: “{class_name(ex.label)}” {ex.clean_conf:.0%}")
        _show(b, 0.5 + k * r, f"r ×{k:g}, {norm_label(threat)}={ex.norm:.3g}")
        broken = ex.adv_pred != ex.label
        _show(c, x_adv, f"x+r: “{class_name(ex.adv_pred)}” {ex.adv_conf:.0%}",
              BAD if broken else GOOD)
    return fig


def _percent_axis(ax: Axes) -> None:
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(alpha=0.3)


def _accuracy_against_eps(ax: Axes, ev: EvaluationView) -> None:
    """Axes of robust accuracy (in percent) against eps, from 0 to the largest eps, with a legend."""
    ax.set_xlim(left=0.0, right=max(ev.epsilons, default=1.0) * 1.05)
    ax.set_xlabel(f"ε (budget of {norm_label(ev.threat)})")
    ax.set_ylabel("robust accuracy")
    _percent_axis(ax)
    ax.legend(fontsize=8, loc="lower left")


def robustness_curves(ev: EvaluationView) -> Figure:
    """Robust accuracy against ``eps``, starting from clean accuracy at ``eps = 0``: a dashed line
    per attack giving the ensemble's accuracy after it (attacks run in order, each on the points
    the earlier ones left unbroken), the overall worst case per point as a thick line with 95%
    Wilson intervals, and clean accuracy dotted."""
    fig = _figure(7.2, 3.8)
    ax = fig.add_subplot()
    for attack in dict.fromkeys(r.attack for r in ev.per_attack):
        pts = sorted(
            (r.eps, r.robust_accuracy)
            for r in ev.per_attack
            if r.attack == attack and r.skipped_reason is None and not math.isnan(r.robust_accuracy)
        )
        if pts:
            xs, ys = zip(*[(0.0, ev.clean_accuracy), *pts], strict=True)
            ax.plot(xs, ys, "o--", lw=1.2, ms=4, label=f"after {_text(attack)}")
    lo, hi = (np.array(v) for v in zip(*(wilson_interval(k, ev.n) for k in ev.robust_counts()),
                                         strict=True))
    acc = np.array(ev.robust_accuracy)
    # an interval bound can miss p̂ by a rounding error (1e-19) at 0 or 1: matplotlib wants yerr ≥ 0
    yerr = np.clip([acc - lo, hi - acc], 0.0, None)
    ax.errorbar(ev.epsilons, acc, yerr=yerr, fmt="none", ecolor="black", capsize=4, lw=1)
    ax.plot([0.0, *ev.epsilons], [ev.clean_accuracy, *acc], "ks-", lw=2.4, ms=5,
            label="overall (worst case, 95% interval)")
    ax.axhline(ev.clean_accuracy, color="grey", ls=":", lw=1.5,
               label=f"clean accuracy {ev.clean_accuracy:.1%}")
    _accuracy_against_eps(ax, ev)
    return fig


def interval_figure(ev: EvaluationView) -> Figure | None:
    """Robust accuracy as a band, for a smoothed classifier: the certified accuracy below (a lower
    bound: Cohen et al. 2019, Levine & Feizi 2020) and the attacked robust accuracy above (an upper
    bound), both from the clean accuracy at ``eps = 0``; the truth lies in the shaded band. ``None``
    without certificates."""
    certified = ev.certified_accuracy
    if certified is None:
        return None
    fig = _figure(7.2, 3.8)
    ax = fig.add_subplot()
    xs = [0.0, *ev.epsilons]
    lower = [ev.clean_accuracy, *certified]
    upper = [ev.clean_accuracy, *ev.robust_accuracy]
    ax.fill_between(xs, lower, upper, color="tab:orange", alpha=0.25, label="not settled by either side")
    ax.plot(xs, upper, "o-", color="tab:red", lw=2, ms=5, label="attacked (upper bound)")
    ax.plot(xs, lower, "s-", color="tab:blue", lw=2, ms=5, label="certified (lower bound)")
    _accuracy_against_eps(ax, ev)
    return fig


def min_norm_figure(ev: EvaluationView) -> Figure | None:
    """The smallest perturbation found per correctly classified point: its histogram, and the
    fraction of all points still correct for every budget ``t`` (``min_norm > t``), with the
    evaluated ``eps`` marked. ``None`` when no point has a finite minimal perturbation."""
    norms = ev.min_norm[ev.clean_correct]
    finite = norms[np.isfinite(norms)]
    if finite.size == 0:
        return None
    top = max(float(finite.max()), max(ev.epsilons, default=0.0)) * 1.08 or 1.0
    fig = _figure(7.2, 3.0)
    left, right = fig.subplots(1, 2)
    left.hist(finite, bins=np.linspace(0.0, top, 31), color="#4c72b0")
    left.set_xlim(0.0, top)
    left.set_xlabel(f"smallest {norm_label(ev.threat)} found")
    left.set_ylabel("points")
    unbroken = int((~np.isfinite(norms)).sum())
    left.set_title(f"{finite.size} points broken, {unbroken} never broken", fontsize=9)
    grid = np.concatenate([[0.0], np.sort(finite), [top]])
    still = np.array([(norms > v).sum() for v in grid]) / max(ev.n, 1)
    right.step(grid, still, where="post", color="black")
    for e in ev.epsilons:
        right.axvline(e, color="grey", ls=":", lw=1)
    right.set_xlim(0.0, top)
    right.set_xlabel(f"budget t on {norm_label(ev.threat)}")
    right.set_ylabel("accuracy if ε = t")
    _percent_axis(right)
    return fig


def _grid(n: int, ncols: int = 5, size: float = 1.55) -> tuple[Figure, list[Axes]]:
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    fig = _figure(size * cols, (size + 0.35) * rows)
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def one_pixel_figure(op: OnePixelView, class_name: Callable[[int], str]) -> Figure:
    """The seed's One-Pixel figure (Su et al. 2019, Fig. 1): one image pushed towards every other
    class; each changed pixel outlined, the title gives the target's confidence (green: reached)."""
    fig, axes = _grid(1 + len(op.targets))
    _show(axes[0], op.x, f"x: “{class_name(op.label)}”")
    for ax, t in zip(axes[1:], op.targets, strict=False):
        _show(ax, t.x_adv, f"→ “{class_name(t.target)}” {t.confidence:.0%}", GOOD if t.success else BAD)
        rows, cols = np.nonzero(np.abs(t.x_adv - op.x).max(axis=2) > 1e-6)
        for r, c in zip(rows, cols, strict=False):
            ax.add_patch(Rectangle((c - 1.5, r - 1.5), 3, 3, fill=False, ec="red", lw=1.2))
    return fig


def fooling_figure(images: Sequence[FoolingImage], class_name: Callable[[int], str]) -> Figure:
    """Fooling images (Nguyen et al. 2015): per class, the image and the confidence it reached
    (green: the requested level reached, red: not, black: not said)."""
    fig, axes = _grid(len(images))
    for ax, im in zip(axes, images, strict=False):
        color = "black" if im.reached is None else GOOD if im.reached else BAD
        _show(ax, im.image, f"“{class_name(im.target)}” {im.confidence:.1%}", color)
    return fig


def transfer_figure(tr: TransferView) -> Figure:
    """The transfer matrix as a heat map: success rate of the examples crafted for each row
    (attack × source model) on each target model (columns), annotated in percent."""
    fig = _figure(max(4.5, 1.1 * len(tr.columns) + 3.0), max(2.6, 0.45 * len(tr.rows) + 1.6))
    ax = fig.add_subplot()
    im = ax.imshow(tr.matrix, cmap="Reds", vmin=0.0, vmax=1.0, aspect="auto")
    for (r, c), v in np.ndenumerate(tr.matrix):
        ax.text(c, r, f"{v:.0%}", ha="center", va="center", fontsize=8,
                color="white" if v > 0.6 else "black")
    ax.set_xticks(range(len(tr.columns)), [_text(c) for c in tr.columns], rotation=30, ha="right")
    ax.set_yticks(range(len(tr.rows)), [_text(r) for r in tr.rows])
    ax.set_xlabel("target model")
    fig.colorbar(im, ax=ax, format=PercentFormatter(1.0, decimals=0), label="success rate")
    return fig


def training_figure(tv: TrainingView) -> Figure | None:
    """Training curves: the accuracy metrics (names containing ``acc``) and the losses (names
    containing ``loss``) per epoch. ``None`` when the history has neither."""
    acc = [k for k in tv.metrics if "acc" in k]
    loss = [k for k in tv.metrics if "loss" in k]
    panels = [(names, title) for names, title in ((acc, "accuracy"), (loss, "loss")) if names]
    if not panels:
        return None
    fig = _figure(7.2, 3.2)
    for ax, (names, title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=False):
        for name in names:
            ax.plot(tv.epochs, tv.metrics[name], "o-", ms=3, label=_text(name))
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        if title == "accuracy":
            _percent_axis(ax)
        else:
            ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig
