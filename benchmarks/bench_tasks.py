"""DAG and PGD against the built-in segmenter and detector: metrics before/after, sizes, speed.

On ``--n`` test scenes (default 100) of ``mnist-seg`` / ``mnist-det`` with the cached built-in models
(:mod:`advrobust.training.dense`):

* clean mIoU / pixel accuracy and mAP@0.5 / recall;
* after DAG (Xie et al. 2017, Algorithm 1: γ = 0.5 in 0..255 units, i.e. 0.5/255 on [0, 1] pixels,
  up to 200 iterations, unbounded as in the paper; segmentation: random-permutation targets, and
  every pixel to the background (the digits vanish; mIoU then keeps the background's IoU, so its
  floor is about 1/11 of the clean value); detection: random permutation and "vanish"; ``--gamma``
  adds rows with other step sizes): the metrics, the median ‖r‖∞ and ‖r‖₂, the mean and median
  iterations, the mean flipped fraction, and
  ``after_over_clean``: the main metric (mIoU, mAP) after each attack and control over its clean value;
* a control: random noise of the same size per image (signs scaled to DAG's ‖r‖∞, and Gaussian
  noise scaled so that after clipping to [0, 1] its ‖·‖₂ is DAG's ‖r‖₂), which must move the metrics
  by a few points only; the norms of the noise as applied are recorded with it;
* after PGD-20 (l∞, eps ``--eps``, default 0.05) on the task's mean pixel / proposal cross-entropy;
* speed on the segmenter: DAG (10 iterations, no image finishes that early) and PGD-10 (early stop
  off) as a ratio to their floor: the same number of forward+backward passes (and forward passes) of
  the model on the same batch (goal <= 1.2x).

    .venv/bin/python benchmarks/bench_tasks.py [--n 100] [--eps 0.05] [--task segmentation|detection] [--gamma 0.5 2]

Writes ``benchmarks/results/tasks.json`` (``--task`` runs one half and keeps the other from the file);
records ``uptime``'s load average before and after each half (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_results  # noqa: E402

from advrobust.attacks.dag import DAG  # noqa: E402
from advrobust.attacks.gradient import PGD  # noqa: E402
from advrobust.data.scenes import load_scenes  # noqa: E402
from advrobust.evaluation.tasks import outputs, task_metrics  # noqa: E402
from advrobust.tasks import resolve_task  # noqa: E402
from advrobust.threat import L2, Linf  # noqa: E402
from advrobust.training.dense import default_detector, default_segmenter  # noqa: E402


def load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return " ".join(f"{v:.2f}" for v in os.getloadavg())


def scaled_to_l2(x: torch.Tensor, direction: torch.Tensor, l2: torch.Tensor, rounds: int = 40) -> torch.Tensor:
    """``clip(x + s·direction)`` with ``s`` per image chosen by bisection so that the noise *as applied*
    (after clipping to [0, 1]) has the norm ``l2``: on a black background clipping removes about half
    of a Gaussian, and a control scaled before clipping would be smaller than the attack."""
    def applied(s: torch.Tensor) -> torch.Tensor:
        return L2().norm((x + s.view(-1, 1, 1, 1) * direction).clamp(0, 1) - x)

    lo = torch.zeros_like(l2)
    hi = 8 * l2 / L2().norm(direction).clamp_min(1e-12)
    for _ in range(rounds):
        mid = (lo + hi) / 2
        short = applied(mid) < l2
        lo, hi = torch.where(short, mid, lo), torch.where(short, hi, mid)
    return (x + hi.view(-1, 1, 1, 1) * direction).clamp(0, 1)


def control(model, x, x_adv, y, seed: int = 0) -> dict[str, dict[str, float]]:
    """The metrics under random noise of DAG's size per image: random signs at its ‖r‖∞, and Gaussian
    noise whose ‖·‖₂ after clipping equals its ‖r‖₂; with the median norms of the noise as applied
    (DAG's r is sparse, so signs at its ‖r‖∞ carry many times its ‖r‖₂)."""
    gen = torch.Generator().manual_seed(seed)
    r = x_adv - x
    linf, l2 = Linf().norm(r), L2().norm(r)
    signs = torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1
    gauss = torch.randn(x.shape, generator=gen)
    out = {}
    for name, noisy in (("same_linf_signs", (x + linf.view(-1, 1, 1, 1) * signs).clamp(0, 1)),
                        ("same_l2_gaussian", scaled_to_l2(x, gauss, l2))):
        applied = noisy - x
        out[name] = {**task_metrics(model, noisy, y), "median_linf": float(Linf().norm(applied).median()),
                     "median_l2": float(L2().norm(applied).median())}
    return out


def attack_block(model, x, y, attack, batch: int = 50) -> dict[str, object]:
    start = time.perf_counter()
    parts = [attack(model, x[i : i + batch], y[i : i + batch]) for i in range(0, x.shape[0], batch)]
    seconds = time.perf_counter() - start
    x_adv = torch.cat([p.x_adv for p in parts])
    r = x_adv - x
    out: dict[str, object] = {
        "metrics": task_metrics(model, x_adv, y),
        "median_linf": float(Linf().norm(r).median()),
        "median_l2": float(L2().norm(r).median()),
        "success_rate": float(torch.cat([p.success for p in parts]).float().mean()),
        "seconds": seconds,
    }
    if parts[0].extras:
        it = torch.cat([p.extras["iterations"] for p in parts]).float()
        out.update(mean_iterations=float(it.mean()), median_iterations=float(it.median()),
                   mean_flipped=float(torch.cat([p.extras["flipped"] for p in parts]).mean()))
    if isinstance(attack, DAG):
        out["control"] = control(model, x, x_adv, y)
    return out


def floor(model, x: torch.Tensor, grad_passes: int, forward_passes: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` time of ``grad_passes`` forward+backward passes w.r.t. the input and
    ``forward_passes`` forward passes of ``model`` on the batch ``x``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(grad_passes):
            xv = x.detach().requires_grad_(True)
            torch.autograd.grad(model(xv).sum(), xv)
        with torch.no_grad():
            for _ in range(forward_passes):
                model(x)
        best = min(best, time.perf_counter() - start)
    return best


def speed(model, x, y, repeats: int = 3) -> dict[str, dict[str, float]]:
    """Wall time / floor of DAG-10 and PGD-10 on the batch (every image runs every iteration)."""
    steps = 10
    contenders = {
        # passes: clean check, DAG's own start and end, the confirmation = 4 forward; 10 gradient
        "dag": (DAG(max_iter=steps), steps, 4),
        # clean check, final iterate, confirmation = 3 forward; 10 gradient
        "pgd": (PGD(Linf(eps=0.05), steps=steps, early_stop=False), steps, 3),
    }
    out = {}
    for name, (attack, grads, forwards) in contenders.items():
        wall = min(_time(lambda a=attack: a(model, x, y)) for _ in range(repeats))
        base = floor(model, x, grads, forwards, repeats)
        out[name] = {"seconds": wall, "floor_seconds": base, "ratio": wall / base}
    return out


def _relative(result: dict, clean: float, metric: str) -> dict[str, float]:
    """The attack's and its controls' ``metric`` as a fraction of the clean value."""
    out = {"attack": result["metrics"][metric] / clean}
    for control_name, metrics in result.get("control", {}).items():
        out[control_name] = metrics[metric] / clean
    return out


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--speed-batch", type=int, default=32)
    parser.add_argument("--task", choices=["segmentation", "detection"], default=None)
    parser.add_argument("--quick", action="store_true", help="20 scenes (as run_all.py --quick asks)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a loaded machine a second thread mostly spins)")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats of the speed timings")
    parser.add_argument("--out", default="tasks", help="results/<OUT>.json")
    parser.add_argument("--gamma", type=float, nargs="*", default=[0.5],
                        help="DAG step sizes in 0..255 pixel units; the paper's 0.5 always runs, others are extra rows")
    args, _ = parser.parse_known_args()
    if args.quick:
        args.n = 20
    torch.set_num_threads(args.threads)
    previous = RESULTS / f"{args.out}.json"
    results: dict[str, object] = json.loads(previous.read_text()) if args.task and previous.exists() else {}
    results.pop("environment", None)
    extra = {f"_gamma{g:g}": g for g in args.gamma if g != 0.5}  # the paper's 0.5 always runs
    seg_dags = {"dag_permute": DAG(), **{f"dag_permute{k}": DAG(gamma=g) for k, g in extra.items()},
                # every pixel to the background (class 0): the digits vanish, the background's IoU stays
                "dag_background": DAG(targets=0),
                **{f"dag_background{k}": DAG(targets=0, gamma=g) for k, g in extra.items()}}
    det_dags = {"dag_permute": DAG(), "dag_vanish": DAG(targets="vanish"),
                **{f"dag_vanish{k}": DAG(targets="vanish", gamma=g) for k, g in extra.items()}}
    for name, loader, data_name, dags in (
        ("segmentation", default_segmenter, "mnist-seg", seg_dags),
        ("detection", default_detector, "mnist-det", det_dags),
    ):
        if args.task not in (None, name):
            continue
        load_before = load_average()
        model, meta = loader()
        data = load_scenes(data_name, "test", args.n)
        task = resolve_task(None, model, data.y)
        y = task.labels(data.y, data.x)
        block: dict[str, object] = {"load_before": load_before, "n": args.n, "eps": args.eps, "threads": args.threads,
                                    "model": meta["arch"],
                                    "clean_test_400": meta["clean_metrics"], "clean": task_metrics(model, data.x, y)}
        for key, attack in dags.items():
            block[key] = attack_block(model, data.x, y, attack)
        block["pgd"] = attack_block(model, data.x, y, PGD(Linf(eps=args.eps), steps=20))
        main = "miou" if name == "segmentation" else "map"
        block["after_over_clean"] = {  # the goal: DAG below 0.1 of the clean value, its control near 1
            key: _relative(block[key], block["clean"][main], main) for key in (*dags, "pgd")
        }
        if name == "segmentation":
            xs, ys = data.x[: args.speed_batch], y[: args.speed_batch]
            outputs(model, xs)  # warm up
            block["speed"] = speed(model, xs, ys, args.repeats)
        block["load_after"] = load_average()
        results[name] = block
    print(write_results(args.out, results))


if __name__ == "__main__":
    main()
