"""Adversarial training on mnist-5k (the default ``mnist-cnn``, eps = 0.3, l∞): cost and result.

1. **Cost per epoch**: the best of a few batches of 128 of each method (standard, PGD-AT with 10
   steps, FGSM-RS, TRADES with 10 steps), scaled to an epoch of the training split; the ratio to a
   standard epoch and to the floor (the method's forward+backward passes per batch, timed as
   plain input-gradient passes of the same model on the same batch: see ``common.py``).
2. **Accuracy within a budget**: FGSM-RS and PGD-AT each train for about ``--minutes`` of wall time
   (the epoch count is fixed up front from step 1, so the schedule is a whole one), then on
   ``--eval-points`` test points: clean accuracy, PGD-40 robust accuracy, and the worst case per
   point over PGD-40, APGD-CE and APGD-T (Croce & Hein 2020: the gradient attacks of AutoAttack),
   the strongest evaluation run here. The per-epoch curves (train loss/accuracy, clean and PGD-10
   robust validation accuracy, guard notes) go to the JSON too.

Recipe for step 2 (Wong et al. 2020's MNIST setting, shortened): Adam, one-cycle "cyclic" learning
rate peaking at ``--lr`` (default 5e-3), no weight decay, batch 128, eps warm-up over the first
``--warmup`` (default 0.3) of training — the budget allows few epochs of 4000 digits.

    .venv/bin/python benchmarks/bench_adversarial_training.py       # a ~4-minute check (make bench)
    .venv/bin/python benchmarks/bench_adversarial_training.py --minutes 10 --eval-points 1000
                                                                    # the issue's budget: ~25 minutes

Writes ``benchmarks/results/adversarial_training.json``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from common import floor_seconds, write_results
from torch import nn

import advrobust as ar
from advrobust.data import load
from advrobust.models import create, save_checkpoint
from advrobust.training import create_method, fit

EPS = 0.3
BATCH = 128
# forward+backward passes per batch: the attack's gradient steps plus the outer step
PASSES = {"standard": 1, "pgd-at": 10 + 1, "fgsm-rs": 1 + 1, "trades": 10 + 2}
OPTIONS: dict[str, dict[str, Any]] = {"standard": {}, "pgd-at": {"eps": EPS, "steps": 10},
                                      "fgsm-rs": {"eps": EPS}, "trades": {"eps": EPS, "steps": 10}}


def fresh_model() -> nn.Module:
    return create("mnist-cnn", 10, (1, 28, 28), seed=0)


def seconds_per_batch(name: str, x: torch.Tensor, y: torch.Tensor, batches: int) -> float:
    """Best-of-``batches`` wall time of one training step (loss, backward, Adam step), the convention
    of ``common.timed``: the least disturbed measure on a shared machine."""
    model = fresh_model().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    method = create_method(name, **OPTIONS[name])
    times = []
    for i in range(batches + 1):  # the first batch warms up and is not counted
        xb, yb = x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]
        start = time.perf_counter()
        loss, _ = method.loss(model, xb, yb, progress=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def cost(train: Any, batches: int) -> dict[str, Any]:
    per_epoch = math.ceil(len(train.y) / BATCH)
    x, y = train.x[: (batches + 1) * BATCH], train.y[: (batches + 1) * BATCH]
    one_pass = floor_seconds(fresh_model().eval(), x[:BATCH], y[:BATCH], passes=5) / 5
    rows = {}
    for name in PASSES:
        s = seconds_per_batch(name, x, y, batches)
        rows[name] = {"seconds_per_batch": s, "seconds_per_epoch": s * per_epoch,
                      "floor_ratio": s / (PASSES[name] * one_pass)}
        print(f"{name:9s} {s * per_epoch:7.2f} s/epoch  x{s / (PASSES[name] * one_pass):.2f} floor", flush=True)
    for row in rows.values():
        row["ratio_to_standard"] = row["seconds_per_batch"] / rows["standard"]["seconds_per_batch"]
    return {"batches_timed": batches, "batch_size": BATCH, "one_pass_seconds": one_pass, "methods": rows}


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Clean, PGD-40 and worst-case (PGD-40, APGD-CE, APGD-T) accuracy; each attack runs only on
    the points still standing (a point is robust only if correct and unbroken by every attack)."""
    threat = ar.Linf(eps=EPS)
    with torch.no_grad():
        standing = model(x).argmax(1) == y
    out = {"clean": float(standing.float().mean())}
    for label, attack in (
        ("pgd40", ar.attacks.create("pgd", threat=threat, steps=40)),
        ("apgd-ce", ar.attacks.create("apgd-ce", threat=threat)),
        ("apgd-t", ar.attacks.create("apgd-t", threat=threat)),
    ):
        idx = standing.nonzero().squeeze(1)
        if idx.numel():
            standing[idx] = ~attack(model, x[idx], y[idx]).success
        out["pgd40" if label == "pgd40" else f"after_{label}"] = float(standing.float().mean())
    out["worst_case"] = out["after_apgd-t"]
    return out


