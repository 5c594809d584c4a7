"""Physical attacks on the default MNIST CNN: universal targeted patches of 10, 15 and 20% of the
image against random patches of the same sizes, per-image attacks (digital PGD, a masked PGD),
digital vs physical success, and the speed of patch training as a ratio to its forward+backward floor.

The scene distribution is :func:`advrobust.transforms.printed_digit` (print gamut, colour, lighting,
blur, noise, and a pose change of rotation ±10°, scale ±0.05, translation ±0.03, perspective 0.05):
the model keeps most of its clean accuracy under it (measured and written below, next to the same
number under :func:`advrobust.transforms.physical`, whose ±10% translation alone costs it ~20 points).

* universal patches: squares of ``AREAS`` of the image at scale 1 (scale 0.9–1, rotation ±10°,
  anywhere on the central 60%×60%), targeted to class 8, trained with Adam (lr 0.1, cross-entropy of
  the target, batches of 64) on the train split of mnist-5k under the scene distribution; evaluated
  on 200 held-out test digits under 50 fresh placements and transformations each, next to a random
  patch of the same size;
* the digital ceiling of a 10% patch: centred, no rotation, no transformation (what the optimizer
  reaches when nothing moves), for several learning rates, the margin loss, another seed, batches of
  256 and 3× the steps (:func:`optimiser_sweep`);
* the 10% patch of the headline setting for every target class 0–9, each next to a random patch
  (:func:`every_target`, half the draws);
* per-image attacks on the correctly classified non-8 test digits, PGD with 100 steps: l∞ 0.3
  untargeted and targeted to 8, and a masked PGD targeted to 8 (a centred 9×9 square, 10.3%, any
  values); their success digitally and under 50 fresh transformations, and the transformations' own
  effect (baseline);
* success against transformation strength (0, 0.25, 0.5, 0.75, 1 × the ranges);
* with ``--stickers-only`` instead (``physical_stickers.json``): RP2 stickers of 10% of the image
  (:func:`advrobust.attacks.sticker_mask.sticker_mask`, then a ``UniversalMask`` texture) for every
  target class, next to random textures in the same sticker (:func:`stickers`);
* speed: ``SPEED_STEPS`` steps of patch training interleaved with floors (as many forward+backward
  passes of the model on batches of the same size), in CPU seconds on one thread (see :func:`speed`);
  with ``--speed-only --faces`` also on face-api's recognizer (:func:`face_speed`).

300 steps, 200 digits and 50 draws keep a run under ~30 minutes on a loaded 2-core machine; --quick:
100 steps, 100 digits, 20 draws; --speed-only: the speed alone (``physical_speed.json``).

    .venv/bin/python benchmarks/bench_physical.py [--quick | --speed-only [--faces] | --stickers-only]

Writes ``benchmarks/results/physical.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.attacks.patch import UniversalMask, UniversalPatch  # noqa: E402
from advrobust.attacks.sticker_mask import sticker_mask  # noqa: E402
from advrobust.data import load  # noqa: E402
from advrobust.evaluation.physical import accuracy_under, perturbation_success, texture_success  # noqa: E402
from advrobust.masked import Masked  # noqa: E402
from advrobust.masks import rectangle  # noqa: E402
from advrobust.runtime import RuntimePolicy  # noqa: E402
from advrobust.tasks import resolve_task  # noqa: E402
from advrobust.training.pretrained import default_model  # noqa: E402
from advrobust.transforms import Identity, physical, printed_digit  # noqa: E402

TARGET = 8
AREAS = (0.1, 0.15, 0.2)
REGION = (0.2, 0.2, 0.8, 0.8)
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SPEED_STEPS = 40


def speed(model, x, y, transform, target: int | None = TARGET, steps: int = SPEED_STEPS, batch: int = 64,
          task: str = "classification", region: tuple[float, float, float, float] = REGION) -> dict:
    """Patch training (a 10% patch, ``steps`` steps of ``batch`` images of ``x``) against its floor
    (the ``task``'s cross-entropy objective's forward and backward pass on a batch of the same size,
    with the model run as patch training runs it: the runtime's CPU fast path), in CPU seconds of
    this process on one thread (``time.process_time``). Two ratios:

    * ``step_ratio_to_floor``: a training step against a floor pass, each step followed by one
      floor pass (run from the training's callback and left out of the step's time), the median of
      each over three trainings. A neighbour that slows the machine slows both alike: blocks of 40
      floor passes timed apart from the training moved this ratio by ±0.15 from run to run. It is
      what each further step costs, the ratio a training of the default 500 steps approaches;
    * ``ratio_to_floor``: a whole training of ``steps`` steps (choosing the images to attack and
      checking the fast path included) against ``steps`` floor passes in a block, interleaved
      (floor, training, floor, training, floor, training, floor), the minimum of each.
    """
    attack = UniversalPatch(0.1, region=region, scale_min=0.9, rotation=10, transform=transform,
                            steps=steps, batch_size=batch, lr=0.1)
    the_task = resolve_task(task)
    objective = the_task.objective("ce")
    xb, yb = x[:batch], the_task.labels(y, x)[:batch]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    runner = RuntimePolicy().runner(model)  # as patch training runs the model (the CPU fast path)

    def floor_pass() -> None:
        xv = xb.detach().requires_grad_(True)
        torch.autograd.grad(objective(runner.forward(xv), yb, None).sum(), xv)

    def floor() -> float:
        start = time.process_time()
        for _ in range(steps):
            floor_pass()
        return time.process_time() - start

    def train_patch() -> float:
        start = time.process_time()
        attack.fit(model, x, y, target=target, task=the_task)
        return time.process_time() - start

    def steps_and_passes() -> tuple[list[float], list[float]]:
        """One training with a floor pass after each step: the steps' and the passes' times."""
        marks: list[tuple[float, float]] = []  # (the step's end, the floor pass's end)

        def after_step(*_) -> None:
            ended = time.process_time()
            floor_pass()
            marks.append((ended, time.process_time()))

        attack.fit(model, x, y, target=target, task=the_task, callback=after_step)
        return [marks[i + 1][0] - marks[i][1] for i in range(len(marks) - 1)], [b - a for a, b in marks]

    floors, trainings = [floor()], []
    for _ in range(3):
        trainings.append(train_patch())
        floors.append(floor())
    step_times, pass_times = [], []
    for _ in range(3):
        s, p = steps_and_passes()
        step_times += s
        pass_times += p
    parts = breakdown(model, xb, transform, attack, steps)
    torch.set_num_threads(threads)
    return {"train_cpu_s": trainings, "floor_cpu_s": floors, "ratio_to_floor": min(trainings) / min(floors),
            "step_cpu_s": statistics.median(step_times), "floor_pass_cpu_s": statistics.median(pass_times),
            "step_ratio_to_floor": statistics.median(step_times) / statistics.median(pass_times),
            "passes": steps, "batch": batch, "image": list(x.shape[1:]), "threads": 1,
            "load_average": os.getloadavg(), "breakdown_cpu_s": parts}


def face_speed() -> dict:
    """The same ratio next to a model ~100× costlier per image: face-api's recognizer (150×150 RGB
    crops of the demo faces, needs ``advrobust data download faces``) as a same/different classifier
    against the first face, an untargeted (dodging) patch under :func:`advrobust.transforms.physical`."""
    from advrobust.faces import FacePipeline
    from advrobust.faces.adapters import VerificationClassifier

    pipeline = FacePipeline.load()
    faces = pipeline.demo_faces()
    model = VerificationClassifier(pipeline.recognizer, faces[0].descriptor, pipeline.threshold).eval()
    crops = torch.stack([f.crop for f in faces])
    with torch.no_grad():
        labels = model(crops).argmax(1)
    return speed(model, crops, labels, physical(), target=None, steps=12, batch=8)


def breakdown(model, xb, transform, attack, steps: int) -> dict:
    """Where a training step's time goes beyond the floor: ``steps`` steps (draw, forward, and
    backward to the patch or the image) of the patch's placement and paste alone, of each part of
    the transformation alone, and of the model alone; the best of two, in CPU seconds."""
    placement = attack.placement
    texture = torch.rand(*placement.texture_shape(tuple(xb.shape[1:]))).requires_grad_(True)
    generator, index = torch.Generator().manual_seed(0), torch.arange(xb.shape[0])

    def paste() -> None:
        with torch.no_grad():
            params = placement.sample(xb, index, generator)
        torch.autograd.grad(placement.paste(xb, texture, params).sum(), texture)

    def part(t) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                params = t.sample(xb, generator)
            xv = xb.clone().requires_grad_(True)
            torch.autograd.grad(t.apply(xv, params).sum(), xv)
        return run

    runner = RuntimePolicy().runner(model)

    def model_pass() -> None:
        xv = xb.clone().requires_grad_(True)
        torch.autograd.grad(runner.forward(xv).sum(), xv)

    def best(fn) -> float:
        times = []
        for _ in range(2):
            start = time.process_time()
            for _ in range(steps):
                fn()
            times.append(time.process_time() - start)
        return min(times)

    with torch.enable_grad():
        out = {"model": best(model_pass), "placement_and_paste": best(paste)}
        for t in getattr(transform, "transforms", (transform,)):
            out[type(t).__name__] = best(part(t))
    return out


def optimiser_sweep(model, train, test, steps: int) -> dict:
    """The digital ceiling of a 10% patch — centred, scale 1, no rotation, no transformation, on the
    held-out digits — for several optimizers, losses, step counts and batches: does the optimization,
    rather than the model, limit the patch?"""
    variants = {
        "adam lr 0.1, ce": {},
        "adam lr 0.05, ce (default)": {"lr": 0.05},
        "adam lr 0.01, ce": {"lr": 0.01},
        "adam lr 0.1, margin": {"loss": "margin"},
        "adam lr 0.1, ce, seed 1": {"seed": 1},
        "adam lr 0.1, ce, batch 256": {"batch_size": 256},
        "adam lr 0.03, ce, 3x steps": {"lr": 0.03, "steps": 3 * steps},
    }
    out = {}
    for name, kw in variants.items():
        settings = {"steps": steps, "batch_size": 64, "lr": 0.1, **kw}
        patch = UniversalPatch(0.1, region=(0.3, 0.3, 0.7, 0.7), scale_min=1.0, rotation=0.0, transform=Identity(),
                               **settings).fit(model, train.x, train.y, target=TARGET)
        r = texture_success(model, patch, test.x, test.y, transform=Identity(), n_draws=1, name=name)
        out[name] = {"digital": r.digital, "n_points": r.n_points, **settings}
    return out


def every_target(model, train, test, scene, steps: int, draws: int, headline) -> dict:
    """The 10% patch of the headline setting trained for every target class (the headline target's
    patch reused), its physical success on ``draws`` fresh draws per held-out digit, and a random
    patch's."""
    out = {}
    for target in range(10):
        attack = UniversalPatch(0.1, region=REGION, scale_min=0.9, rotation=10, transform=scene, steps=steps,
                                batch_size=64, lr=0.1)
        patch = headline if target == TARGET else attack.fit(model, train.x, train.y, target=target)
        control = replace(patch, texture=torch.rand(patch.texture.shape, generator=torch.Generator().manual_seed(5)))
        row = {}
        for key, tex in (("patch", patch), ("control", control)):
            r = texture_success(model, tex, test.x, test.y, transform=scene, n_draws=draws, name=f"target {target}")
            row[key] = {"digital": r.digital, "physical": r.physical, "baseline": r.baseline}
        out[target] = {**row["patch"], "control_physical": row["control"]["physical"], "n_points": r.n_points,
                       "n_draws": draws}
    return out


