"""The physical transformations' blur: its three exact ways, timed against each other per size.

``advrobust.transforms.photometric.blur`` computes a per-image Gaussian blur one of three ways
(``BLUR_WAYS``: one K×K depthwise convolution, shifted copies, banded n×n matrices) and
``blur_way`` picks one from the batch's shape and the kernel radius alone. Which is cheapest depends on
the CPU (oneDNN and the BLAS pick other kernels on another one), so this measures, for the sizes the
physical attacks meet and a few around the thresholds, forward+backward of each way (CPU time, one
thread, the best of three runs) and says whether ``blur_way`` took the fastest, and by how much it
missed where it did not. Gaussian widths are drawn uniformly up to ``radius / 3`` per image.

    .venv/bin/python benchmarks/bench_blur.py

Writes ``benchmarks/results/blur.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results  # noqa: E402

from advrobust.transforms.photometric import BLUR_WAYS, _kernels, blur_way  # noqa: E402

# (batch, channels, side, radius): MNIST digits, the dense tasks' scenes, face crops, the face
# detector's input, and sizes either side of the thresholds
CASES = [(64, 1, 28, 3), (64, 1, 28, 1), (32, 1, 64, 3), (32, 1, 80, 3), (16, 3, 112, 3), (8, 3, 150, 3),
         (8, 3, 150, 4), (8, 3, 150, 6), (2, 3, 150, 3), (8, 3, 200, 6), (2, 3, 300, 6), (2, 3, 300, 9),
         (1, 3, 416, 3), (2, 3, 416, 3), (4, 3, 416, 3)]


def time_way(way: str, x: torch.Tensor, sigma: torch.Tensor, radius: int, repeats: int = 5) -> float:
    """CPU milliseconds of one forward+backward of ``way`` (taps included), the best of three."""
    def once() -> None:
        xv = x.detach().requires_grad_(True)
        torch.autograd.grad(BLUR_WAYS[way](xv, _kernels(sigma, radius, xv), radius).sum(), xv)

    once()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeats):
            once()
        best = min(best, (time.process_time() - start) / repeats)
    return best * 1e3


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for n, c, side, radius in CASES:
        x = torch.rand(n, c, side, side, generator=gen)
        sigma = torch.rand(n, generator=gen) * radius / 3
        times = {way: time_way(way, x, sigma, radius) for way in BLUR_WAYS}
        chosen, fastest = blur_way(tuple(x.shape), radius), min(times, key=times.get)
        rows.append({"batch": n, "channels": c, "side": side, "radius": radius, "ms": times, "chosen": chosen,
                     "fastest": fastest, "chosen_over_fastest": times[chosen] / times[fastest]})
        print(f"{n}×{c}×{side}² r={radius}: " + ", ".join(f"{w} {t:.2f} ms" for w, t in times.items())
              + f"; blur takes {chosen} ({times[chosen] / times[fastest]:.2f}× the fastest)", flush=True)
    print(f"wrote {write_results('blur', {'rows': rows})}")


if __name__ == "__main__":
    main()
