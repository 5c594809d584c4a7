"""What EOT should average: the objective, the logits or the probabilities, on the default MNIST CNN.

Untargeted PGD (l∞ 0.18, 30 steps, no early stop) through the transformations rotation ±15°,
translation ±8% and noise σ = 0.05, on 100 test digits, scored by the physical success rate under 50
fresh draws per digit (:func:`advrobust.evaluation.physical.perturbation_success`):

* plain PGD on the exact pixels, 30 steps, and 240 steps (the EOT runs' budget of passes);
* one draw per step through :class:`~advrobust.transforms.model.TransformedModel`;
* ``eot=ar.EOTDraws(8, average)`` for the three averages of :mod:`advrobust.runtime.eot`;
* ``TransformedModel(..., draws=8)``: the logits of 8 draws averaged inside one batched pass;

each with the cross-entropy and the margin loss.

    .venv/bin/python benchmarks/bench_eot_average.py

Writes ``benchmarks/results/eot_average.json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.data import load  # noqa: E402
from advrobust.evaluation.physical import perturbation_success  # noqa: E402
from advrobust.training.pretrained import default_model  # noqa: E402
from advrobust.transforms import Compose, GaussianNoise, Geometric  # noqa: E402
from advrobust.transforms.model import TransformedModel  # noqa: E402

EPS, STEPS, DRAWS, EVAL_DRAWS = 0.18, 30, 8, 50


def main() -> None:
    torch.set_num_threads(2)
    model, _ = default_model()
    model.eval()
    test = load("mnist-5k", split="test").subset(100, seed=2)
    x, y = test.x, test.y
    scene = Compose([Geometric(rotation=15, translation=0.08), GaussianNoise(0.05)])
    load_before = os.getloadavg()
    results = {}
    for loss in ("ce", "margin"):
        runs = {
            f"plain, {STEPS} steps": (STEPS, 1, model),
            f"plain, {STEPS * DRAWS} steps": (STEPS * DRAWS, 1, model),
            "one draw per step": (STEPS, 1, TransformedModel(model, scene)),
            **{f"eot {DRAWS}, average {a}": (STEPS, ar.EOTDraws(DRAWS, a), TransformedModel(model, scene))
               for a in ("objective", "logits", "probabilities")},
            f"TransformedModel draws={DRAWS}": (STEPS, 1, TransformedModel(model, scene, draws=DRAWS)),
        }
        for name, (steps, eot, target_model) in runs.items():
            attack = ar.attacks.PGD(ar.Linf(EPS), steps=steps, loss=loss, early_stop=False, eot=eot)
            x_adv = attack(target_model, x, y).x_adv
            r = perturbation_success(model, x, x_adv, y, transform=scene, n_draws=EVAL_DRAWS, name=name)
            results[f"{loss}: {name}"] = {"digital": r.digital, "physical": r.physical, "baseline": r.baseline}
            print(f"{loss:6s} {name:32s} physical {r.physical:.1%}  digital {r.digital:.1%}", flush=True)
    out = {"eps": EPS, "steps": STEPS, "draws": DRAWS, "eval_draws": EVAL_DRAWS, "n_points": x.shape[0],
           "transform": scene.describe(), "load_average": {"before": load_before, "after": os.getloadavg()},
           "results": results}
    print("wrote", write_results("eot_average", out))


if __name__ == "__main__":
    main()