def stickers(model, train, test, scene, steps: int, draws: int, controls: int = 3) -> dict:
    """RP2 stickers covering 10% of the image (:func:`~advrobust.attacks.sticker_mask.sticker_mask`
    under the scene distribution, then a :class:`~advrobust.attacks.patch.UniversalMask` texture in it,
    ``steps`` steps each), for every target class: digital and physical success on ``draws`` fresh
    draws per held-out digit, next to ``controls`` random textures in the same mask (mean and max)."""
    out = {}
    for target in range(10):
        start = time.process_time()
        mask = sticker_mask(model, train.x, train.y, target, area=0.1, transform=scene, steps=steps)
        sticker = UniversalMask(mask, transform=scene, steps=steps, batch_size=64, lr=0.1).fit(
            model, train.x, train.y, target=target)
        cpu = time.process_time() - start
        r = texture_success(model, sticker, test.x, test.y, transform=scene, n_draws=draws, name=f"target {target}")
        noises = [torch.rand(sticker.texture.shape, generator=torch.Generator().manual_seed(5 + i))
                  for i in range(controls)]
        random = [texture_success(model, replace(sticker, texture=noise), test.x, test.y, transform=scene,
                                  n_draws=draws).physical for noise in noises]
        out[target] = {"digital": r.digital, "physical": r.physical, "baseline": r.baseline,
                       "control_physical_mean": sum(random) / controls, "control_physical_max": max(random),
                       "mask_pixels": int(mask.sum()), "train_cpu_s": cpu, "n_points": r.n_points, "n_draws": draws}
        print(f"sticker target {target}: digital {r.digital:.3f} physical {r.physical:.3f} "
              f"random texture in its mask {sum(random) / controls:.3f} (max {max(random):.3f})", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, points and draws")
    parser.add_argument("--speed-only", action="store_true", help="only the speed measurement (physical_speed.json)")
    parser.add_argument("--faces", action="store_true", help="with --speed-only: also on the face recognizer")
    parser.add_argument("--stickers-only", action="store_true",
                        help="only the RP2 stickers of every target (physical_stickers.json)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    steps, n_test, draws = (100, 100, 20) if args.quick else (300, 200, 50)
    model, _ = default_model()
    model.eval()
    train, test = load("mnist-5k", split="train"), load("mnist-5k", split="test").subset(n_test, seed=1)
    scene = printed_digit()
    load_before = os.getloadavg()
    if args.speed_only:
        sp = speed(model, train.x, train.y, scene)
        print(f"patch training / floor (CPU time): {sp['ratio_to_floor']:.2f} whole, {sp['step_ratio_to_floor']:.2f} "
              "a step", flush=True)
        faces = face_speed() if args.faces else None
        write_results("physical_speed", {"speed": sp, "transform": scene.describe(), "load_before": load_before,
                                         "faces": faces})
        if faces:
            print(f"face recognizer: patch training / floor (CPU time): {faces['ratio_to_floor']:.2f} whole, "
                  f"{faces['step_ratio_to_floor']:.2f} a step")
        return
    if args.stickers_only:
        rows = stickers(model, train, test, scene, steps, draws)
        write_results("physical_stickers", {"stickers": rows, "transform": scene.describe(), "steps": steps,
                                            "n_test": n_test, "load_average": {"before": load_before,
                                                                               "after": os.getloadavg()}})
        return
    as_is, printed = accuracy_under(model, test.x, test.y, scene, n_draws=10, seed=3)
    accuracy = {"clean": as_is, "printed_digit": printed,
                "physical": accuracy_under(model, test.x, test.y, physical(), n_draws=10, seed=3)[1]}
    print("clean accuracy", accuracy, flush=True)

    results: dict[str, dict] = {}
    optimisers = optimiser_sweep(model, train, test, steps)
    print("optimisers", {k: v["digital"] for k, v in optimisers.items()}, flush=True)

    patches = {}
    for area in AREAS:
        attack = UniversalPatch(area, region=REGION, scale_min=0.9, rotation=10, transform=scene, steps=steps,
                                batch_size=64, lr=0.1)
        start = time.perf_counter()
        patch = attack.fit(model, train.x, train.y, target=TARGET)
        seconds = time.perf_counter() - start
        patches[area] = patch
        noise = torch.rand(patch.texture.shape, generator=torch.Generator().manual_seed(5))
        control = replace(patch, texture=noise, history=[])
        for name, tex in ((f"{area:.0%} universal patch", patch), (f"{area:.0%} random patch (control)", control)):
            r = texture_success(model, tex, test.x, test.y, transform=scene, n_draws=draws, strengths=STRENGTHS,
                                curve_draws=10, name=name)
            results[name] = {**{k: v for k, v in r.to_dict().items() if k != "per_point"},
                             "nps": tex.nps, "tv": tex.tv, "train_s": seconds if tex is patch else 0.0}
            print(name, f"digital {r.digital:.3f} physical {r.physical:.3f}", flush=True)

    targets = every_target(model, train, test, scene, steps, max(10, draws // 2), patches[0.1])
    print("targets", {t: round(v["physical"], 3) for t, v in targets.items()}, flush=True)

    with torch.no_grad():
        keep = (model(test.x).argmax(1) == test.y) & (test.y != TARGET)
    x, y = test.x[keep], test.y[keep]
    goal = torch.full_like(y, TARGET)
    square = Masked(rectangle((28, 28), (9.5, 9.5, 18.5, 18.5)))  # 81 pixels, 10.3%
    for name, threat, target in (("pgd linf 0.3, untargeted", ar.Linf(0.3), None),
                                 (f"pgd linf 0.3, target {TARGET}", ar.Linf(0.3), goal),
                                 (f"masked pgd 9x9 centre, target {TARGET}", square, goal)):
        start = time.perf_counter()
        res = ar.attacks.PGD(threat, steps=100)(model, x, y, target)
        seconds = time.perf_counter() - start
        r = perturbation_success(model, x, res.x_adv, y, target, transform=scene, n_draws=draws,
                                 strengths=STRENGTHS, curve_draws=10, name=name)
        results[name] = {**{k: v for k, v in r.to_dict().items() if k != "per_point"}, "attack_s": seconds}
        print(name, flush=True)

    out = {
        "target": TARGET,
        "areas": AREAS,
        "region": REGION,
        "placement": {"scale_min": 0.9, "rotation": 10},
        "transform": scene.describe(),
        "steps": steps,
        "n_test": n_test,
        "n_draws": draws,
        "clean_accuracy": accuracy,
        "optimisers_centred_digital": optimisers,
        "targets_10pct": targets,
        "speed": speed(model, train.x, train.y, scene),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "results": results,
    }
    path = write_results("physical" if not args.quick else "physical_quick", out)
    for name, r in results.items():
        print(f"{name:40s} digital {r['digital']:.1%}  physical {r['physical']:.1%}  baseline {r['baseline']:.1%}")
    sp = out["speed"]
    print(f"patch training / floor (CPU time): {sp['ratio_to_floor']:.2f} whole, "
          f"{sp['step_ratio_to_floor']:.2f} a step; wrote {path}")


if __name__ == "__main__":
    main()
