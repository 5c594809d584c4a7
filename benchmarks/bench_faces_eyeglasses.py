"""Eyeglass frames against the real face models, digital and under physical transformations.

``--mode dodge`` (the default) and ``--mode impersonate`` attack the recognizer; ``--mode vanish``
the detector. Each writes its own results file.

**Dodging.**
For each of the first ``--faces`` demo faces (face-api 1.7.15's recognizer; needs `advrobust data
download faces`): frames over the face's own eyes (:func:`advrobust.faces.accessories.eyeglass_mask`,
~7% of the crop; Sharif et al. 2016 used ~6.5%), any colour inside them, nothing outside. PGD
(``--steps``, no early stop) makes the face stop matching its own descriptor (distance ≥ 0.6), through the
recognizer seen under the ``physical()`` transformations (rotation ±15°, scale ±0.1, translation ±0.1,
perspective, lighting, print-and-photograph), the logits averaged over ``--draws`` draws per step
(EOT). Reported: the digital success, the physical success rate over ``--eval-draws`` fresh
transformations per face, and the same for the clean faces (how often the transformations alone
make a face stop matching) and for the frames attacked without EOT (one draw per step).

**Impersonation** (Sharif et al. 2016, §4.3): face ``i`` must match face ``i + n/2`` of the list
(always a person of another photo; distances 0.64–0.84 before the attack), targeted at "same"
against that face's descriptor (distance < 0.6), the same frames, PGD and EOT. Reported as for
dodging, with the worst face, the same physical rate under the small pose of
``print_and_photograph()`` (what remains after the pipeline re-aligns a photographed face), and a
control: the frames filled with uniform random colours.

**Vanishing** from the detector: the square photo around each face (``face_scene``: 4× the face's
box, at the detector's 416×416, so the face is as large as in the demo photos), the frames drawn there
(``--region frames``) or a larger region (``--region band``: the frames plus the band from the brows
to the nose tip), PGD through ``VanishUnderTransforms`` (the face's box moved with every draw; margins
hinged at −1 and averaged over ``--draws``). A draw vanishes when the full detection (score > 0.5,
NMS) returns no box at IoU ≥ 0.5 with the moved face; the clean scene under the same draws is the
baseline, random colours in the region the control.

    PYTHONPATH=src python benchmarks/bench_faces_eyeglasses.py [--mode dodge] [--faces 10] [--steps 50] [--draws 4]
    ... --speed-only      # the dodging frames' EOT PGD against its floor, at 10 and 100 steps
    ... --mode vanish --first 10 --faces 10      # a run split in two; then --mode vanish --merge

Results: benchmarks/results/faces_eyeglasses.json, faces_eyeglasses_impersonation.json,
faces_vanish_<region>[_from_<first>].json and faces_vanish_<region>_merged.json (with the load
average: the machine is shared); faces_eyeglasses_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from common import RESULTS, write_results

import advrobust as ar
from advrobust.evaluation.physical import perturbation_success
from advrobust.evaluation.vanish import vanish_success
from advrobust.faces import FacePipeline, VerificationClassifier, load_image
from advrobust.faces.accessories import eyeglass_mask
from advrobust.faces.adapters import DIFFERENT, SAME
from advrobust.faces.attack import impersonate, still_detected, vanish
from advrobust.faces.physical import face_scene
from advrobust.faces.weights import demo_photo_paths
from advrobust.masks import coverage
from advrobust.runtime import RuntimePolicy
from advrobust.transforms import physical, print_and_photograph
from advrobust.transforms.model import TransformedModel


def dodge_with_frames(pipeline: FacePipeline, face, steps: int, draws: int, eval_draws: int) -> dict:
    model = VerificationClassifier(pipeline.recognizer, face.descriptor, pipeline.threshold).eval()
    mask = eyeglass_mask(face)
    x, y = face.crop.unsqueeze(0), torch.tensor([SAME])
    row: dict[str, object] = {"source": face.source, "frame_coverage": coverage(mask)}
    for label, attacked in (("eot", TransformedModel(model, physical(), draws=draws)),
                            ("one_draw", TransformedModel(model, physical(), draws=1))):
        start = time.process_time()
        # no early stop: one success on the draws at hand is not robustness to fresh ones
        x_adv = ar.attacks.PGD(ar.Masked(mask), steps=steps, early_stop=False)(attacked, x, y).x_adv
        seconds = time.process_time() - start
        outside = float(((x_adv - x) * (1 - mask)).abs().max())
        found = perturbation_success(model, x, x_adv, y, transform=physical(), n_draws=eval_draws, seed=1)
        with torch.no_grad():
            distance = float(model.distance(x_adv))
        row[label] = {"digital": found.digital, "physical": found.physical, "baseline": found.baseline,
                      "distance_after": distance, "change_outside_frames": outside, "cpu_seconds": seconds}
    return row


def frames_speed(pipeline: FacePipeline, face, steps: int, draws: int) -> dict:
    """The dodging frames' EOT PGD (``steps`` steps, ``draws`` draws a pass) against its floor: as
    many forward+backward passes of the recognizer on ``draws`` crops, on the same fast path,
    interleaved (floor, attack, floor, attack), CPU seconds on one thread, the minimum of each. The
    attack's time includes what it does once: the fast-path check and the final verdict, a majority
    over 11 fresh draws of the randomized model."""
    model = VerificationClassifier(pipeline.recognizer, face.descriptor, pipeline.threshold).eval()
    mask = eyeglass_mask(face)
    x, y = face.crop.unsqueeze(0), torch.tensor([SAME])
    attacked = TransformedModel(model, physical(), draws=draws)
    runner = RuntimePolicy().runner(model)
    xb, yb = x.expand(draws, -1, -1, -1).contiguous(), y.expand(draws)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def floor() -> float:
        start = time.process_time()
        for _ in range(steps):
            xv = xb.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(runner.forward(xv), yb), xv)
        return time.process_time() - start

    def attack() -> float:
        start = time.process_time()
        ar.attacks.PGD(ar.Masked(mask), steps=steps, early_stop=False)(attacked, x, y)
        return time.process_time() - start

    floors, attacks = [], []
    for _ in range(2):
        floors.append(floor())
        attacks.append(attack())
    torch.set_num_threads(threads)
    return {"steps": steps, "draws": draws, "floor_cpu_s": floors, "attack_cpu_s": attacks,
            "ratio_to_floor": min(attacks) / min(floors)}


def random_fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The control: the region filled with uniform random colours (seeded)."""
    return x * (1 - mask) + torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * mask


