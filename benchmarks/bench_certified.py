"""Certified defences on mnist-5k: robust accuracy as an interval, and what certifying costs.

1. **Randomized smoothing** (Cohen et al. 2019): ``mnist-cnn`` (width 16) trained with Gaussian noise
   at σ = 0.25 and 0.5 (the default model's recipe, noise added), smoothed at its σ. On ``--points``
   test points: certified accuracy (CERTIFY, ``n0 = 100``, ``n = --n``, α = 0.001) at l2 radius 0.5,
   1.0, 1.5 next to the attacked robust accuracy at the same l2 eps (l2 PGD, 20 steps, on the soft
   smoothed classifier with 8 fresh noise draws per pass and EOT over 4 passes, its inputs judged by
   PREDICT with fresh noise: :mod:`advrobust.defences.interval`). Time per certified point and noisy
   samples per second. ``objectives``: that attack against the same over 32 fixed draws and plain EOT
   (1 draw per pass, 32 passes), at l2 1.0 and 1.5 for σ = 0.25.
2. **Column smoothing** (Levine & Feizi 2020): ``mnist-cnn`` on the 2-channel ablated encoding,
   trained on random bands of ``--band`` columns; certified accuracy against 5×5 patches next to the
   accuracy left by a 5×5 occlusion attack (ROA, Wu et al. 2020: gradient-guided position, PGD
   inside) on the vote (soft-vote gradient, the vote in the forward pass), judged by the vote.
   ``column-evaluate``: ``ar.evaluate`` on it, the patch threat at sides 1, 2, 3, 5 on half the points.
3. **Adaptive attacker**: the default (standard) model, and the same fine-tuned with PGD-AT (l∞ 0.3,
   5 steps, 2 epochs; and 7 steps, 6 epochs with an eps warm-up) or DOA (ROA 5×5 inside training, 5
   candidates, 5 steps, 2 epochs): short trainings for a shared machine. Each against the 5×5 ROA it
   was (or was not) trained against, a per-image 5×5 patch optimized with EOT over the physical
   transformations, a universal patch (Brown et al. 2017) trained over placements and
   transformations, and the ``standard`` suite at l∞ 0.3, on the same points.

Trained models are cached (``~/.cache/advrobust/models/bench-certified-*``). The machine is shared:
``uptime`` is recorded with the results.

    .venv/bin/python benchmarks/bench_certified.py                  # n = 1000 on 100 points
    .venv/bin/python benchmarks/bench_certified.py --only train     # train (or load) the models
    .venv/bin/python benchmarks/bench_certified.py --only adaptive  # one part: smoothing, objectives, ...

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
from advrobust.attacks.patch import UniversalPatch
from advrobust.data import load
from advrobust.defences import (
    ABSTAIN,
    ColumnSmoothing,
    GaussianSmoothing,
    SoftSmoothed,
    certify_and_attack,
    certify_and_attack_patches,
)
from advrobust.defences.interval import default_attack
from advrobust.evaluation import evaluate
from advrobust.evaluation.physical import perturbation_success, texture_success
from advrobust.masked import Masked
from advrobust.masks import rectangle
from advrobust.models import create
from advrobust.models.checkpoint import cached_checkpoint
from advrobust.runtime import RuntimePolicy
from advrobust.threat import Linf
from advrobust.training import create_method, fit
from advrobust.training.pretrained import default_model
from advrobust.transforms import physical
from advrobust.transforms.model import TransformedModel

RADII = [0.5, 1.0, 1.5]
PATCH = 5
#: the universal patch of the adaptive comparison: 10% of the image on the digit's central 70%×70%
AREA, REGION = 0.1, (0.15, 0.15, 0.85, 0.85)
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
    "pgd-at-6": ("pgd-at", {"eps": 0.3, "steps": 7, "warmup": 0.3}, 1, True),
    "doa": ("doa", {"size": PATCH, "steps": 5, "candidates": 5}, 1, True),
}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


#: epochs of a fine-tuning model when not FINE_TUNE's 2: PGD-AT at l∞ 0.3 keeps only ~57% clean accuracy
#: after 2 epochs, so a longer run with an eps warm-up is compared too
EPOCHS = {"pgd-at-6": 6}


def trained(name: str) -> nn.Module:
    """The benchmark model ``name``: loaded from the cache, or trained and cached; ``standard`` is
    the default model."""
    if name == "standard":
        return default_model()[0].eval()
    method, options, channels, fine_tune = MODELS[name]
    recipe = {**(FINE_TUNE if fine_tune else RECIPE), **({"epochs": EPOCHS[name]} if name in EPOCHS else {})}
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
    result = certify_and_attack_patches(smoothed, x, y, [PATCH])
    cert = result.certificate
    exhaustive = certify_and_attack_patches(
        smoothed, x, y, [PATCH], attack=lambda m: ROA(size=m, search="exhaustive", stride=2))
    worst = (cert.prediction == y) & ~result.broken[0] & ~exhaustive.broken[0]
    return {
        "band": band,
        "patch": PATCH,
        "points": points,
        "clean_accuracy": result.clean_accuracy,
        "certified_accuracy": result.certified[0],
        "attacked_accuracy": result.attacked[0],
        "attacked_accuracy_exhaustive_stride2": exhaustive.attacked[0],
        "attacked_accuracy_worst_of_both": float(worst.float().mean()),
        "attack": result.attack,
        "median_largest_certified_patch": float(cert.largest_patch.float().median()),
        "certify_seconds": cert.seconds,
        "seconds_per_certified_point": cert.seconds / points,
        "ablated_images_per_second": cert.samples_per_second,
        "attack_seconds": result.seconds["attack"],
        "uptime_before": load_before,
        "uptime_after": uptime(),
    }


def column_evaluate(points: int, band: int, sizes: list[int]) -> dict[str, Any]:
    """``ar.evaluate`` on the column-smoothed model: the patch threat's interval at several sizes."""
    model = trained("column-ablation" if band == 4 else f"column-ablation-b{band}")
    x, y = test_points(points)
    load_before = uptime()
    result = evaluate(ColumnSmoothing(model, band=band), x, y, epsilons=sizes)
    return {
        "band": band, "points": points, "threat": result.threat, "clean_accuracy": result.clean_accuracy,
        "certified_accuracy": {f"{e:g}": a for e, a in (result.certified_accuracy or {}).items()},
        "attacked_accuracy": {f"{e:g}": a for e, a in result.robust_accuracy.items()},
        "seconds": result.seconds, "uptime_before": load_before, "uptime_after": uptime(),
    }


