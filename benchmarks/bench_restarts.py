"""How much random restarts of APGD-CE (Croce & Hein 2020) buy, and what they cost: robust accuracy
and wall time of APGD-CE alone with 1, 2, 3 and 5 restarts, on the same points of one model.

The number behind the ``standard`` suite's 5 restarts (:mod:`advrobust.evaluation.suites`): on a
model whose loss surface is noisy (FGSM-RS training, Wong et al. 2020) a single random start misses
points that another start breaks.

    .venv/bin/python benchmarks/bench_restarts.py --model ckpt.safetensors [--n 500] [--eps 0.3]

Writes ``benchmarks/results/restarts.json`` (``--results NAME`` for another name).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_evaluation import load  # noqa: E402
from common import write_results  # noqa: E402

import advrobust as ar  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a checkpoint [default: the default model]")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--restarts", default="1,2,3,5")
    parser.add_argument("--results", default="restarts")
    args = parser.parse_args()
    model, name, x, y = load(args.model, args.n)
    rows = []
    for restarts in (int(r) for r in args.restarts.split(",")):
        start = time.perf_counter()
        res = ar.evaluate(model, x, y, threat=ar.Linf(eps=args.eps), suite=[("apgd-ce", {"restarts": restarts})])
        rows.append({"restarts": restarts, "robust_accuracy": res.robust_accuracy_at(args.eps),
                     "seconds": time.perf_counter() - start})
        print(f"APGD-CE x{restarts}: robust {100 * rows[-1]['robust_accuracy']:.1f}% in {rows[-1]['seconds']:.1f} s",
              flush=True)
    path = write_results(args.results, {"model": name, "n_points": len(y), "eps": args.eps, "norm": "linf",
                                        "attack": "apgd-ce", "runs": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
