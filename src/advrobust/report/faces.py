"""The report page of a face attack: the faces (or photo) before and after, distances, scores, boxes.

One self-contained HTML page (see :mod:`advrobust.report.html`); every text from the user or the
run (file names, attack names) is escaped there. Images are drawn with Pillow: detector boxes in
green (the attacked face in orange), the perturbation amplified to be visible.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from matplotlib.patches import Rectangle

from advrobust.evaluation.physical import PhysicalSuccess
from advrobust.faces.attack import FaceAttackOutcome
from advrobust.faces.detection import Detection
from advrobust.report.figures import BAD, GOOD, _grid, _show, png_bytes
from advrobust.report.html import Raw, esc, image, num, page, table
from advrobust.report.physical import strength_section, success_table

PHOTO_WIDTH = 900  # pixels of the photos shown


def _png(picture: torch.Tensor, boxes: Sequence[tuple[tuple[float, ...], str]] = (), width: int | None = None) -> bytes:
    from PIL import Image, ImageDraw

    pixels = (picture.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    shown = Image.fromarray(pixels)
    factor = 1.0
    if width is not None and shown.width > width:
        factor = width / shown.width
        shown = shown.resize((width, round(shown.height * factor)))
    draw = ImageDraw.Draw(shown)
    for (x, y, w, h), color in boxes:
        draw.rectangle([x * factor, y * factor, (x + w) * factor, (y + h) * factor], outline=color, width=3)
    buffer = io.BytesIO()
    shown.save(buffer, format="PNG")
    return buffer.getvalue()


def _perturbation(outcome: FaceAttackOutcome) -> tuple[torch.Tensor, float]:
    delta = outcome.after - outcome.before
    peak = float(delta.abs().max()) or 1.0
    return (0.5 + delta / (2 * peak)).clamp(0, 1), peak


def detection_boxes(found: Sequence[Detection], face_box: tuple[float, ...]) -> list[tuple[tuple[float, ...], str]]:
    """Boxes to draw: the detections in green, the attacked face in orange."""
    return [(d.box, "#00c853") for d in found] + [(face_box, "#ff6d00")]


@dataclass
class CameraView:
    """One picture as a camera saw it (a draw of the transformations): ``image`` (``3×H×W``), what
    the model made of it (``title``), whether that is the attacker's goal (``reached``), and boxes
    to draw (``(x, y, width, height)``, colour)."""

    image: torch.Tensor
    title: str
    reached: bool
    boxes: list[tuple[tuple[float, ...], str]] = field(default_factory=list)


def representative_draws(reached: Sequence[bool], k: int) -> list[int]:
    """``k`` of the draws (their indices, in draw order) in which the attacker's goal holds as often
    as in all of them (rounded): the first ones that reach it and the first ones that do not. A
    handful of seeded draws shown as they fall can tell another story than the rate beside them
    (for one face, 3 clean vanishes in 6 draws against 10% over 40)."""
    hits = [i for i, r in enumerate(reached) if r]
    misses = [i for i, r in enumerate(reached) if not r]
    k = min(k, len(reached))
    shown_hits = min(len(hits), max(k - len(misses), round(k * len(hits) / max(len(reached), 1))))
    return sorted(hits[:shown_hits] + misses[: k - shown_hits])


@dataclass
class FramesEvidence:
    """What the page shows of frames attacked through transformations: their ``results`` (the
    frames, and a control) under fresh draws, ``views`` (rows of :class:`CameraView`: the clean
    picture and the attacked one under the same draws, picked by :func:`representative_draws` from
    ``pool`` draws), the frames ready to print (``printable_png``) and a line on how they print
    (``printed``)."""

    results: Sequence[PhysicalSuccess]
    views: Sequence[Sequence[CameraView]]
    pool: int
    printable_png: bytes | None = None
    printed: str = ""


def camera_views_figure(rows: Sequence[Sequence[CameraView]]) -> bytes:
    """The views as a grid, one row per sequence; titles green where the attacker's goal holds."""
    columns = max(len(r) for r in rows)
    fig, axes = _grid(columns * len(rows), ncols=columns, size=1.9)
    for row, views in enumerate(rows):
        for col, view in enumerate(views):
            ax = axes[row * columns + col]
            _show(ax, view.image.detach().permute(1, 2, 0).cpu().numpy(), view.title, GOOD if view.reached else BAD)
            for (x, y, w, h), colour in view.boxes:
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec=colour, lw=1.2))
    return png_bytes(fig)