ADAPTIVE_MODELS = ("standard", "pgd-at", "pgd-at-6", "doa")


def adaptive(points: int, steps: int, draws: int, names: tuple[str, ...] = ADAPTIVE_MODELS) -> dict[str, Any]:
    """Standard vs PGD-AT vs DOA against an adaptive attacker, on the same points: the attack DOA
    trains against (5×5 ROA, gradient-guided and exhaustive), patch attacks it did not see (a
    per-image 5×5 patch at the digit's centre optimized with EOT over the physical transformations,
    and a universal untargeted patch trained over placements and transformations, Brown et al.
    2017), and the ``standard`` suite at l∞ 0.3 (APGD-CE, APGD-T, FMN, Square)."""
    x, y = test_points(points)
    train = load("mnist-5k", split="train")
    out: dict[str, Any] = {"uptime_before": uptime(), "points": points}
    centre = Masked(rectangle((28, 28), (11.5, 11.5, 16.5, 16.5)))  # 5×5 pixels, any values
    scene = physical()
    for name in names:
        model = trained(name)
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        start = time.perf_counter()
        roa = ROA(size=PATCH)(model, x, y)
        roa_seconds = time.perf_counter() - start
        exhaustive = ROA(size=PATCH, search="exhaustive")(model, x, y)
        roa_physical = perturbation_success(model, x[clean], roa.x_adv[clean], y[clean], transform=scene,
                                            n_draws=draws, name="roa 5x5")
        start = time.perf_counter()
        eot = PGD(centre, steps=steps, eot=8)(TransformedModel(model, scene), x[clean], y[clean])
        eot_seconds = time.perf_counter() - start
        eot_physical = perturbation_success(model, x[clean], eot.x_adv, y[clean], transform=scene, n_draws=draws,
                                            name="centre 5x5, pgd eot 8")
        start = time.perf_counter()
        patch = UniversalPatch(AREA, region=REGION, steps=steps, batch_size=64, lr=0.1, loss="margin").fit(
            model, train.x, train.y)
        patch_seconds = time.perf_counter() - start
        universal = texture_success(model, patch, x[clean], y[clean], transform=scene, n_draws=draws)
        suite = evaluate(model, x, y, threat=Linf(eps=0.3), suite="standard")
        out[name] = {
            "clean_accuracy": float(clean.float().mean()),
            "roa_robust_accuracy": float((clean & ~roa.success).float().mean()),
            "roa_exhaustive_robust_accuracy": float((clean & ~exhaustive.success).float().mean()),
            "roa_worst_case_robust_accuracy": float((clean & ~roa.success & ~exhaustive.success).float().mean()),
            "roa_seconds": roa_seconds,
            "roa_physical_success": _physical(roa_physical),
            "centre_patch_eot_physical_success": {**_physical(eot_physical), "attack_seconds": eot_seconds},
            "universal_patch_success": {**_physical(universal), "train_seconds": patch_seconds},
            "standard_linf_0.3_robust_accuracy": suite.robust_accuracy[0.3],
            "standard_linf_0.3_by_attack": {r.attack: r.robust_accuracy for r in suite.per_attack},
            "standard_seconds": suite.seconds,
        }
    out["attacks"] = {
        "roa": f"ROA {PATCH}x{PATCH}, 30 PGD steps of 0.1 inside the rectangle; position by the gradient (10 "
        "candidates) or exhaustive (every position, gray rectangle); worst case of both; its x_adv also "
        f"judged under {draws} fresh physical transformations (success rate over image × draw pairs)",
        "centre_patch_eot": f"PGD, {steps} steps, on a centred 5x5 square (any values) of the model seen through "
        f"the physical transformations, eot=8 per step; success under {draws} fresh transformations",
        "universal_patch": f"universal untargeted patch, {AREA:.0%} of the image, scale 0.8-1, rotation ±20°, "
        f"anywhere on the central 70%, {steps} Adam steps of 64 train images under the physical transformations, "
        f"margin loss; success digitally (centred) and under {draws} fresh placements and transformations",
        "standard": "advrobust evaluate's standard suite at l∞ 0.3 (APGD-CE 5 restarts, APGD-T, FMN, Square)",
    }
    out["uptime_after"] = uptime()
    return out