def budget_run(name: str, train: Any, test: Any, epoch_seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    epochs = max(1, int(args.minutes * 60 / epoch_seconds))
    model = fresh_model()
    method = create_method(name, **OPTIONS[name], warmup=args.warmup)
    start = time.perf_counter()
    history = fit(
        model, train, test, method=method, epochs=epochs, batch_size=BATCH, lr=args.lr, optimizer="adam",
        weight_decay=0.0, schedule="cyclic", seed=0,
        val_attack=ar.attacks.create("pgd", eps=EPS, steps=10), val_points=200,
    )
    seconds = time.perf_counter() - start
    model.eval()
    n = min(args.eval_points, len(test.y))
    idx = torch.randperm(len(test.y), generator=torch.Generator().manual_seed(0))[:n]  # the split is sorted
    acc = robust_accuracy(model, test.x[idx], test.y[idx])
    print(f"{name:9s} {epochs} epochs in {seconds:.0f} s: clean {acc['clean']:.3f}  PGD-40 {acc['pgd40']:.3f}  "
          f"worst case (+APGD-CE, APGD-T) {acc['worst_case']:.3f}", flush=True)
    if args.save_dir is not None:
        meta = {"arch": "mnist-cnn", "arch_kwargs": {}, "num_classes": 10, "input_shape": [1, 28, 28],
                "data": "mnist-5k", "training": method.describe(), "clean_accuracy": acc["clean"]}
        save_checkpoint(args.save_dir / f"mnist-cnn-{name}.safetensors", model, meta)
    guard = getattr(method, "guard", None)
    return {
        "epochs": epochs, "train_seconds": seconds, "method": method.describe(),
        "stop_reason": history.stop_reason, "eval_points": n, "accuracy": acc,
        "curve": [asdict(r) for r in history.records],
        "guard_checks": [asdict(r) for r in guard.records] if guard is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=0.5,
                        help="training budget per method (default 0.5; the issue's is 10)")
    parser.add_argument("--timing-batches", type=int, default=3, help="batches timed per method (default 3)")
    parser.add_argument("--eval-points", type=int, default=200, help="test points attacked (default 200)")
    parser.add_argument("--lr", type=float, default=5e-3, help="peak learning rate of Adam (default 5e-3)")
    parser.add_argument("--warmup", type=float, default=0.3, help="eps warm-up fraction (default 0.3)")
    parser.add_argument("--save-dir", type=Path, default=None,
                        help="also save each trained model here as a checkpoint (for bench_evaluation --model)")
    args = parser.parse_args()
    train, test = load("mnist-5k", split="train"), load("mnist-5k", split="test")
    timing = cost(train, args.timing_batches)
    runs = {
        name: budget_run(name, train, test, timing["methods"][name]["seconds_per_epoch"], args)
        for name in ("fgsm-rs", "pgd-at")
    }
    path = write_results("adversarial_training", {
        "data": "mnist-5k", "model": "mnist-cnn", "eps": EPS, "norm": "linf", "budget_minutes": args.minutes,
        "recipe": {"optimizer": "adam", "lr": args.lr, "schedule": "cyclic", "weight_decay": 0.0,
                   "batch_size": BATCH, "warmup": args.warmup},
        "cost": timing, "runs": runs, "target_worst_case": 0.8,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
