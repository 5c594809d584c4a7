"""The report of a segmenter or detector under attack: metrics per eps and attack, and images.

    write_task_report("seg.html", evaluation)      # an advrobust.evaluation.tasks.TaskEvaluation

One HTML page (figures embedded), with the figures also saved as PNG beside it. Each example row
shows the clean image with the model's output on it (a colour per class; boxes with their class and
score), the adversarial image with the output on it, and the perturbation, amplified to be visible.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from advrobust.errors import InputError
from advrobust.paths import atomic_path
from advrobust.report import html
from advrobust.report.figures import _figure, _text, amplification, png_bytes

LABELS = {"miou": "mIoU", "pixel_accuracy": "pixel acc.", "map": "mAP@0.5", "recall": "recall"}


def _colours(k: int) -> np.ndarray:
    from matplotlib import colormaps

    table = colormaps["tab20"](np.linspace(0, 1, 20))[:, :3]
    return np.concatenate([np.zeros((1, 3)), table[: max(k - 1, 1)]])


def _gray(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    return a.mean(axis=0) if a.ndim == 3 else a


def _draw(ax: Axes, image: np.ndarray, output: Any, task: str, classes: list[str], title: str) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if task == "segmentation":
        labels = np.asarray(output, dtype=np.int64)
        colours = _colours(max(len(classes), int(labels.max()) + 1))
        overlay = np.concatenate([colours[labels], (labels > 0)[..., None] * 0.55], axis=2)
        ax.imshow(overlay, interpolation="nearest")
    else:
        for x1, y1, x2, y2, score, label in np.asarray(output, dtype=np.float64).reshape(-1, 6):
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="#ffb000", lw=1.2))
            name = classes[int(label)] if int(label) < len(classes) else str(int(label))
            ax.text(x1, y1 - 1, _text(f"{name} {score:.2f}"), color="#ffb000", fontsize=6, va="bottom")
    ax.set_title(_text(title), fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def examples_figure(examples: list[dict[str, Any]], task: str, classes: list[str]) -> Figure:
    """One row per example: clean + output, adversarial + output, perturbation (amplified); an
    example's ``title`` (if given) heads its adversarial panel instead of the attack and eps."""
    fig = _figure(6.0, 2.1 * len(examples))
    axes = fig.subplots(len(examples), 3, squeeze=False)
    for row, e in zip(axes, examples, strict=True):
        x, x_adv = _gray(e["x"]), _gray(e["x_adv"])
        r = x_adv - x
        gain = amplification(float(np.abs(r).max()))
        eps = "unbounded" if e["eps"] is None else f"eps={e['eps']:g}"
        _draw(row[0], x, e["clean"], task, classes, "clean")
        _draw(row[1], x_adv, e["adversarial"], task, classes, e.get("title") or f"{e['attack']}, {eps}")
        row[2].imshow(np.clip(0.5 + gain * r, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        row[2].set_title(_text(f"r ×{gain:g}, ‖r‖∞={np.abs(r).max():.3f}"), fontsize=8)
        row[2].set_xticks([])
        row[2].set_yticks([])
    return fig


def _with_interval(value: float, interval: Any) -> str:
    return html.pct(value) + (f" [{interval[0]:.1%}, {interval[1]:.1%}]" if interval else "")


def metrics_table(ev: dict[str, Any]) -> str:
    names = list(ev["clean"])
    intervals = ev.get("intervals", {})

    def cells(values: dict[str, float], interval: Any) -> list[html.Cell]:
        return [_with_interval(values[m], interval if m == "miou" else None) for m in names]

    rows: list[list[html.Cell]] = [["clean", "—", *cells(ev["clean"], intervals.get("clean")), "—", "—", "—"]]
    for eps, by_attack in ev["metrics"].items():
        for attack, values in by_attack.items():
            norms = ev["norms"].get(eps, {}).get(attack, {})
            extras = ev["extras"].get(eps, {}).get(attack, {})
            rows.append([
                eps, attack, *cells(values, intervals.get(eps, {}).get(attack)),
                html.num(norms.get("median_linf", float("nan"))), html.num(norms.get("median_l2", float("nan"))),
                html.num(extras.get("iterations", float("nan"))),
            ])
    head = ["eps", "attack", *(LABELS.get(m, m) + (" [95% CI]" if m == "miou" else "") for m in names),
            "median ‖r‖∞", "median ‖r‖₂", "mean iterations"]
    return html.table(head, rows, [False, False, *([True] * (len(names) + 3))])


def physical_table(ev: dict[str, Any]) -> str:
    """A physical evaluation: the metrics of the same examples under fresh transformations."""
    names = list(ev["baseline"])
    intro = (
        f"<p>Every attack ran through {html.esc(ev['transform'])}, averaging {ev['eot']} draws per step (EOT), "
        f"and its examples were judged under {ev['draws']} fresh draws (the same for every attack; labels move "
        "with each draw). The first row is the clean images under the transformations alone.</p>"
    )
    rows: list[list[html.Cell]] = [["clean", "transformations alone", *(html.pct(ev["baseline"][m]) for m in names)]]
    for eps, by_attack in ev["physical"].items():
        rows += [[eps, attack, *(html.pct(values[m]) for m in names)] for attack, values in by_attack.items()]
    return intro + html.table(["eps", "attack", *(LABELS.get(m, m) for m in names)], rows,
                              [False, False, *([True] * len(names))])


def write_task_report(path: str | os.PathLike[str], evaluation: Any, title: str | None = None) -> Path:
    """Write the HTML report of a :class:`~advrobust.evaluation.tasks.TaskEvaluation` (or its dict)."""
    ev = evaluation if isinstance(evaluation, dict) else evaluation.to_dict()
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"the report is an HTML file: give a path ending in .html, not {path.name!r}")
    fig_dir = path.with_name(f"{path.stem}_figures")
    summary = (
        f"<p>{html.esc(ev['model_name'])} on {html.esc(ev['data_name'])} ({ev['n_points']} images), "
        f"{html.esc(ev['task'])}, threat {html.esc(ev['threat'])}. Metrics on the clean images and after each "
        "attack" + (" (digitally: the pictures as they are)" if ev.get("transform") else "") + "; <em>worst</em> "
        "takes, per image, the attack that damaged it most. Every number is an upper bound on the model's true "
        "robustness: a stronger attack can only lower it.</p>"
    )
    sections = [("metrics", "Metrics under attack", summary + metrics_table(ev))]
    if ev.get("transform"):
        sections.append(("physical", "Under the transformations", physical_table(ev)))
    pngs: dict[str, bytes] = {}
    if ev["examples"]:
        pngs["examples"] = png_bytes(examples_figure(ev["examples"], ev["task"], ev.get("classes") or []))
        caption = f"clean and adversarial images with the model's outputs (saved as {fig_dir.name}/examples.png)"
        sections.append(("examples", "Examples", html.image(pngs["examples"], "examples", caption)))
    page = html.page(title or f"advrobust {ev['task']} report", sections, f"{ev['model_name']} · {ev['data_name']}")
    fig_dir.mkdir(parents=True, exist_ok=True)
    for name, png in pngs.items():
        with atomic_path(fig_dir / f"{name}.png") as tmp:
            Path(tmp).write_bytes(png)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path
