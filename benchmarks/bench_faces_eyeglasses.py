"""Eyeglass-frame dodging on the real face recognizer, digital and under physical transformations.

For each of the first ``--faces`` demo faces (face-api 1.7.15's recognizer; needs `advrobust data
download faces`): frames over the face's own eyes (:func:`advrobust.faces.accessories.eyeglass_mask`,
~7% of the crop; Sharif et al. 2016 used ~6.5%), any colour inside them, nothing outside. PGD
(``--steps``, no early stop) makes the face stop matching its own descriptor (distance ≥ 0.6), through the
recognizer seen under the ``physical()`` transformations (rotation ±15°, scale ±0.1, translation ±0.1,
perspective, lighting, print-and-photograph), the logits averaged over ``--draws`` draws per step
(EOT). Reported: the digital success, the physical success rate over ``--eval-draws`` fresh
transformations per face, and the same for the clean faces (how often the transformations alone
make a face stop matching) and for the frames attacked without EOT (one draw per step).

    PYTHONPATH=src python benchmarks/bench_faces_eyeglasses.py [--faces 10] [--steps 50] [--draws 4]

Results: benchmarks/results/faces_eyeglasses.json (with the load average: the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import write_results

import advrobust as ar
from advrobust.evaluation.physical import perturbation_success
from advrobust.faces import FacePipeline, VerificationClassifier
from advrobust.faces.accessories import eyeglass_mask
from advrobust.faces.adapters import SAME
from advrobust.masks import coverage
from advrobust.transforms import physical
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--eval-draws", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()
    pipeline = FacePipeline.load()
    faces = pipeline.demo_faces()[: args.faces]
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