def _physical(result: Any) -> dict[str, float]:
    """The success rates of a physical evaluation: digital, under fresh transformations, and the
    transformations' own effect on the clean images (baseline)."""
    return {"digital": result.digital, "physical": result.physical, "baseline": result.baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--band", type=int, default=4)
    parser.add_argument("--patch-steps", type=int, default=300, help="steps of the patch attacks (adaptive)")
    parser.add_argument("--draws", type=int, default=20, help="fresh transformations per image (adaptive)")
    parser.add_argument("--models", nargs="*", default=None, help="with --only train: which models")
    parser.add_argument("--sigmas", nargs="*", type=float, default=[0.25, 0.5])
    parser.add_argument("--only", default=None,
                        choices=["train", "smoothing", "objectives", "column", "column-evaluate", "adaptive"])
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
        for eps in (1.0, 1.5):
            save(f"objectives.eps={eps:g}", objectives(0.25, eps, args.points, args.n), settings)
    if args.only in (None, "column"):
        save("column" if args.band == 4 else f"column-b{args.band}", column(args.points, args.band), settings)
    if args.only in (None, "column-evaluate"):
        save("column-evaluate", column_evaluate(args.points // 2, args.band, [1, 2, 3, 5]), settings)
    if args.only in (None, "adaptive"):
        save("adaptive", adaptive(args.points, args.patch_steps, args.draws), settings)


def save(key: str, value: dict[str, Any], settings: dict[str, Any]) -> None:
    """Merge ``value`` under ``key`` (dotted: nested) into results/certified.json, read afresh, so
    that parts run in separate processes keep each other's numbers."""
    path = RESULTS / "certified.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results.pop("environment", None)
    *parents, last = key.split(".", 1) if key.startswith(("smoothing.", "objectives.")) else [key]
    node = results
    for parent in parents:
        node = node.setdefault(parent, {})
    node[last] = {**value, "settings": settings}
    write_results("certified", results)

if __name__ == "__main__":
    main()
