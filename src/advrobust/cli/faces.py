"""``advrobust faces``: compare two faces, or attack a face (dodging, impersonation, vanishing)."""

from __future__ import annotations

from pathlib import Path

import click

from advrobust.cli.console import console
from advrobust.errors import InputError

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
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
def attack_command(
    mode: str, eps_text: str, norm: str, attack_name: str, steps: int, out: Path, frames: bool, eot_draws: int,
    physical_draws: int, image: Path, target: Path | None
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
    if frames:
        if attack_name != "pgd":
            raise InputError("--frames runs PGD inside the frames: leave --attack at pgd")
        with console.status(f"eyeglass frames, {mode}: {steps} PGD steps × {eot_draws} transformations"):
            outcome, measured = _frames_attack(pipeline, photo, face, target_face, mode, steps, eot_draws,
                                               physical_draws)
        threat = (f"eyeglass frames, any colour; EOT over physical(), {eot_draws} draws per step; judged under "
                  f"{physical_draws} fresh draws: {measured.physical:.1%} physical success (transformations alone: "
                  f"{measured.baseline:.1%})")
    else:
        with console.status(f"{attack_name} {mode}, {norm} eps {eps:.4g}"):
            outcome = _digital_attack(pipeline, photo, face, target_face, mode,
                                      build_attack(attack_name, norm, eps, steps))
        threat = f"{norm}, eps {eps_text} = {eps:.4g}"
    out.mkdir(parents=True, exist_ok=True)
    saved = save_image(outcome.after, out / f"{mode}.png")
    description = [("image", image.name), ("mode", mode), ("attack", f"{attack_name}, {steps} steps"),
                   ("threat", threat)]
    if target is not None:
        description.append(("target", target.name))
    report = out / "report.html"
    report.write_text(face_attack_page(outcome, description, None if target_face is None else target_face.crop))
    verdict = "succeeded" if outcome.success else "failed"
    if outcome.distance_after is not None:
        console.print(f"{mode} {verdict}: distance {outcome.distance_before:.4f} → {outcome.distance_after:.4f}")
    else:
        counts = f"{len(outcome.detections_before)} → {len(outcome.detections_after)} detections"
        console.print(f"{mode} {verdict}: {counts}")
    if frames:
        console.print(f"physical success under {physical_draws} fresh transformations: {measured.physical:.1%} "
                      f"(digital {measured.digital:.0%}; the transformations alone {measured.baseline:.1%})")
    console.print(f"wrote {saved} and {report}")


def _digital_attack(pipeline, photo, face, target_face, mode: str, attack):
    from advrobust.faces.attack import dodge, impersonate, vanish

    if mode == "dodge":
        return dodge(pipeline, face, attack)
    if mode == "impersonate":
        return impersonate(pipeline, face, target_face, attack)
    return vanish(pipeline, photo, face, attack)


def _frames_attack(pipeline, photo, face, target_face, mode: str, steps: int, draws: int, physical_draws: int):
    """Eyeglass frames through physical() (EOT), then the physical success rate of the result."""
    import torch

    import advrobust as ar
    from advrobust.evaluation.physical import perturbation_success
    from advrobust.evaluation.vanish import vanish_success
    from advrobust.faces import DIFFERENT, SAME, VerificationClassifier
    from advrobust.faces.accessories import eyeglass_mask
    from advrobust.faces.attack import dodge, impersonate, vanish
    from advrobust.faces.physical import face_scene
    from advrobust.transforms import physical

    def frames_pgd(mask):  # no early stop: one success on the draws at hand is not robustness to fresh ones
        return ar.attacks.PGD(ar.Masked(mask), steps=steps, early_stop=False)

    if mode == "vanish":
        scene = face_scene(photo, face, context=4.0)
        mask = eyeglass_mask(face, region=scene.region, size=tuple(scene.image.shape[-2:]))
        outcome = vanish(pipeline, scene.image, face, frames_pgd(mask), transform=physical(), draws=draws,
                         box=scene.box)
        measured = vanish_success(pipeline.detector, scene.image, outcome.after, scene.box, n_draws=physical_draws)
        return outcome, measured
    attack = frames_pgd(eyeglass_mask(face))
    if mode == "dodge":
        outcome, reference = dodge(pipeline, face, attack, transform=physical(), draws=draws), face.descriptor
        y, goal = torch.tensor([SAME]), None
    else:
        outcome = impersonate(pipeline, face, target_face, attack, transform=physical(), draws=draws)
        reference, y, goal = target_face.descriptor, torch.tensor([DIFFERENT]), torch.tensor([SAME])
    model = VerificationClassifier(pipeline.recognizer, reference, pipeline.threshold)
    measured = perturbation_success(model, face.crop[None], outcome.after[None], y, goal, n_draws=physical_draws)
    return outcome, measured
