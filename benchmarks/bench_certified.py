"""Certified defences on mnist-5k: robust accuracy as an interval, and what certifying costs.

1. **Randomized smoothing** (Cohen et al. 2019): ``mnist-cnn`` (width 16) trained with Gaussian noise
   at σ = 0.25 and 0.5 (the default model's recipe, noise added), smoothed at its σ. On ``--points``
   test points: certified accuracy (CERTIFY, ``n0 = 100``, ``n = --n``, α = 0.001) at l2 radius 0.5,
   1.0, 1.5 next to the attacked robust accuracy at the same l2 eps (l2 PGD, 20 steps, on the soft
   smoothed classifier over 32 fixed noise draws, its inputs judged by PREDICT with fresh noise:
   :mod:`advrobust.defences.interval`). Time per certified point and noisy samples per second.
2. **Column smoothing** (Levine & Feizi 2020): ``mnist-cnn`` on the 2-channel ablated encoding,
   trained on random bands of ``--band`` columns; certified accuracy against 5×5 patches next to the
   accuracy left by a 5×5 occlusion attack (ROA, Wu et al. 2020: gradient-guided position, PGD
   inside) on the soft vote, judged by the vote.
3. **Occlusion**: the default (standard) model, and the same fine-tuned for 2 epochs with PGD-AT
   (l∞ 0.3, 5 steps) or DOA (ROA 5×5 inside training, 5 candidates, 5 steps): a short training for
   a shared machine. Each against the 5×5 ROA attack and l∞ PGD-40 at 0.3, on the same points.

Trained models are cached (``~/.cache/advrobust/models/bench-certified-*``). The machine is shared:
``uptime`` is recorded with the results.

    .venv/bin/python benchmarks/bench_certified.py                  # n = 1000 on 100 points
    .venv/bin/python benchmarks/bench_certified.py --only train     # train (or load) the models

Writes ``benchmarks/results/certified.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

import torch
from common import RESULTS, write_results
from torch import nn

from advrobust.attacks.gradient import PGD
from advrobust.attacks.occlusion import ROA
from advrobust.data import load
from advrobust.defences import ABSTAIN, ColumnSmoothing, GaussianSmoothing, SoftSmoothed, certify_and_attack
from advrobust.defences.interval import default_attack
from advrobust.models import create
from advrobust.models.checkpoint import cached_checkpoint
from advrobust.runtime import RuntimePolicy
from advrobust.threat import Linf
from advrobust.training import create_method, fit
from advrobust.training.pretrained import default_model

RADII = [0.5, 1.0, 1.5]
PATCH = 5
#: the default model's recipe (advrobust.training.pretrained), for the models trained from scratch
RECIPE = {"epochs": 10, "batch_size": 64, "lr": 0.05, "optimizer": "sgd", "schedule": "cosine", "seed": 0}
#: the adversarial models: 2 epochs fine-tuning the default (standard) model, a short training for a
#: machine shared by many processes
FINE_TUNE = {"epochs": 2, "batch_size": 64, "lr": 0.01, "optimizer": "sgd", "schedule": "cosine", "seed": 0}
MODELS: dict[str, tuple[str, dict[str, Any], int, bool]] = {  # name -> (method, options, channels, fine-tune)
    "noise-0.25": ("gaussian-noise", {"sigma": 0.25}, 1, False),
    "noise-0.5": ("gaussian-noise", {"sigma": 0.5}, 1, False),
    "column-ablation": ("column-ablation", {"band": 4}, 2, False),
    "column-ablation-b2": ("column-ablation", {"band": 2}, 2, False),
    "pgd-at": ("pgd-at", {"eps": 0.3, "steps": 5}, 1, True),
    "doa": ("doa", {"size": PATCH, "steps": 5, "candidates": 5}, 1, True),
}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def trained(name: str) -> nn.Module:
    """The benchmark model ``name``: loaded from the cache, or trained and cached; ``standard`` is
    the default model."""
    if name == "standard":
        return default_model()[0].eval()
    method, options, channels, fine_tune = MODELS[name]
    recipe = FINE_TUNE if fine_tune else RECIPE
    spec = {"method": method, "options": options, "channels": channels, **recipe}
    if fine_tune:
        spec["fine_tune"] = True

    def train() -> tuple[nn.Module, dict]:
        model = default_model()[0] if fine_tune else create("mnist-cnn", 10, (channels, 28, 28), seed=0, width=16)
        start = time.perf_counter()
        fit(model, load("mnist-5k", split="train"), None, method=create_method(method, **options), **recipe,
            device="cpu")
        meta = {"arch": "mnist-cnn", "arch_kwargs": {"width": 16}, "num_classes": 10,
                "input_shape": [channels, 28, 28], "data": "mnist-5k",
                "training": {**spec, "seconds": time.perf_counter() - start, "uptime": uptime()}}
        return model, meta

    return cached_checkpoint(f"bench-certified-{name}", spec, train)[0]


def test_points(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified, seeded subset of the mnist-5k test split (as ``advrobust evaluate --n``)."""
    test = load("mnist-5k", split="test").subset(points, seed=0)
    return test.x, test.y


