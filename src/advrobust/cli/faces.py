"""``advrobust faces``: compare two faces, or attack a face (dodging, impersonation, vanishing)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from advrobust.cli.console import console
from advrobust.errors import InputError
from advrobust.faces.accessories import EYE_DISTANCE_MM

if TYPE_CHECKING:
    import torch

    from advrobust.faces.images import Box

ATTACK_CHOICES = ("pgd", "apgd", "mifgsm", "cw")
NORM_CHOICES = ("linf", "l2")


def parse_budget(text: str) -> float:
    """``"4/255"`` or ``"0.0157"`` → a float ≥ 0."""
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            value = float(top) / float(bottom)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--eps takes a number or a fraction such as 4/255, got {text!r}") from None
    if value < 0:
        raise InputError(f"--eps must be ≥ 0, got {text!r}")
    return value


def build_attack(name: str, norm: str, eps: float, steps: int):
    """An attack of the registry set up for face attacks (step size eps/4 for PGD and MI-FGSM)."""
    import advrobust as ar

    threat = ar.Linf(eps=eps) if norm == "linf" else ar.L2(eps=eps)
    if name == "pgd":
        return ar.attacks.PGD(threat, steps=steps, step_size=eps / 4)
    if name == "mifgsm":
        return ar.attacks.MIFGSM(threat, steps=steps, step_size=eps / 4)
    if name == "apgd":
        return ar.attacks.create("apgd", threat=threat, steps=steps)
    if norm != "l2":
        raise InputError("C&W is an L2 attack here: use --norm l2 with --attack cw")
    return ar.attacks.create("cw", threat=threat, steps=steps)


@click.group(name="faces")
def command() -> None:
    """Verify or attack faces with a real detector and recognizer (face-api's published weights)."""


@command.command(name="verify")
@click.argument("first", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("second", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_command(first: Path, second: Path) -> None:
    """Whether the best face of FIRST and of SECOND are the same person (distance < 0.6)."""
    from advrobust.faces import FacePipeline

    result = FacePipeline.load().verify(first, second)
    verdict = "same person" if result.same else "different people"
    console.print(f"distance {result.distance:.4f} (threshold {result.threshold}): {verdict}")


@command.command(name="attack")
@click.option("--mode", type=click.Choice(("dodge", "impersonate", "vanish")), required=True)
@click.option("--eps", "eps_text", default="8/255", show_default=True, help="budget, e.g. 4/255 (l∞) or 2.0 (l2)")
@click.option("--norm", type=click.Choice(NORM_CHOICES), default="linf", show_default=True)
@click.option("--attack", "attack_name", type=click.Choice(ATTACK_CHOICES), default="pgd", show_default=True)
@click.option("--steps", type=int, default=100, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("faces_report"),
              show_default=True, help="folder for report.html and the attacked image")
@click.option("--frames", is_flag=True,
              help="physical: any colour inside eyeglass frames on the face's eyes, nothing outside (PGD; --eps and "
                   "--norm unused), optimized through physical() transformations; vanish attacks the photo around "
                   "the face (4x its box)")
@click.option("--eot-draws", type=click.IntRange(min=1), default=4, show_default=True,
              help="with --frames: transformations averaged per step")
@click.option("--physical-draws", type=click.IntRange(min=1), default=100, show_default=True,
              help="with --frames: fresh transformations the result is judged under")
@click.option("--eye-distance-mm", type=click.FloatRange(min=0, min_open=True), default=EYE_DISTANCE_MM,
              show_default=True, help="with --frames: the wearer's eye distance; frames.png is printed to fit it")
@click.option("--dpi", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="with --frames: printer resolution of frames.png")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
def attack_command(
    mode: str, eps_text: str, norm: str, attack_name: str, steps: int, out: Path, frames: bool, eot_draws: int,
    physical_draws: int, eye_distance_mm: float, dpi: float, image: Path, target: Path | None
) -> None:
    """Attack the best face of IMAGE: dodge (stop matching itself), impersonate TARGET, or vanish."""
    from advrobust.faces import FacePipeline, load_image, save_image
    from advrobust.report.faces import face_attack_page

    if (mode == "impersonate") != (target is not None):
        raise InputError("give TARGET exactly with --mode impersonate (the face to be taken for)")
    eps = parse_budget(eps_text)
    pipeline = FacePipeline.load()
    photo = load_image(image)
    face = pipeline.best_face(photo)
    target_face = pipeline.best_face(target) if target is not None else None
    evidence = None
    if frames:
        if attack_name != "pgd":
            raise InputError("--frames runs PGD inside the frames: leave --attack at pgd")
        with console.status(f"eyeglass frames, {mode}: {steps} PGD steps × {eot_draws} transformations"):
            outcome, frames_at = _frames_attack(pipeline, photo, face, target_face, mode, steps, eot_draws)
        with console.status(f"judging the frames under {physical_draws} fresh transformations"):
            evidence = _frames_evidence(pipeline, face, target_face, outcome, frames_at, physical_draws)
        measured = evidence.results[0]
        threat = (f"eyeglass frames, any colour; EOT over physical(), {eot_draws} draws per step; judged under "
                  f"{physical_draws} fresh draws: {measured.physical:.1%} physical success (transformations alone: "
                  f"{measured.baseline:.1%})")
    else:
        with console.status(f"{attack_name} {mode}, {norm} eps {eps_text}"):
            outcome = _digital_attack(pipeline, photo, face, target_face, mode,
                                      build_attack(attack_name, norm, eps, steps))
        threat = f"{norm}, eps {eps_text} = {eps:.4g}"
    out.mkdir(parents=True, exist_ok=True)
    saved = save_image(outcome.after, out / f"{mode}.png")
    if evidence is not None:
        evidence = _print_frames(face, outcome, frames_at, evidence, out, eye_distance_mm, dpi)
    description = [("image", image.name), ("mode", mode), ("attack", f"{attack_name}, {steps} steps"),
                   ("threat", threat)]
    if target is not None:
        description.append(("target", target.name))
    report = out / "report.html"
    report.write_text(face_attack_page(outcome, description, None if target_face is None else target_face.crop,
                                       evidence))
    verdict = "succeeded" if outcome.success else "failed"
    if outcome.distance_after is not None:
        console.print(f"{mode} {verdict}: distance {outcome.distance_before:.4f} → {outcome.distance_after:.4f}")
    else:
        counts = f"{len(outcome.detections_before)} → {len(outcome.detections_after)} detections"
        console.print(f"{mode} {verdict}: {counts}")
    if evidence is not None:
        control = evidence.results[1]
        console.print(f"physical success under {physical_draws} fresh transformations: {measured.physical:.1%} "
                      f"(digital {measured.digital:.0%}; random frames {control.physical:.1%}; the transformations "
                      f"alone {measured.baseline:.1%})")
        console.print(f"frames to print: {out / 'frames.png'} ({evidence.printed})")
    console.print(f"wrote {saved} and {report}")


def _digital_attack(pipeline, photo, face, target_face, mode: str, attack):
    from advrobust.faces.attack import dodge, impersonate, vanish

    if mode == "dodge":
        return dodge(pipeline, face, attack)
    if mode == "impersonate":
        return impersonate(pipeline, face, target_face, attack)
    return vanish(pipeline, photo, face, attack)


@dataclass
class _FramesAt:
    """Where the frames were attacked: the ``mask`` in the attacked picture, which shows the photo's
    ``region`` at ``size`` (the face's crop: ``None``, ``None``), and the face's ``box`` there (vanish)."""

    mask: torch.Tensor
    region: Box | None = None
    size: tuple[int, int] | None = None
    box: Box | None = None


def _frames_attack(pipeline, photo, face, target_face, mode: str, steps: int, draws: int):
    """Eyeglass frames through physical() (EOT): the outcome, and where the frames are."""
    import advrobust as ar
    from advrobust.faces.accessories import eyeglass_mask
    from advrobust.faces.attack import dodge, impersonate, vanish
    from advrobust.faces.physical import face_scene
    from advrobust.transforms import physical

    def frames_pgd(mask):  # no early stop: one success on the draws at hand is not robustness to fresh ones
        return ar.attacks.PGD(ar.Masked(mask), steps=steps, early_stop=False)

    if mode == "vanish":
        scene = face_scene(photo, face, context=4.0)
        size = tuple(scene.image.shape[-2:])
        at = _FramesAt(eyeglass_mask(face, region=scene.region, size=size), scene.region, size, scene.box)
        outcome = vanish(pipeline, scene.image, face, frames_pgd(at.mask), transform=physical(), draws=draws,
                         box=scene.box)
        return outcome, at
    at = _FramesAt(eyeglass_mask(face))
    if mode == "dodge":
        return dodge(pipeline, face, frames_pgd(at.mask), transform=physical(), draws=draws), at
    return impersonate(pipeline, face, target_face, frames_pgd(at.mask), transform=physical(), draws=draws), at


def _frames_evidence(pipeline, face, target_face, outcome, at: _FramesAt, physical_draws: int, views: int = 6,
                     pool: int = 24):
    """The frames and random frames in the same place (the control) under ``physical_draws`` fresh
    transformations and against their strength, and ``views`` draws of the picture as a camera sees it,
    picked from ``pool`` draws so that the frames succeed in as many of them as in the pool."""
    import torch

    from advrobust.evaluation.physical import perturbation_success
    from advrobust.evaluation.vanish import vanish_success
    from advrobust.faces import DIFFERENT, SAME, VerificationClassifier
    from advrobust.faces.attack import still_detected
    from advrobust.faces.physical import moved_boxes
    from advrobust.report.faces import CameraView, FramesEvidence, detection_boxes, representative_draws
    from advrobust.transforms import physical

    scene = physical()
    noise = torch.rand(outcome.before.shape, generator=torch.Generator().manual_seed(1))
    control = outcome.before * (1 - at.mask[0]) + noise * at.mask[0]
    curve = {"strengths": (0.0, 0.25, 0.5, 0.75, 1.0), "curve_draws": max(1, physical_draws // 5)}
    pictures = {"eyeglass frames": outcome.after, "random frames (control)": control}
    generator = torch.Generator().manual_seed(2)
    clean = outcome.before.expand(pool, *outcome.before.shape)
    params = scene.sample(clean, generator)
    seen = [scene.apply(clean, params), scene.apply(outcome.after.expand_as(clean), params)]
    if outcome.mode == "vanish":
        results = [vanish_success(pipeline.detector, outcome.before, picture, at.box, n_draws=physical_draws,
                                  name=name, **curve) for name, picture in pictures.items()]
        boxes = moved_boxes(scene, params, at.box, clean).tolist()
        rows = []
        for pictures_seen in seen:
            found = pipeline.detector.detect_batch(pictures_seen, pipeline.score_threshold)
            kept = [still_detected(f, tuple(b)) for f, b in zip(found, boxes, strict=True)]
            rows.append([CameraView(p, "found" if k else "vanished", not k, detection_boxes(f, tuple(b)))
                         for p, f, b, k in zip(pictures_seen, found, boxes, kept, strict=True)])
    else:
        reference = face.descriptor if outcome.mode == "dodge" else target_face.descriptor
        model = VerificationClassifier(pipeline.recognizer, reference, pipeline.threshold)
        y, goal = (torch.tensor([SAME]), None) if outcome.mode == "dodge" else (torch.tensor([DIFFERENT]),
                                                                               torch.tensor([SAME]))
        results = [perturbation_success(model, outcome.before[None], picture[None], y, goal, n_draws=physical_draws,
                                        name=name, **curve) for name, picture in pictures.items()]
        rows = []
        for pictures_seen in seen:
            with torch.no_grad():
                distances = model.distance(pictures_seen).tolist()
            same = [d < pipeline.threshold for d in distances]
            rows.append([CameraView(p, f"d {d:.2f}: {'same' if s else 'different'}",
                                    s if outcome.mode == "impersonate" else not s)
                         for p, d, s in zip(pictures_seen, distances, same, strict=True)])
    shown = representative_draws([view.reached for view in rows[1]], views)
    return FramesEvidence(results, [[row[i] for i in shown] for row in rows], pool)


def _print_frames(face, outcome, at: _FramesAt, evidence, out: Path, eye_distance_mm: float, dpi: float):
    """``OUT/frames.png``: the attacked frames, level and cut out, at the size that fits the wearer's
    eyes; the evidence with its preview and how it prints."""
    from dataclasses import replace

    from advrobust.faces.accessories import printable_frames
    from advrobust.report.printable import save_printable

    cut = printable_frames(face, outcome.after, at.mask, at.region, at.size, eye_distance_mm)
    printed = save_printable(cut.rgb, out / "frames.png", width_mm=cut.width_mm, dpi=dpi, alpha=cut.alpha)
    preview = save_printable(cut.rgb, out / "frames-preview.png", width_in=3.0, dpi=100, alpha=cut.alpha)
    line = (f"{printed.width_mm:.0f} × {printed.height_mm:.0f} mm at {dpi:g} dpi, for eyes {eye_distance_mm:g} mm "
            "apart: print at 100%, cut along the frames")
    return replace(evidence, printable_png=Path(preview.path).read_bytes(), printed=line)
