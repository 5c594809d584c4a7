"""Physical attacks on the default MNIST CNN: a universal targeted patch against a random patch of
the same size, and per-image attacks (digital PGD, a masked PGD), digital vs physical success, and
the speed of patch training as a ratio to its forward+backward floor.

* universal patch: 10% of the image (a square of 8.9 pixels on a side at scale 1, scale 0.8–1,
  rotation ±20°, anywhere on the digit's central 70%×70%), targeted to class 8, trained on the
  train split of mnist-5k under :func:`advrobust.transforms.physical`; evaluated on held-out test
  digits under 100 fresh transformations each, next to a random patch of the same size;
* per-image attacks on the correctly classified non-8 test digits, PGD with 100 steps: l∞ 0.3
  untargeted and targeted to 8, and a masked PGD targeted to 8 (a centred 9×9 square, 10.3%, any
  values); their success digitally and under 100 fresh transformations, and the transformations' own
  effect (baseline);
* success against transformation strength (0, 0.25, 0.5, 0.75, 1 × the default ranges);
* speed: patch training wall time / the time of as many forward+backward passes of the model on
  batches of the same size (the floor); the machine's load average is recorded.

    .venv/bin/python benchmarks/bench_physical.py [--quick]

Writes ``benchmarks/results/physical.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import floor_seconds, write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.attacks.patch import UniversalPatch  # noqa: E402
from advrobust.data import load  # noqa: E402
from advrobust.evaluation.physical import perturbation_success, texture_success  # noqa: E402
from advrobust.masked import Masked  # noqa: E402
from advrobust.masks import rectangle  # noqa: E402
from advrobust.training.pretrained import default_model  # noqa: E402

TARGET = 8
AREA = 0.1
REGION = (0.15, 0.15, 0.85, 0.85)
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, points and draws")
    args = parser.parse_args()
    torch.set_num_threads(2)
    steps, n_test, draws = (100, 100, 20) if args.quick else (600, 300, 100)
    model, _ = default_model()
    model.eval()
    train, test = load("mnist-5k", split="train"), load("mnist-5k", split="test").subset(n_test, seed=1)
    load_before = os.getloadavg()

    attack = UniversalPatch(AREA, region=REGION, steps=steps, batch_size=64, lr=0.1, loss="margin")
    start = time.perf_counter()
    patch = attack.fit(model, train.x, train.y, target=TARGET)
    train_s = time.perf_counter() - start
    xb, yb = train.x[:64], train.y[:64]
    floor = floor_seconds(model, xb, yb, steps, repeats=1)

    noise = torch.rand(patch.texture.shape, generator=torch.Generator().manual_seed(5))
    control = replace(patch, texture=noise, history=[])
    results = {}
    for name, tex in (("universal patch", patch), ("random patch (control)", control)):
        r = texture_success(model, tex, test.x, test.y, n_draws=draws, strengths=STRENGTHS, curve_draws=10,
                            name=name)
        results[name] = {k: v for k, v in r.to_dict().items() if k != "per_point"}

    with torch.no_grad():
        keep = (model(test.x).argmax(1) == test.y) & (test.y != TARGET)
    x, y = test.x[keep], test.y[keep]
    goal = torch.full_like(y, TARGET)
    square = Masked(rectangle((28, 28), (9.5, 9.5, 18.5, 18.5)))  # 81 pixels, 10.3%
    for name, threat, target in (("pgd linf 0.3, untargeted", ar.Linf(0.3), None),
                                 (f"pgd linf 0.3, target {TARGET}", ar.Linf(0.3), goal),
                                 (f"masked pgd 9x9 centre, target {TARGET}", square, goal)):
        start = time.perf_counter()
        res = ar.attacks.PGD(threat, steps=100)(model, x, y, target)
        seconds = time.perf_counter() - start
        r = perturbation_success(model, x, res.x_adv, y, target, n_draws=draws, strengths=STRENGTHS,
                                 curve_draws=10, name=name)
        results[name] = {**{k: v for k, v in r.to_dict().items() if k != "per_point"}, "attack_s": seconds}
        print(name, flush=True)

    out = {
        "target": TARGET,
        "area": AREA,
        "region": REGION,
        "steps": steps,
        "n_test": n_test,
        "n_draws": draws,
        "patch_nps": patch.nps,
        "patch_tv": patch.tv,
        "speed": {"train_s": train_s, "floor_s": floor, "ratio_to_floor": train_s / floor,
                  "passes": steps, "batch": 64},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "results": results,
    }
    path = write_results("physical" if not args.quick else "physical_quick", out)
    for name, r in results.items():
        print(f"{name:24s} digital {r['digital']:.1%}  physical {r['physical']:.1%}  baseline {r['baseline']:.1%}")
    print(f"patch training {train_s:.1f}s, floor {floor:.1f}s, ratio {train_s / floor:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
