"""Randomized defences: what one-sample PGD reports against EOT and the ``rand`` suite.

A model behind random resizing and padding (Xie et al. 2018) or Gaussian input noise gives a
different output on every call. On ``--n`` stratified test digits at l∞ ``--eps``, with every verdict
taken over 11 fresh draws of the model (a point counts as broken when the model is wrong on more
than half of them):

* ``pgd`` — PGD-40 with one draw per gradient (what a tool that does not notice the randomness runs);
* ``pgd-eot`` — the same PGD-40 with gradients averaged over 20 draws (EOT, Athalye et al. 2018);
* ``rand`` — the ``rand`` suite (APGD-CE and APGD-DLR, EOT 20, in the spirit of AutoAttack's
  ``version='rand'``), which ``ar.evaluate`` chooses by itself for a randomized model.

Each with its wall time and the ratio to its floor (the same number of forward+backward passes of
the defended model on the same batch, run as the attacks run it: the runtime's CPU fast path, which
randomized models take since its first-call check replays their draws). PGD stops a point at its
first success, so an attack can run fewer passes than its floor counts.

    .venv/bin/python benchmarks/bench_randomized.py [--n 200] [--eps 0.2] [--model CHECKPOINT]

Writes ``benchmarks/results/randomized.json`` (``randomized-<checkpoint name>.json`` with ``--model``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import floor_seconds, write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.data import load  # noqa: E402
from advrobust.models.defences import GaussianNoise, RandomResizePad  # noqa: E402
from advrobust.runtime import RuntimePolicy  # noqa: E402

EOT = 20


def robust_accuracy(success: torch.Tensor, clean_correct: torch.Tensor) -> float:
    return float((clean_correct & ~success).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.2)
    parser.add_argument("--model", help="a checkpoint to defend [default: the default model]")
    args = parser.parse_args()
    if args.model:
        base, _ = ar.models.load_checkpoint(args.model)
    else:
        from advrobust.training.pretrained import default_model

        base, _ = default_model()
    base.eval()
    test = load("mnist-5k", split="test").subset(args.n, seed=0)
    x, y = test.x, test.y
    threat = ar.Linf(eps=args.eps)
    results = {"n": args.n, "eps": args.eps, "model": args.model or "default", "eot": EOT, "defences": {}}
    defences = {"random-resize-pad(0.8)": RandomResizePad(base, min_scale=0.8),
                "gaussian-noise(0.3)": GaussianNoise(base, sigma=0.3)}
    for name, defended in defences.items():
        torch.manual_seed(0)
        rows = {}
        clean = ar.evaluate(defended, x, y, threat=threat, suite=["fgsm"], seed=0)  # clean verdicts only
        correct = clean.clean_correct
        for label, attack in (("pgd", ar.attacks.PGD(threat, steps=40)),
                              ("pgd-eot", ar.attacks.PGD(threat, steps=40, eot=EOT))):
            start = time.perf_counter()
            res = attack(defended, x, y)
            seconds = time.perf_counter() - start
            passes = 40 * (EOT if label == "pgd-eot" else 1)
            runner = RuntimePolicy().runner(defended)  # the model as the attacks run it (the CPU fast path)
            floor = floor_seconds(runner.forward, x, y, 5, repeats=1) / 5 * passes  # per pass, times the passes
            rows[label] = {"robust_accuracy": robust_accuracy(res.success, correct), "seconds": seconds,
                           "floor_seconds": floor, "ratio_to_floor": seconds / floor}
        start = time.perf_counter()
        rep = ar.evaluate(defended, x, y, threat=threat, seed=0)  # standard: switches to rand by itself
        rows["evaluate-default"] = {"suite": rep.suite, "randomized": rep.randomized,
                                    "robust_accuracy": rep.robust_accuracy_at(), "seconds": time.perf_counter() - start}
        rows["clean_accuracy"] = clean.clean_accuracy
        results["defences"][name] = rows
        print(name, rows, flush=True)
    path = write_results("randomized" + (f"-{Path(args.model).stem}" if args.model else ""), results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
