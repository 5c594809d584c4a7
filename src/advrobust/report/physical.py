"""The physical-attack page: the texture, examples, digital vs physical success, and success
against transformation strength. Every name and description is escaped (:func:`advrobust.report.html.esc`)."""

from __future__ import annotations

from collections.abc import Sequence

from advrobust.evaluation.physical import PhysicalSuccess
from advrobust.report.figures import _figure, _text, png_bytes
from advrobust.report.html import esc, image, page, pct, table
from advrobust.report.tasks import LABELS as METRIC_LABELS


def strength_figure(results: Sequence[PhysicalSuccess]) -> bytes:
    """Physical success rate (a dense task: its first metric) against transformation strength, one
    line per attack."""
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot()
    for r in results:
        if r.curve:
            xs, ys = zip(*r.curve, strict=True)
            ax.plot(xs, [100 * v for v in ys], marker="o", label=_text(r.name))
    ax.set_xlabel("transformation strength (× the default ranges)")
    of = results[0].curve_of if results else "success"
    ax.set_ylabel(f"{METRIC_LABELS.get(of, of)} under transformations (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def metric_rows(results: Sequence[PhysicalSuccess]) -> tuple[list[str], list[list[str]]]:
    """A dense task's metrics as a table: a row for no attack (clean, and under the transformations
    alone), then one per attack (digital, and under transformations); header and rows as text. A
    segmenter's mIoU carries its 95% bootstrap interval over images."""
    names = list(results[0].metrics["clean"])
    head = ["attack"] + [f"{METRIC_LABELS.get(m, m)} {where}" for m in names
                         for where in ("digital", "transformed")]

    def cell(r: PhysicalSuccess, key: str, m: str) -> str:
        ci = r.intervals.get(key) if m == "miou" else None
        return pct(r.metrics[key][m]) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")

    def cells(r: PhysicalSuccess, digital: str, physical: str) -> list[str]:
        return [cell(r, key, m) for m in names for key in (digital, physical)]

    rows = [["no attack", *cells(results[0], "clean", "baseline")]]
    rows += [[r.name, *cells(r, "digital", "physical")] for r in results]
    return head, rows


def success_table(results: Sequence[PhysicalSuccess]) -> str:
    """The digital and physical success of each attack (and the transformations alone) as an HTML
    table, with a note on what each column measures."""
    rows = [
        [r.name, pct(r.digital), pct(r.physical), pct(r.baseline), str(r.n_points), str(r.n_draws)]
        for r in results
    ]
    head = ["attack", "digital success", "success under transformations", "transformations alone",
            "images", "draws per image"]
    transform = results[0].transform if results else ""
    explain = (
        '<p class="note">Digital: the attack checked once on the exact pixels (a patch centred at full '
        "size, a sticker or mask where it is). Under transformations: every image rendered afresh for each "
        "draw (a patch also at a new place, scale and rotation; a sticker, mask or frames where they are) "
        f"through: {esc(transform)}. “Transformations alone”: the same draws applied to the clean images, "
        "the share that already gives the attack's outcome.</p>"
    )
    return table(head, rows, [False, True, True, True, True, True]) + explain


def strength_section(results: Sequence[PhysicalSuccess]) -> tuple[str, str, str] | None:
    """The report section of success (or a dense task's first metric) against transformation
    strength, or ``None`` when no attack measured a curve."""
    if not any(r.curve for r in results):
        return None
    of = METRIC_LABELS.get(results[0].curve_of, "success")
    heading = "Success" if of == "success" else of
    return ("strength", f"{heading} against transformation strength",
            image(strength_figure(results), f"{of} against strength", "0 = digital, 1 = the default physical ranges"))


def physical_page(
    title: str,
    results: Sequence[PhysicalSuccess],
    *,
    texture_png: bytes | None = None,
    preview_png: bytes | None = None,
    outputs_png: bytes | None = None,
    notes: Sequence[str] = (),
) -> str:
    """One self-contained HTML page for a physical evaluation (``outputs_png``: a segmenter's or
    detector's outputs on scenes with and without the texture)."""
    notes_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    sections = [("summary", "Digital and physical success", success_table(results) + notes_html)]
    if results and results[0].metrics:
        head, metric_table = metric_rows(results)
        metrics_html = table(head, metric_table, [False] + [True] * (len(head) - 1)) + (
            '<p class="note">Over every image and draw (a segmenter\'s mIoU with its 95% bootstrap interval, '
            "images resampled with all their draws). A segmenter's pixels under a texture are not counted, "
            "a detector's box more than half under it is dropped, and labels move with each draw. The success "
            "rates below are the task's per-image criterion: a segmenter's image needs nearly every labelled "
            "pixel wrong (or at its target), a detector's no object found (target 0: no detection at all).</p>")
        sections.insert(0, ("metrics", "The task's metrics", metrics_html))
    if texture_png is not None:
        sections.append(("texture", "The texture", image(texture_png, "the adversarial texture",
                                                          "as printed (checkerboard: nothing printed there)",
                                                          transparent=True)))
    if preview_png is not None:
        caption = "top: clean images; below: with the texture, at fresh placements and transformations"
        sections.append(("examples", "Examples", image(preview_png, "test images with the attack", caption)))
    if outputs_png is not None:
        caption = ("left: a scene under one draw of the transformations, with the model's output; middle: the "
                   "same draw with the texture; right: the difference, amplified")
        sections.append(("outputs", "What the model sees", image(outputs_png, "the model's outputs", caption)))
    if (curve := strength_section(results)) is not None:
        sections.append(curve)
    return page(title, sections, "advrobust physical-attack report")