def impersonate_with_frames(pipeline: FacePipeline, face, target, steps: int, draws: int, eval_draws: int) -> dict:
    model = VerificationClassifier(pipeline.recognizer, target.descriptor, pipeline.threshold).eval()
    mask = eyeglass_mask(face)
    x, y, goal = face.crop.unsqueeze(0), torch.tensor([DIFFERENT]), torch.tensor([SAME])
    start = time.process_time()
    attack = ar.attacks.PGD(ar.Masked(mask), steps=steps, early_stop=False)
    outcome = impersonate(pipeline, face, target, attack, transform=physical(), draws=draws)
    seconds = time.process_time() - start
    x_adv = outcome.after.unsqueeze(0)

    def measured(images: torch.Tensor, transform) -> dict:
        found = perturbation_success(model, x, images, y, goal, transform=transform, n_draws=eval_draws, seed=1)
        return {"digital": found.digital, "physical": found.physical, "baseline": found.baseline}

    return {
        "source": face.source, "target_source": target.source, "frame_coverage": coverage(mask),
        "distance_before": outcome.distance_before, "distance_after": outcome.distance_after,
        "change_outside_frames": float(((x_adv - x) * (1 - mask)).abs().max()), "cpu_seconds": seconds,
        "frames": measured(x_adv, physical()), "frames_small_pose": measured(x_adv, print_and_photograph()),
        "control_random_frames": measured(random_fill(x, mask), physical()),
    }