def _frames_sections(frames: FramesEvidence) -> list[tuple[str, str, str]]:
    sections = [("physical", "Under the transformations", success_table(frames.results))]
    caption = (f"each column one fresh draw of the transformations: {len(frames.views[-1])} of {frames.pool} draws, "
               "chosen so that the frames reach the attacker's goal in as many of them as in all "
               f"{frames.pool} (the rates above count their own draws); top: the clean picture, below: with the "
               "frames (green: the attacker's goal holds under that draw)")
    sections.append(("camera", "What the camera sees", image(camera_views_figure(frames.views),
                                                             "the pictures under fresh transformations", caption)))
    if frames.printable_png is not None:
        sections.append(("frames", "The frames, as printed",
                         image(frames.printable_png, "the eyeglass frames to print",
                               "level, as cut out (checkerboard: nothing printed there)", transparent=True)
                         + f'<p class="note">{esc(frames.printed)}</p>'))
    if (curve := strength_section(frames.results)) is not None:
        sections.append(curve)
    return sections


def face_attack_page(
    outcome: FaceAttackOutcome, description: Sequence[tuple[str, str]], target: torch.Tensor | None = None,
    frames: FramesEvidence | None = None,
) -> str:
    """The HTML page of ``outcome``; ``description``: (field, value) rows (images, attack, eps…);
    ``frames``: a physical attack's evidence under fresh transformations."""
    verdict = "succeeded" if outcome.success else "failed"
    rows: list[list[str | Raw]] = [[key, value] for key, value in description]
    rows.append(["result", f"attack {verdict}"])
    rows.append(["perturbation norm", num(outcome.norm)])
    if outcome.distance_before is not None:
        rows.append(["distance before → after", f"{num(outcome.distance_before)} → {num(outcome.distance_after)}"])
        same_before, same_after = outcome.distance_before < 0.6, outcome.distance_after < 0.6
        rows.append(["same person (distance < 0.6)", f"{same_before} → {same_after}"])
    sections = [("summary", "Summary", table(["field", "value"], rows))]
    noise, peak = _perturbation(outcome)
    if outcome.mode == "vanish":
        box = outcome.box or (0.0, 0.0, 0.0, 0.0)
        scores = lambda found: ", ".join(num(d.score) for d in found) or "none"  # noqa: E731
        body = (
            image(_png(outcome.before, detection_boxes(outcome.detections_before, box), PHOTO_WIDTH), "photo before",
                  f"before: {len(outcome.detections_before)} detection(s), scores {scores(outcome.detections_before)}"
                  " (green: detections, orange: the attacked face)")
            + image(_png(outcome.after, detection_boxes(outcome.detections_after, box), PHOTO_WIDTH), "photo after",
                    f"after: {len(outcome.detections_after)} detection(s), scores {scores(outcome.detections_after)}")
            + image(_png(noise, width=PHOTO_WIDTH), "perturbation", f"perturbation, amplified (peak {num(peak)})")
        )
        sections.append(("photos", "Detections before and after", body))
    else:
        body = image(_png(outcome.before), "face before", "the face before")
        body += image(_png(outcome.after), "face after", "the face after the attack")
        body += image(_png(noise), "perturbation", f"perturbation, amplified (peak {num(peak)})")
        if target is not None:
            body += image(_png(target), "target face", "the face to impersonate")
        sections.append(("faces", "Faces", Raw(f'<div class="cards">{body}</div>').markup))
    if frames is not None:
        sections += _frames_sections(frames)
    title = f"Face attack: {outcome.mode}"
    return page(title, sections, "advrobust faces attack")
