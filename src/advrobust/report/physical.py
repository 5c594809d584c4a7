"""The physical-attack page: the texture, examples, digital vs physical success, and success
against transformation strength. Every name and description is escaped (:func:`advrobust.report.html.esc`)."""

from __future__ import annotations

from collections.abc import Sequence

from advrobust.evaluation.physical import PhysicalSuccess
from advrobust.report.figures import _figure, _text, png_bytes
from advrobust.report.html import esc, image, page, pct, table


def strength_figure(results: Sequence[PhysicalSuccess]) -> bytes:
    """Physical success rate against transformation strength, one line per attack."""
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot()
    for r in results:
        if r.curve:
            xs, ys = zip(*r.curve, strict=True)
            ax.plot(xs, [100 * v for v in ys], marker="o", label=_text(r.name))
    ax.set_xlabel("transformation strength (× the default ranges)")
    ax.set_ylabel("success under transformations (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def physical_page(
    title: str,
    results: Sequence[PhysicalSuccess],
    *,
    texture_png: bytes | None = None,
    preview_png: bytes | None = None,
    notes: Sequence[str] = (),
) -> str:
    """One self-contained HTML page for a physical evaluation."""
    rows = [
        [r.name, pct(r.digital), pct(r.physical), pct(r.baseline), str(r.n_points), str(r.n_draws)]
        for r in results
    ]
    head = ["attack", "digital success", "success under transformations", "transformations alone",
            "images", "draws per image"]
    summary = table(head, rows, [False, True, True, True, True, True])
    transform = results[0].transform if results else ""
    explain = (
        '<p class="note">Digital: the attack checked once on the exact pixels (a patch centred at full '
        "size, a sticker or mask where it is). Under transformations: every image rendered afresh for each "
        f"draw (a patch at a new place, scale and rotation) through: {esc(transform)}. “Transformations "
        "alone”: the same draws "
        "applied to the clean images, the share that already gives the attack's outcome.</p>"
    )
    notes_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    sections = [("summary", "Digital and physical success", summary + explain + notes_html)]
    if texture_png is not None:
        sections.append(("texture", "The texture", image(texture_png, "the adversarial texture",
                                                          "as printed (checkerboard: nothing printed there)",
                                                          transparent=True)))
    if preview_png is not None:
        caption = "top: clean images; below: with the texture, at fresh placements and transformations"
        sections.append(("examples", "Examples", image(preview_png, "test images with the attack", caption)))
    if any(r.curve for r in results):
        sections.append(("strength", "Success against transformation strength",
                         image(strength_figure(results), "success against strength",
                               "0 = digital, 1 = the default physical ranges")))
    return page(title, sections, "advrobust physical-attack report")
