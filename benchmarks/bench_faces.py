"""Attacks on real face models (face-api 1.7.15's recognizer and tiny face detector) on the demo photos.

    PYTHONPATH=src python benchmarks/bench_faces.py          # needs `advrobust data download faces`
    PYTHONPATH=src python benchmarks/bench_faces.py --only speed   # one section again, the rest kept

* sanity: each face against a jittered re-crop of itself (should match, < 0.6) and every pair of
  different faces (should not match);
* l∞ success curves, eps ∈ {1, 2, 4, 8, 16}/255, PGD (20 steps, step 2.5·eps/20) through
  ``attack.sweep``: dodging (every face), impersonation (all ordered pairs of different faces;
  pairs that already match are left out), vanishing (every face, whole photo, the success
  re-checked with full detection + NMS at the smallest budget); median eps needed;
* PGD-100 vs APGD-100 on dodging at 1.5/255 (between the grid's 0% at 1/255 and 95% at 2/255);
* speed: the recognizer's forward time; PGD's time over its forward+backward floor on 150×150 faces.

Results: benchmarks/results/faces.json. The machine is shared; its load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from common import RESULTS, floor_seconds, timed, write_results

import advrobust as ar
from advrobust.faces import FacePipeline, VanishClassifier, VerificationClassifier, jittered_crop, load_image
from advrobust.faces.adapters import DIFFERENT, PRESENT, SAME
from advrobust.faces.attack import still_detected
from advrobust.faces.weights import demo_photo_paths

EPSILONS = [1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255]
GRID_STEPS = 20


def _median_eps(success: torch.Tensor) -> float:
    """Median over points of the smallest eps of the grid that succeeded (inf for none)."""
    needed = [next((EPSILONS[e] for e in range(len(EPSILONS)) if success[e, i]), float("inf"))
              for i in range(success.shape[1])]
    return statistics.median(needed)


def _curve(success: torch.Tensor) -> dict[str, float]:
    return {f"{round(e * 255)}/255": float(success[k].float().mean()) for k, e in enumerate(EPSILONS)}


def sanity(pipeline: FacePipeline, faces, photos) -> dict:
    gen = torch.Generator().manual_seed(0)
    jittered = torch.cat([jittered_crop(photos[f.source], f.aligned, gen) for f in faces])
    own = (pipeline.describe(jittered) - torch.stack([f.descriptor for f in faces])).norm(dim=1)
    descriptors = torch.stack([f.descriptor for f in faces])
    pairs = torch.cdist(descriptors, descriptors)[~torch.eye(len(faces), dtype=torch.bool)]
    return {
        "faces": len(faces),
        "self_match_rate": float((own < 0.6).float().mean()),
        "self_distance_max": float(own.max()),
        "different_pairs": int(pairs.numel()),
        "different_pairs_not_matching_rate": float((pairs >= 0.6).float().mean()),
        "different_distance_min": float(pairs.min()),
    }


def dodging(pipeline: FacePipeline, faces) -> dict:
    attack = ar.attacks.PGD(ar.Linf(eps=EPSILONS[-1]), steps=GRID_STEPS)
    columns = []
    for face in faces:
        model = VerificationClassifier(pipeline.recognizer, face.descriptor)
        columns.append(attack.sweep(model, face.crop.unsqueeze(0), torch.tensor([SAME]), EPSILONS).success)
    success = torch.cat(columns, dim=1)
    return {"success": _curve(success), "median_eps": _median_eps(success), "points": success.shape[1]}


def impersonation(pipeline: FacePipeline, faces) -> dict:
    attack = ar.attacks.PGD(ar.Linf(eps=EPSILONS[-1]), steps=GRID_STEPS)
    columns, skipped = [], 0
    for target in faces:
        probes = [f for f in faces if f is not target and float((f.descriptor - target.descriptor).norm()) >= 0.6]
        skipped += len(faces) - 1 - len(probes)
        model = VerificationClassifier(pipeline.recognizer, target.descriptor)
        x = torch.stack([f.crop for f in probes])
        n = len(probes)
        sweep = attack.sweep(model, x, torch.full((n,), DIFFERENT), EPSILONS, target=torch.full((n,), SAME))
        columns.append(sweep.success)
    success = torch.cat(columns, dim=1)
    return {"success": _curve(success), "median_eps": _median_eps(success), "pairs": success.shape[1],
            "pairs_already_matching_left_out": skipped}


def vanishing(pipeline: FacePipeline, faces, photos) -> dict:
    attack = ar.attacks.PGD(ar.Linf(eps=EPSILONS[-1]), steps=GRID_STEPS)
    columns, confirmed = [], []
    for face in faces:
        image = photos[face.source]
        model = VanishClassifier(pipeline.detector, face.box, tuple(image.shape[-2:]))
        columns.append(attack.sweep(model, image.unsqueeze(0), torch.tensor([PRESENT]), EPSILONS).success)
    success = torch.cat(columns, dim=1)
    smallest = ar.attacks.PGD(ar.Linf(eps=EPSILONS[0]), steps=GRID_STEPS)
    for face in faces:  # re-check at the smallest budget with the full detection (threshold + NMS)
        image = photos[face.source]
        model = VanishClassifier(pipeline.detector, face.box, tuple(image.shape[-2:]))
        x_adv = smallest(model, image.unsqueeze(0), torch.tensor([PRESENT])).x_adv[0]
        confirmed.append(not still_detected(pipeline.detector.detect(x_adv), face.box))
    return {"success": _curve(success), "median_eps": _median_eps(success), "faces": success.shape[1],
            "confirmed_by_detection_at_1/255": sum(confirmed) / len(confirmed)}


def pgd_vs_apgd(pipeline: FacePipeline, faces) -> dict:
    out = {}
    eps = 1.5 / 255
    for name, attack in (
        ("pgd100", ar.attacks.PGD(ar.Linf(eps=eps), steps=100)),
        ("apgd100", ar.attacks.create("apgd", threat=ar.Linf(eps=eps), steps=100)),
    ):
        wins, start = 0, time.perf_counter()
        for face in faces:
            model = VerificationClassifier(pipeline.recognizer, face.descriptor)
            wins += int(attack(model, face.crop.unsqueeze(0), torch.tensor([SAME])).success.item())
        out[name] = {"dodging_success_at_1.5/255": wins / len(faces), "seconds": time.perf_counter() - start}
    return out


def speed(pipeline: FacePipeline, faces) -> dict:
    x = torch.stack([f.crop for f in faces])
    with torch.no_grad():
        forward_1, _ = timed(lambda: pipeline.recognizer(x[:1]), repeats=5)
        forward_n, _ = timed(lambda: pipeline.recognizer(x), repeats=3)
    # every point must stay unbroken (attacks skip points already adversarial): 20 slightly noisy
    # copies of one face against its own descriptor, at a budget far too small to dodge
    model = VerificationClassifier(pipeline.recognizer, faces[0].descriptor)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 1e-3
    x = (faces[0].crop.expand_as(x) + noise).clamp(0, 1)
    y = torch.full((len(faces),), SAME)
    steps = 10
    attack = ar.attacks.PGD(ar.Linf(eps=1 / 1000), steps=steps, early_stop=False, random_start=False)
    attack_s, _ = timed(lambda: attack(model, x, y), repeats=3)
    floor = floor_seconds(model, x, y, passes=steps, repeats=3)
    return {
        "unbroken_points": int((model(x).argmax(1) == SAME).sum()),
        "recognizer_forward_ms_batch1": forward_1 * 1e3,
        f"recognizer_forward_ms_per_face_batch{len(faces)}": forward_n * 1e3 / len(faces),
        "pgd_steps": steps, "pgd_seconds": attack_s, "floor_seconds": floor, "ratio_to_floor": attack_s / floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="re-run these sections, keep the others of faces.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()
    pipeline = FacePipeline.load()
    photos = {path.name: load_image(path) for path in demo_photo_paths()}
    faces = pipeline.demo_faces()
    results = {"load_average_before": load_before, "sanity": sanity(pipeline, faces, photos)}
    previous = RESULTS / "faces.json"
    if args.only and previous.is_file():
        kept = json.loads(previous.read_text())
        results.update({k: v for k, v in kept.items() if k not in ("environment", "load_average_after", *args.only)})
    for name, run in (("speed", lambda: speed(pipeline, faces)),
                      ("dodging_pgd20", lambda: dodging(pipeline, faces)),
                      ("impersonation_pgd20", lambda: impersonation(pipeline, faces)),
                      ("vanishing_pgd20", lambda: vanishing(pipeline, faces, photos)),
                      ("pgd_vs_apgd", lambda: pgd_vs_apgd(pipeline, faces[:8]))):
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        results[name] = run()
        results[name]["bench_seconds"] = time.perf_counter() - start
        write_results("faces", {**results, "load_average_after": os.getloadavg()})
        print(name, results[name], flush=True)  # noqa: T201 (benchmark script)


if __name__ == "__main__":
    main()
