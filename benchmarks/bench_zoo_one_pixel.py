"""One-Pixel (Su et al. 2019) against IBM ART's PixelAttack on every member of the CNN zoo.

The zoo (:mod:`advrobust.models.zoo`) holds CNNs written the ways users write them: PyTorch's
functional MNIST example, ``nn.Sequential``, batch norm with ``view``, a residual block, global
average pooling; each trained briefly at MNIST's size and on the same digits as 32×32 RGB images
(``benchmarks/zoo_models.py``, cached). On the first ``--images`` correctly classified test images of
each, ART's PixelAttack (differential evolution, its fixed population of 400, ``max_iter`` = our
generations) and ours at the same budget run one after the other in separate processes with the
same threads (``bench_one_pixel.art_head_to_head``; ours on a fresh copy of the model, so it builds
its local forward inside the timed call). Reported per member: both wall times and success rates,
the speed-up, and whether the receptive-field forward (:mod:`advrobust.runtime.local_forward`) was
used. Needs ``$ART_PYTHON`` as ``bench_one_pixel.py`` describes.

    .venv/bin/python benchmarks/bench_zoo_one_pixel.py                 # 20 images, 400 × 10
    .venv/bin/python benchmarks/bench_zoo_one_pixel.py --images 100    # the issue's setting (long)
    .venv/bin/python benchmarks/bench_zoo_one_pixel.py --members residual --sizes rgb32
    .venv/bin/python benchmarks/bench_zoo_one_pixel.py --members sequential --images 30 --repeats 3

Writes ``benchmarks/results/zoo_one_pixel.json`` (or ``--results NAME``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_one_pixel import ART_GENERATIONS, art_head_to_head  # noqa: E402
from common import write_results  # noqa: E402
from zoo_models import correctly_classified  # noqa: E402

from advrobust.attacks.one_pixel import OnePixel  # noqa: E402
from advrobust.models.zoo import SHAPES, ZOO  # noqa: E402
from advrobust.runtime.local_forward import local_forward  # noqa: E402
from advrobust.threat import L0  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--generations", type=int, default=ART_GENERATIONS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--members", nargs="*", default=list(ZOO), choices=list(ZOO))
    parser.add_argument("--sizes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=1,
                        help="duels per member; the ratio of each side's best CPU time is reported too")
    parser.add_argument("--results", default="zoo_one_pixel", help="name of the results file in benchmarks/results/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    attack = OnePixel(L0(pixels=1), population=400, generations=args.generations)
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        for name in args.members:
            model, x, y = correctly_classified(name, size, args.images)
            duels = [art_head_to_head(attack, model, {}, x, y, args.threads, zoo=f"{name}:{size}")
                     for _ in range(args.repeats)]
            duel = duels[0]
            row = {"member": name, "size": size, "local_forward": local_forward(model, x) is not None,
                   "load_average": os.getloadavg()[0], **duel}
            if args.repeats > 1 and all("cpu_speedup" in d for d in duels):
                # on a machine whose neighbours steal time, each side's best run is its own cost
                row["runs"] = duels
                row["cpu_speedup_best_of_runs"] = (min(d["art"]["cpu_seconds"] for d in duels)
                                                   / min(d["ours"]["cpu_seconds"] for d in duels))
            rows.append(row)
            if "speedup" in duel:
                print(f"{name:>16} {size:>6}: ART {duel['art']['wall_seconds']:6.1f} s "
                      f"{duel['art']['success_rate']:.0%}, ours {duel['ours']['wall_seconds']:5.1f} s "
                      f"{duel['ours']['success_rate']:.0%}: {duel['speedup']:.1f}x, CPU time "
                      f"{duel.get('cpu_speedup', float('nan')):.1f}x (local forward: "
                      f"{row['local_forward']}, load {row['load_average']:.1f})"
                      + (f"; best of {args.repeats} runs: {row['cpu_speedup_best_of_runs']:.1f}x"
                         if "cpu_speedup_best_of_runs" in row else ""), flush=True)
            else:
                print(f"{name:>16} {size:>6}: {duel.get('skipped')}", flush=True)
    path = write_results(args.results, {"images": args.images, "population": 400,
                                           "generations": args.generations, "members": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