def band_mask(face, region, size) -> torch.Tensor:
    """The frames plus the band from the brows (landmarks 17–26) to the nose tip (30), as wide as
    the frames: a larger wearable region (a visor or a painted band) than the frames alone."""
    frames = eyeglass_mask(face, region=region, size=size)
    x, y, side, _ = region
    k = size[0] / side
    points = (face.landmarks.double() - torch.tensor([x, y], dtype=torch.float64)) * k
    cols = frames[0, 0].amax(dim=0).nonzero()
    top, bottom = float(points[17:27, 1].min()), float(points[30, 1])
    ys = torch.arange(size[0], dtype=torch.float64)[:, None] + 0.5
    xs = torch.arange(size[1], dtype=torch.float64)[None, :] + 0.5
    band = (ys >= top) & (ys <= bottom) & (xs >= float(cols.min())) & (xs <= float(cols.max()) + 1)
    return torch.maximum(frames, band.to(frames.dtype)[None, None])


def vanish_with_region(pipeline: FacePipeline, face, photo, region_name: str, steps: int, draws: int,
                       eval_draws: int) -> dict:
    scene = face_scene(photo, face, context=4.0)
    size = tuple(scene.image.shape[-2:])
    mask = (eyeglass_mask(face, region=scene.region, size=size) if region_name == "frames"
            else band_mask(face, scene.region, size))
    x0, y0, w, h = scene.box
    start = time.process_time()
    attack = ar.attacks.PGD(ar.Masked(mask), steps=steps, early_stop=False)
    outcome = vanish(pipeline, scene.image, face, attack, transform=physical(), draws=draws, box=scene.box)
    seconds = time.process_time() - start

    def measured(image: torch.Tensor) -> dict:
        found = vanish_success(pipeline.detector, scene.image, image, scene.box, n_draws=eval_draws, seed=1)
        return {"digital": found.digital, "physical": found.physical, "baseline": found.baseline}

    return {
        "source": face.source, "region_coverage_of_face_box": coverage(mask, (x0, y0, x0 + w, y0 + h)),
        "clean_detected": still_detected(outcome.detections_before, scene.box), "cpu_seconds": seconds,
        "change_outside_region": float(((outcome.after - scene.image) * (1 - mask[0])).abs().max()),
        "region": measured(outcome.after), "control_random_region": measured(random_fill(scene.image[None], mask)[0]),
    }


def _summary(rows: list[dict], parts: tuple[str, ...]) -> dict:
    out = {}
    for part in parts:
        out[part] = {key: sum(r[part][key] for r in rows) / len(rows) for key in ("digital", "physical", "baseline")}
        out[part]["worst_face_physical"] = min(r[part]["physical"] for r in rows)
        out[part]["faces_at_least_half_physical"] = sum(r[part]["physical"] >= 0.5 for r in rows) / len(rows)
    return out