def forward_rows_per_second(model: nn.Module, rows: int = 1000) -> float:
    """The floor of certification: the base model's own forward throughput (no noise, no counting)
    through the same fast path, best of 3."""
    run = RuntimePolicy().runner(model)
    x = torch.rand(rows, 1, 28, 28)
    best = float("inf")
    with torch.no_grad():
        for _ in range(12):  # past the frozen-copy switch
            start = time.perf_counter()
            run(x)
            best = min(best, time.perf_counter() - start)
    return rows / best


def smoothing(sigma: float, points: int, n: int) -> dict[str, Any]:
    model = trained(f"noise-{sigma:g}")
    x, y = test_points(points)
    smoothed = GaussianSmoothing(model, sigma=sigma, n0=100, n=n, alpha=0.001)
    load_before = uptime()
    result = certify_and_attack(smoothed, x, y, RADII)
    cert = result.certificate
    return {
        **result.to_dict(),
        "certified_accuracy_by_radius": dict(zip(map(str, RADII), result.certified, strict=True)),
        "attacked_accuracy_by_eps": dict(zip(map(str, RADII), result.attacked, strict=True)),
        "base_forward_rows_per_second": forward_rows_per_second(model),
        "certify_seconds": cert.seconds,
        "uptime_before": load_before,
        "uptime_after": uptime(),
    }


