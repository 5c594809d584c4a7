"""C&W-L2 (Carlini & Wagner 2017) on every member of the CNN zoo: does it end adversarial everywhere?

C&W's search over the constant ``c`` is unbounded, so on an undefended model every point should end
adversarial given enough ``c``. On the first ``--images`` correctly classified test images of each
member (``benchmarks/zoo_models.py``, MNIST and 32×32 RGB), the fast preset
(:meth:`advrobust.attacks.cw.CarliniWagner.fast`, 6 × 100 steps) and, with ``--paper``, the paper's
(9 × 1000): success rate, median l2 of the successes, and the attack's wall time against the floor of
the same number of forward+backward passes (both timed the same way), one thread.

    .venv/bin/python benchmarks/bench_zoo_cw.py                 # 100 images per member, fast preset
    .venv/bin/python benchmarks/bench_zoo_cw.py --images 20 --paper

Writes ``benchmarks/results/zoo_cw.json`` (or ``--results NAME``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import floor_seconds, timed, write_results  # noqa: E402
from zoo_models import correctly_classified  # noqa: E402

from advrobust.attacks.cw import CarliniWagner  # noqa: E402
from advrobust.models.zoo import SHAPES, ZOO  # noqa: E402
from advrobust.threat import L2  # noqa: E402


def measure(attack: CarliniWagner, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """C&W on ``x``: success, median l2 of the successes (each checked on the plain model), and its wall
    time against the floor of the same number of forward+backward passes, both synchronized with the
    device (:func:`common.timed`, :func:`common.floor_seconds`), so the ratio compares like with like."""
    seconds, result = timed(lambda: attack(model, x, y), device=x.device)
    with torch.no_grad():
        fooled = model(result.x_adv).argmax(1) != y  # the reported successes, checked on the plain model
    passes = int(result.queries.max())  # the batch runs as long as its longest point
    floor = floor_seconds(model, x, y, passes=passes, repeats=1)
    norms = result.norm[result.success]
    return {"success_rate": result.success_rate, "successes_misclassified": bool(fooled[result.success].all()),
            "median_l2": float(norms.median()) if len(norms) else None, "seconds": seconds, "passes": passes,
            "floor_seconds": floor, "ratio_to_floor": seconds / floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--paper", action="store_true", help="also the paper's preset (9 × 1000 steps; long)")
    parser.add_argument("--members", nargs="*", default=list(ZOO), choices=list(ZOO))
    parser.add_argument("--sizes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--results", default="zoo_cw", help="name of the results file in benchmarks/results/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    presets = {"fast": CarliniWagner.fast(L2())} | ({"paper": CarliniWagner(L2())} if args.paper else {})
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        for name in args.members:
            model, x, y = correctly_classified(name, size, args.images)
            row: dict[str, Any] = {"member": name, "size": size, "images": len(x)}
            for preset, attack in presets.items():
                row[preset] = measure(attack, model, x, y)
                r = row[preset]
                print(f"{name:>16} {size:>6} {preset}: {r['success_rate']:.0%} success, median l2 "
                      f"{r['median_l2']:.3f}, {r['seconds']:.1f} s, {r['ratio_to_floor']:.2f}x floor",
                      flush=True)
            rows.append(row)
    path = write_results(args.results, {"images": args.images, "members": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