def run_impersonation(pipeline: FacePipeline, faces, args) -> None:
    rows = []
    for i, face in enumerate(faces):
        target = faces[(i + len(faces) // 2) % len(faces)]
        rows.append(impersonate_with_frames(pipeline, face, target, args.steps, args.draws, args.eval_draws))
        print(i, rows[-1], flush=True)  # noqa: T201 (benchmark script)
        write_results("faces_eyeglasses_impersonation", {
            "faces": len(rows), "steps": args.steps, "draws": args.draws, "eval_draws": args.eval_draws,
            "summary": _summary(rows, ("frames", "frames_small_pose", "control_random_frames")), "per_face": rows,
            "load_average_after": os.getloadavg(),
        })


def vanish_summary(rows: list[dict]) -> dict:
    """The summary over every face, and over the faces the detector finds in the clean scene (the
    others vanish without an attack)."""
    found = [r for r in rows if r["clean_detected"]]
    parts = ("region", "control_random_region")
    return {"all_faces": _summary(rows, parts), "faces_detected_clean": len(found),
            "over_faces_detected_clean": _summary(found, parts) if found else None}


def run_vanish(pipeline: FacePipeline, faces, args) -> None:
    photos = {path.name: load_image(path) for path in demo_photo_paths()}
    rows = []
    for i, face in enumerate(faces):
        rows.append(vanish_with_region(pipeline, face, photos[face.source], args.region, args.steps, args.draws,
                                       args.eval_draws))
        print(i, rows[-1], flush=True)  # noqa: T201 (benchmark script)
        suffix = f"_from_{args.first}" if args.first else ""
        write_results(f"faces_vanish_{args.region}{suffix}", {
            "faces": len(rows), "first_face": args.first, "region": args.region, "steps": args.steps,
            "draws": args.draws,
            "eval_draws": args.eval_draws, "summary": vanish_summary(rows),
            "mean_region_coverage_of_face_box": sum(r["region_coverage_of_face_box"] for r in rows) / len(rows),
            "per_face": rows, "load_average_after": os.getloadavg(),
        })


def merge_vanish(region: str) -> None:
    """One summary over the vanish runs split with ``--first`` (``faces_vanish_<region>*.json``)."""
    by_face, parts = {}, []
    for path in sorted(RESULTS.glob(f"faces_vanish_{region}*.json")):
        if path.stem.endswith("_merged"):
            continue
        data = json.loads(path.read_text())
        for k, row in enumerate(data["per_face"]):  # a face measured by two runs counts once
            by_face.setdefault(data.get("first_face", 0) + k, row)
        parts.append({"file": path.name, "first_face": data.get("first_face", 0), "faces": data["faces"],
                      "steps": data["steps"], "draws": data["draws"], "load_average_after": data["load_average_after"]})
    rows = [by_face[k] for k in sorted(by_face)]
    write_results(f"faces_vanish_{region}_merged", {"faces": len(rows), "face_indices": sorted(by_face), "runs": parts,
                                                     "summary": vanish_summary(rows)})
    print(vanish_summary(rows))  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("dodge", "impersonate", "vanish"), default="dodge")
    parser.add_argument("--region", choices=("frames", "band"), default="frames", help="vanish: the painted region")
    parser.add_argument("--faces", type=int, default=10)
    parser.add_argument("--first", type=int, default=0, help="vanish: start at this face (to split a run)")
    parser.add_argument("--merge", action="store_true", help="vanish: summarize the split runs' results together")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--eval-draws", type=int, default=100)
    parser.add_argument("--speed-only", action="store_true",
                        help="only the dodging frames' speed against its floor, at 10 and 100 steps")
    args = parser.parse_args()
    if args.merge:
        return merge_vanish(args.region)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    pipeline = FacePipeline.load()
    faces = pipeline.demo_faces()
    if args.speed_only:
        rows = [frames_speed(pipeline, faces[0], steps, args.draws) for steps in (10, 100)]
        for row in rows:
            print(f"{row['steps']} steps: {row['ratio_to_floor']:.2f}x the floor")  # noqa: T201
        write_results("faces_eyeglasses_speed", {"runs": rows, "load_average_before": load_before})
        return None
    if args.mode == "impersonate":
        return run_impersonation(pipeline, faces[: args.faces], args)
    if args.mode == "vanish":
        return run_vanish(pipeline, faces[args.first : args.first + args.faces], args)
    faces = faces[: args.faces]
    rows = []
    for face in faces:
        rows.append(dodge_with_frames(pipeline, face, args.steps, args.draws, args.eval_draws))
        print(rows[-1], flush=True)  # noqa: T201 (benchmark script)
    summary = {
        label: {key: sum(r[label][key] for r in rows) / len(rows) for key in ("digital", "physical", "baseline")}
        for label in ("eot", "one_draw")
    }
    write_results("faces_eyeglasses", {
        "faces": len(rows), "steps": args.steps, "draws": args.draws, "eval_draws": args.eval_draws,
        "mean_frame_coverage": sum(r["frame_coverage"] for r in rows) / len(rows), "summary": summary,
        "per_face": rows, "load_average_before": load_before, "load_average_after": os.getloadavg(),
    })
    print(summary)  # noqa: T201


if __name__ == "__main__":
    main()