class FixedDraws(SoftSmoothed):
    """The soft smoothed classifier over the same draws at every pass (common random numbers): the
    deterministic surrogate the interval's attack used before it went through EOT."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.reseed()
        return super().forward(x)


def objectives(sigma: float, eps: float, points: int, n: int) -> dict[str, Any]:
    """Which objective breaks the smoothed classifier best, for the same 32 noisy samples per PGD
    step: Salman et al.'s soft classifier over fresh draws (8 inside the log, EOT over 4 passes: the
    default), the same over 32 draws fixed once, and plain EOT (1 draw per pass, 32 passes: the
    expectation outside the log). Each x_adv is judged by PREDICT with fresh noise."""
    model = trained(f"noise-{sigma:g}")
    x, y = test_points(points)
    smoothed = GaussianSmoothing(model, sigma=sigma, n0=100, n=n, alpha=0.001)
    with torch.no_grad():
        correct = smoothed.predict(x, seed=1) == y
    variants = {"soft 8 fresh draws, eot 4": (SoftSmoothed(model, sigma, 8), 4),
                "soft 32 fixed draws": (FixedDraws(model, sigma, 32), 1),
                "plain EOT: 1 draw, eot 32": (SoftSmoothed(model, sigma, 1), 32)}
    out: dict[str, Any] = {"sigma": sigma, "eps": eps, "points": points, "uptime_before": uptime(),
                           "clean_accuracy_predict": float(correct.float().mean())}
    for name, (soft, eot) in variants.items():
        start = time.perf_counter()
        x_adv = default_attack(eps, eot=eot)(soft, x[correct], y[correct]).x_adv
        label = smoothed.predict(x_adv, seed=2)
        out[name] = {"broken": int(((label != ABSTAIN) & (label != y[correct])).sum()),
                     "abstained": int((label == ABSTAIN).sum()), "attacked": int(correct.sum()),
                     "seconds": time.perf_counter() - start}
    out["uptime_after"] = uptime()
    return out


def column(points: int, band: int) -> dict[str, Any]:
    model = trained("column-ablation" if band == 4 else f"column-ablation-b{band}")
    x, y = test_points(points)
    smoothed = ColumnSmoothing(model, band=band)
    load_before = uptime()
    cert = smoothed.certify(x, patch=PATCH)
    correct = cert.prediction == y
    start = time.perf_counter()
    attack = ROA(size=PATCH)
    x_adv = attack(smoothed.soft(), x, y).x_adv
    attacked = correct & (smoothed.predict(x_adv) == y)
    attack_seconds = time.perf_counter() - start
    x_exhaustive = ROA(size=PATCH, search="exhaustive", stride=2)(smoothed.soft(), x, y).x_adv
    worst = attacked & (smoothed.predict(x_exhaustive) == y)
    return {
        "band": band,
        "patch": PATCH,
        "points": points,
        "clean_accuracy": float(correct.float().mean()),
        "certified_accuracy": cert.certified_accuracy(y),
        "attacked_accuracy": float(attacked.float().mean()),
        "attacked_accuracy_worst_with_exhaustive_stride2": float(worst.float().mean()),
        "attack": f"ROA {PATCH}x{PATCH} (gradient-guided position, {attack.candidates} candidates, "
        f"{attack.steps} PGD steps of {attack.step_size}) on the soft vote, judged by the vote",
        "median_largest_certified_patch": float(cert.largest_patch.float().median()),
        "certify_seconds": cert.seconds,
        "seconds_per_certified_point": cert.seconds / points,
        "ablated_images_per_second": cert.samples_per_second,
        "attack_seconds": attack_seconds,
        "uptime_before": load_before,
        "uptime_after": uptime(),
    }


def occlusion(points: int) -> dict[str, Any]:
    """Standard vs PGD-AT vs DOA under the 5×5 ROA attack, and l∞ PGD at 0.3 as a cross-check."""
    x, y = test_points(points)
    out: dict[str, Any] = {"uptime_before": uptime(), "points": points}
    for name in ("standard", "pgd-at", "doa"):
        model = trained(name)
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        start = time.perf_counter()
        roa = ROA(size=PATCH)(model, x, y)
        roa_seconds = time.perf_counter() - start
        exhaustive = ROA(size=PATCH, search="exhaustive")(model, x, y)
        pgd = PGD(Linf(eps=0.3), steps=40)(model, x, y)
        out[name] = {
            "clean_accuracy": float(clean.float().mean()),
            "roa_robust_accuracy": float((clean & ~roa.success).float().mean()),
            "roa_exhaustive_robust_accuracy": float((clean & ~exhaustive.success).float().mean()),
            "roa_worst_case_robust_accuracy": float((clean & ~roa.success & ~exhaustive.success).float().mean()),
            "pgd_linf_0.3_robust_accuracy": float((clean & ~pgd.success).float().mean()),
            "roa_seconds": roa_seconds,
        }
    out["attack"] = (f"ROA {PATCH}x{PATCH}, 30 PGD steps of 0.1 inside the rectangle; position by the gradient "
                     "(10 candidates) or exhaustive (every position, gray rectangle); worst case of both")
    out["uptime_after"] = uptime()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--band", type=int, default=4)
    parser.add_argument("--models", nargs="*", default=None, help="with --only train: which models")
    parser.add_argument("--sigmas", nargs="*", type=float, default=[0.25, 0.5])
    parser.add_argument("--only", choices=["train", "smoothing", "objectives", "column", "occlusion"], default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.only == "train":
        for name in args.models or MODELS:
            trained(name)
        return
    settings = {"points": args.points, "n": args.n, "n0": 100, "alpha": 0.001, "band": args.band}
    if args.only in (None, "smoothing"):
        for sigma in args.sigmas:  # saved after each: a long run keeps what it finished
            save(f"smoothing.sigma={sigma:g}", smoothing(sigma, args.points, args.n), settings)
    if args.only in (None, "objectives"):
        save("objectives", objectives(0.25, 1.0, args.points, args.n), settings)
    if args.only in (None, "column"):
        save("column" if args.band == 4 else f"column-b{args.band}", column(args.points, args.band), settings)
    if args.only in (None, "occlusion"):
        save("occlusion", occlusion(args.points), settings)


def save(key: str, value: dict[str, Any], settings: dict[str, Any]) -> None:
    """Merge ``value`` under ``key`` (dotted: nested) into results/certified.json, read afresh, so
    that parts run in separate processes keep each other's numbers."""
    path = RESULTS / "certified.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results.pop("environment", None)
    *parents, last = key.split(".", 1) if key.startswith("smoothing.") else [key]
    node = results
    for parent in parents:
        node = node.setdefault(parent, {})
    node[last] = {**value, "settings": settings}
    write_results("certified", results)

if __name__ == "__main__":
    main()
