"""Speed and success of the One-Pixel attack (Su et al. 2019) on the default MNIST CNN.

At the paper's population (400, F = 0.5, one pixel) and ART's 10 generations by default, or the
paper's full budget of 100 generations with ``--paper``, on the first
``--images`` correctly classified test digits: success rate untargeted and targeted (target: a
seeded random other class), queries per image, wall time, and the ratio to the floor. One-Pixel is
a query attack: its floor is the time of the same number of *forward* passes of the model (in
batches of the attack's ``max_batch`` rows), measured as rows per second on this machine.

Reference (issue 5, measured here earlier): ART's PixelAttack took 74.6 s for 100 images at
400 × 10 iterations; ``speedup_vs_art`` is reported only when this run uses that budget
(``--images 100 --generations 10``).

    .venv/bin/python benchmarks/bench_one_pixel.py           # 100 images, 400 × 10 (ART's budget)
    .venv/bin/python benchmarks/bench_one_pixel.py --paper   # 100 images, 400 × 100 (about 10× longer)
    .venv/bin/python benchmarks/bench_one_pixel.py --quick   # 10 images, 400 × 5: a smoke run

The attack is bound by the model's forward passes (the ratio to the floor is close to 1): on a
2-core CPU the paper's budget takes about an hour for 100 images; ``--threads`` sets torch's threads.

Writes ``benchmarks/results/one_pixel.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_model, write_results  # noqa: E402

from advrobust.attacks.one_pixel import OnePixel  # noqa: E402
from advrobust.threat import L0  # noqa: E402

ART_SECONDS, ART_IMAGES, ART_GENERATIONS = 74.6, 100, 10


def rows_per_second(model: nn.Module, shape: tuple[int, ...], rows: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` forward throughput of ``model`` on batches of ``rows`` inputs."""
    x = torch.rand(rows, *shape)
    best = float("inf")
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return rows / best


def run(attack: OnePixel, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
        throughput: float) -> dict[str, Any]:
    start = time.perf_counter()
    res = attack(model, x, y, target)
    wall = time.perf_counter() - start
    queries = int(res.queries.sum())
    floor = (queries + len(x)) / throughput  # + the confirmation pass of the result
    return {
        "success_rate": res.success_rate,
        "queries_per_image": queries / len(x),
        "queries_per_success": float(res.queries[res.success].float().mean()) if bool(res.success.any()) else None,
        "wall_seconds": wall,
        "floor_seconds": floor,
        "ratio_to_floor": wall / floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 images, 5 generations")
    parser.add_argument("--paper", action="store_true", help="the paper's 100 generations")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--population", type=int, default=400)
    parser.add_argument("--generations", type=int, default=ART_GENERATIONS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.paper:
        args.generations = 100
    if args.quick:
        args.images, args.generations = 10, 5
    torch.set_num_threads(args.threads)

    model, x_test, y_test = bench_model()
    with torch.no_grad():
        correct = (model(x_test).argmax(dim=1) == y_test).nonzero().squeeze(1)[: args.images]
    x, y = x_test[correct], y_test[correct]
    gen = torch.Generator().manual_seed(0)
    target = (y + torch.randint(1, 10, y.shape, generator=gen)) % 10

    attack = OnePixel(L0(pixels=1), population=args.population, generations=args.generations)
    throughput = rows_per_second(model, tuple(x.shape[1:]), attack.max_batch)
    results: dict[str, Any] = {
        "model": "default mnist-cnn on mnist-5k",
        "images": len(x),
        "population": args.population,
        "generations": args.generations,
        "max_queries_per_image": args.population * (args.generations + 1),
        "forward_rows_per_second": throughput,
        "untargeted": run(attack, model, x, y, None, throughput),
        "targeted": run(attack, model, x, y, target, throughput),
        "art_reference": {"seconds": ART_SECONDS, "images": ART_IMAGES, "population": 400,
                          "generations": ART_GENERATIONS, "source": "issue 5, measured on this project's machine"},
    }
    if len(x) == ART_IMAGES and args.generations == ART_GENERATIONS and args.population == 400:
        results["speedup_vs_art"] = ART_SECONDS / results["untargeted"]["wall_seconds"]
    path = write_results("one_pixel", results)
    for kind in ("untargeted", "targeted"):
        r = results[kind]
        print(f"{kind:>10}: success {r['success_rate']:.1%}, {r['queries_per_image']:.0f} queries/image, "
              f"{r['wall_seconds']:.1f} s (floor {r['floor_seconds']:.1f} s, ratio {r['ratio_to_floor']:.2f})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
