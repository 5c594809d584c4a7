"""What the fast path (:mod:`advrobust.runtime.fast_forward`) buys: rows per second of the plain model
and of the fast path (channels-last weights, chunks of ``CPU_ROWS``), forward only (a query attack's
pass) and forward+backward w.r.t. the input (a gradient attack's), at several batch sizes; for the
forward pass also of the frozen copy (:mod:`advrobust.runtime.frozen`) that query attacks run on; and
for One-Pixel's passes (``EDITS`` one-pixel edits of 100 test images), whole painted images through
the plain model and the frozen copy against the receptive-field forward
(:mod:`advrobust.runtime.local_forward`), which computes only the window an edit can change.

Timings on a shared CPU drift by tens of percent within a minute, so each configuration is timed in
short interleaved rounds (plain, fast, frozen, plain, ...) and the median of the rounds is reported;
a round is :func:`common.rows_per_second` (forward) or :func:`common.floor_seconds` (forward+backward).

    .venv/bin/python benchmarks/bench_fast_forward.py                       # the default model
    .venv/bin/python benchmarks/bench_fast_forward.py --model ckpt.safetensors

Writes ``benchmarks/results/fast_forward.json`` (``--results NAME`` for another name).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_model, floor_seconds, rows_per_second, timed, write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.runtime.chunks import CPU_ROWS  # noqa: E402
from advrobust.runtime.fast_forward import FROZEN_AFTER_ROWS, FastForward  # noqa: E402
from advrobust.runtime.local_forward import local_forward  # noqa: E402
from advrobust.tensors import painted_copies  # noqa: E402

#: one-pixel edits per timed pass: One-Pixel's ``max_batch``
EDITS = 8192


def backward_rows_per_second(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                              passes: int) -> float:
    """Rows per second of ``passes`` forward+backward passes of ``fn`` w.r.t. the input on ``x``."""
    fn(x[:1])  # warm-up
    return len(x) * passes / floor_seconds(fn, x, y, passes=passes, repeats=1)


def one_pixel_edits(model: torch.nn.Module, frozen: FastForward, x: torch.Tensor, rounds: int) -> dict[str, float]:
    """Median rows per second of ``EDITS`` random one-pixel edits of the images ``x``: painted into whole
    copies and run through the plain model (in ``CPU_ROWS`` chunks) and the frozen copy, and the local
    forward (no entry where the model gets none)."""
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = x.shape
    img = torch.randint(0, n, (EDITS,), generator=gen)
    pos = torch.randint(0, h * w, (EDITS,), generator=gen)
    vals = torch.rand(EDITS, c, generator=gen)

    def painted() -> torch.Tensor:
        return painted_copies(x, img, pos[:, None], vals[:, None, :])

    local = local_forward(model, x)
    contenders = {"plain": lambda: frozen.exact(painted()), "frozen": lambda: frozen(painted())}
    if local is not None:
        contenders["local"] = lambda: local(img, pos, vals)
    runs: dict[str, list[float]] = {key: [] for key in contenders}
    with torch.no_grad():
        for _ in range(rounds):
            for key, fn in contenders.items():
                runs[key].append(EDITS / timed(fn)[0])
    return {key: statistics.median(r) for key, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a checkpoint (default: the default model)")
    parser.add_argument("--rows", default="64,128,256,512", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=20, help="passes timed in one forward+backward round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default="fast_forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, x_all, _ = bench_model()
    name = "mnist-cnn (default)"
    if args.model:
        model, name = ar.models.load_model(args.model).eval(), Path(args.model).stem
    rows_list = [int(r) for r in args.rows.split(",")]
    x_big = x_all[: max(rows_list)]
    y_big = model(x_big).argmax(1).detach()
    fast = FastForward(model, freeze=False)  # the channels-last path alone
    fast(x_big[:8])  # the first-call check
    frozen = FastForward(model)
    with torch.no_grad():  # a query attack's first rows, after which it switches to the frozen copy
        frozen(torch.rand(FROZEN_AFTER_ROWS, *x_big.shape[1:]))
    print(f"{name}: fast path layout {fast.layout}, chunks of {CPU_ROWS} rows, "
          f"frozen copy {'in use' if frozen.frozen else 'rejected (the fast path runs instead)'}")
    table = []
    for backward in (False, True):
        for rows in rows_list:
            x, y = x_big[:rows], y_big[:rows]
            contenders = {"plain": model, "fast": fast, **({} if backward else {"frozen": frozen})}
            runs: dict[str, list[float]] = {key: [] for key in contenders}
            for _ in range(args.rounds):
                for key, fn in contenders.items():
                    runs[key].append(backward_rows_per_second(fn, x, y, args.passes) if backward
                                     else rows_per_second(fn, tuple(x.shape[1:]), rows))
            speed = {key: statistics.median(r) for key, r in runs.items()}
            row = {"pass": "forward+backward" if backward else "forward", "rows": rows,
                   **{f"{key}_rows_per_s": v for key, v in speed.items()},
                   **{f"{key}_speedup": v / speed["plain"] for key, v in speed.items() if key != "plain"}}
            table.append(row)
            print(f"{row['pass']:>16} {rows:4d} rows: " + "  ".join(
                f"{key} {v:8.0f}/s" + (f" x{v / speed['plain']:.2f}" if key != "plain" else "")
                for key, v in speed.items()), flush=True)
    edits = one_pixel_edits(model, frozen, x_all[:100], args.rounds)
    print(f"{EDITS} one-pixel edits: " + "  ".join(f"{key} {v:8.0f}/s" for key, v in edits.items()))
    path = write_results(args.results, {"model": name, "layout": fast.layout, "frozen": frozen.frozen,
                                        "chunk_rows": CPU_ROWS, "rounds": args.rounds, "table": table,
                                        "one_pixel_edits": {"edits": EDITS, **{f"{key}_rows_per_s": v
                                                                              for key, v in edits.items()}}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
