"""Physical patches against the built-in segmenter and detector (the mnist-seg / mnist-det scenes):
what a universal patch of 10% of the scene does to mIoU and mAP under fresh transformations, next to
random patches of the same size, the transformations alone and a digital PGD perturbation.

Every setting trains one square patch (Brown et al. 2017) at a random place of the whole scene
(scale 0.9–1, rotation ±10°) for ``STEPS`` Adam steps (lr 0.05, cross-entropy through the task's
objective, batches of 32) on 2,000 training scenes under the scene distribution, and evaluates it on
``N_TEST`` held-out scenes under ``DRAWS`` fresh placements and transformations each. Labels follow
every draw (a segmenter's pixels under the patch are not counted, a box more than half under it is
dropped, labels move with the pose). Controls: ``CONTROLS`` random textures in the same placements,
and the transformations alone; a per-image PGD (l∞ 0.3, 40 steps, the same goal) shows what a
digital perturbation keeps. Then patch training's speed against its forward+backward floor
(:func:`bench_physical.speed`, CPU time on one thread).

Scene distributions: the segmenter under :func:`advrobust.transforms.printed_digit` (it keeps 0.77
of its 0.90 mIoU); the detector under ``printed_digit(0.5)``, because under the full ranges its mAP
falls from 0.89 to 0.35 by the transformations alone (it was trained without augmentation) and a
patch would be measured on what is left.

With ``--losses-only``: the untargeted segmenter patch trained with cross-entropy and with the
margin loss, otherwise alike (``physical_tasks_losses.json``; the CLI's default objective for dense
tasks follows it). With ``--eot-only``: per-image PGD (40 steps, 40 test scenes) on the segmenter (l∞ 0.1 and 0.2,
under ``printed_digit()``) and on the detector (l∞ 0.05 and 0.1, under ``printed_digit(0.5)``),
plain and through ``TransformedModel(model, scene, draws=4)`` (EOT: each draw's output brought back
over the input, a detector's boxes with it), both measured under 10 fresh draws (:func:`eot_comparison`),
after what the pull-back keeps of one draw's outputs (:func:`pull_back_fidelity`). With
``--stickers-only``: the four settings with an RP2 sticker of 10% of the scene instead of the square
(its shape found by :func:`~advrobust.attacks.sticker_mask.sticker_mask` in as many steps, then its
texture; it stays where it was found and moves with the scene).

    .venv/bin/python benchmarks/bench_physical_tasks.py [--quick | --speed-only | --eot-only | --stickers-only]

Writes ``benchmarks/results/physical_tasks.json`` (``--speed-only``: ``physical_tasks_speed.json``,
the speed measured three times per model, as the machine's load moves the floor by up to 40%;
``--eot-only``: ``physical_tasks_eot.json``; ``--stickers-only``: ``physical_tasks_stickers.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_physical import speed  # noqa: E402
from common import write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.attacks.patch import UniversalMask, UniversalPatch  # noqa: E402
from advrobust.attacks.sticker_mask import sticker_mask  # noqa: E402
from advrobust.data.scenes import load_scenes  # noqa: E402
from advrobust.evaluation.physical import perturbation_success, texture_success  # noqa: E402
from advrobust.tasks import resolve_task  # noqa: E402
from advrobust.training.dense import default_detector, default_segmenter  # noqa: E402
from advrobust.transforms import printed_digit  # noqa: E402
from advrobust.transforms.model import TransformedModel  # noqa: E402

STEPS, N_TRAIN, N_TEST, DRAWS, CONTROLS = 300, 2000, 100, 20, 3
# (task, target, scene strength): untargeted and "every pixel to the background" / "vanish"
SETTINGS = (("segmentation", None, 1.0), ("segmentation", 0, 1.0), ("detection", None, 0.5), ("detection", 0, 0.5))


def setting(task_name: str, target: int | None, strength: float, steps: int, n_test: int, draws: int,
            loss: str = "ce", shape: str = "square") -> dict:
    model, meta = (default_segmenter if task_name == "segmentation" else default_detector)()
    data = "mnist-seg" if task_name == "segmentation" else "mnist-det"
    train, test = load_scenes(data, "train", N_TRAIN), load_scenes(data, "test", n_test)
    task = resolve_task(task_name)
    scene = printed_digit(strength)
    options = {"transform": scene, "steps": steps, "batch_size": 32, "lr": 0.05, "loss": loss}
    start = time.process_time()
    if shape == "sticker":  # RP2: the shape first (as many steps), then the texture in it
        mask = sticker_mask(model, train.x, train.y, target, area=0.1, transform=scene, steps=steps, batch_size=32,
                            task=task)
        attack = UniversalMask(mask, **options)
    else:
        attack = UniversalPatch(0.1, scale_min=0.9, rotation=10, **options)
    patch = attack.fit(model, train.x, train.y, target, task=task)
    train_s = time.process_time() - start
    trained = texture_success(model, patch, test.x, test.y, transform=scene, n_draws=draws)
    controls = [texture_success(model, replace(patch, texture=torch.rand(patch.texture.shape,
                                                                       generator=torch.Generator().manual_seed(k))),
                                test.x, test.y, transform=scene, n_draws=draws, name=f"random {k}")
                for k in range(1, CONTROLS + 1)]
    y = task.labels(test.y, test.x)
    goal = None if target is None else task.class_target(target, y)
    pgd = ar.attacks.PGD(ar.Linf(0.3), steps=40)(model, test.x, y, goal, task=task)
    digital = perturbation_success(model, test.x, pgd.x_adv, y, target, transform=scene, n_draws=draws, task=task,
                                   name="PGD l∞ 0.3")
    return {"task": task_name, "target": target, "shape": shape, "loss": loss, "transform": scene.describe(),
            "strength": strength,
            "train_cpu_s": train_s, "steps": steps, "nps": patch.nps, "tv": patch.tv,
            "patch": trained.to_dict() | {"per_point": None},
            "random": [c.to_dict() | {"per_point": None} for c in controls],
            "pgd": digital.to_dict() | {"per_point": None},
            "last_steps_success": sum(h["success"] for h in patch.history[-20:]) / 20}


#: (task, scene strength, l∞ budgets) of the EOT comparison
EOT_SETTINGS = (("segmentation", 1.0, (0.1, 0.2)), ("detection", 0.5, (0.05, 0.1)))


def eot_comparison(task_name: str, strength: float, epsilons: tuple[float, ...], n_test: int = 40,
                   draws: int = 10) -> list[dict]:
    """Plain PGD against PGD through the transformations (EOT: each draw's output brought back over
    the input), judged by the task's metrics digitally and under fresh draws of the same distribution."""
    model, _ = (default_segmenter if task_name == "segmentation" else default_detector)()
    test = load_scenes("mnist-seg" if task_name == "segmentation" else "mnist-det", "test", n_test)
    scene = printed_digit(strength)
    key = "miou" if task_name == "segmentation" else "map"
    rows = []
    for eps in epsilons:
        attack = ar.attacks.PGD(ar.Linf(eps), steps=40, early_stop=False)
        for name, seen in (("plain", model), ("eot", TransformedModel(model, scene, draws=4))):
            start = time.process_time()
            x_adv = attack(seen, test.x, test.y, task=task_name).x_adv
            seconds = time.process_time() - start
            r = perturbation_success(model, test.x, x_adv, test.y, transform=scene, n_draws=draws, task=task_name)
            rows.append({"task": task_name, "transform": scene.describe(), "eps": eps, "attack": name,
                         "cpu_s": seconds, "metrics": r.metrics})
            print(f"{task_name} eps {eps} {name}: {key} digital {r.metrics['digital'][key]:.3f}, under "
                  f"transformations {r.metrics['physical'][key]:.3f} (alone {r.metrics['baseline'][key]:.3f})",
                  flush=True)
    return rows


def pull_back_fidelity(task_name: str, strength: float, n_test: int = 100, seed: int = 5) -> dict:
    """What the pull-back keeps: the model's outputs on one draw of moved scenes, judged against the
    moved labels, next to the same outputs brought back over the unmoved scenes (``Task.pull_back``),
    judged against the unmoved labels; equal metrics mean nothing is lost on the way back."""
    from advrobust.tasks.scoring import metrics_of_outputs

    model, _ = (default_segmenter if task_name == "segmentation" else default_detector)()
    test = load_scenes("mnist-seg" if task_name == "segmentation" else "mnist-det", "test", n_test)
    task = resolve_task(task_name)
    scene = printed_digit(strength)
    y = task.labels(test.y, test.x)
    params = scene.sample(test.x, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        z = model(scene.apply(test.x, params))
    size = (test.x.shape[-2], test.x.shape[-1])
    row = {"task": task_name, "transform": scene.describe(),
           "moved_vs_moved_labels": metrics_of_outputs(z, task.follow(y, scene, params, size), task),
           "pulled_back_vs_labels": metrics_of_outputs(task.pull_back(z, scene, params, size), y, task)}
    print(f"{task_name} pull-back: {row['moved_vs_moved_labels']} moved, {row['pulled_back_vs_labels']} brought back",
          flush=True)
    return row


def headline(r: dict) -> str:
    key = "miou" if r["task"] == "segmentation" else "map"
    m = r["patch"]["metrics"]
    randoms = [c["metrics"]["physical"][key] for c in r["random"]]
    ci = r["patch"]["intervals"].get("physical")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return (f"{r['task']} target={r['target']}: {key} clean {m['clean'][key]:.3f}, transformations alone "
            f"{m['baseline'][key]:.3f}, patch {m['physical'][key]:.3f}{interval} "
            f"(digital {m['digital'][key]:.3f}), random "
            f"{min(randoms):.3f}–{max(randoms):.3f}, PGD {r['pgd']['metrics']['physical'][key]:.3f} "
            f"(digital {r['pgd']['metrics']['digital'][key]:.3f}); success {r['patch']['physical']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 steps, 50 scenes, 5 draws")
    parser.add_argument("--speed-only", action="store_true", help="only the speed, three times per model")
    parser.add_argument("--eot-only", action="store_true",
                        help="only plain against EOT PGD on the segmenter and the detector")
    parser.add_argument("--stickers-only", action="store_true",
                        help="only RP2 stickers (the shape found first, then the texture) in the four settings")
    parser.add_argument("--losses-only", action="store_true",
                        help="only the untargeted segmenter patch trained with CE and with the margin loss")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.losses_only:
        rows = [setting("segmentation", None, 1.0, STEPS, N_TEST, DRAWS, loss) for loss in ("ce", "margin")]
        for r in rows:
            print(f"{r['loss']}: {headline(r)}", flush=True)
        print(f"wrote {write_results('physical_tasks_losses', {'settings': rows})}")
        return
    if args.stickers_only:
        rows = [setting(task_name, target, strength, STEPS, N_TEST, DRAWS, shape="sticker")
                for task_name, target, strength in SETTINGS]
        for r in rows:
            print(f"sticker: {headline(r)}", flush=True)
        print(f"wrote {write_results('physical_tasks_stickers', {'settings': rows})}")
        return
    if args.eot_only:
        fidelity = [pull_back_fidelity(task_name, strength) for task_name, strength, _ in EOT_SETTINGS]
        rows = [row for setting_ in EOT_SETTINGS for row in eot_comparison(*setting_)]
        print(f"wrote {write_results('physical_tasks_eot', {'rows': rows, 'pull_back': fidelity})}")
        return
    steps, n_test, draws = (100, 50, 5) if args.quick else (STEPS, N_TEST, DRAWS)
    load_before = os.getloadavg()
    results = []
    for task_name, target, strength in () if args.speed_only else SETTINGS:
        results.append(setting(task_name, target, strength, steps, n_test, draws))
        print(headline(results[-1]), flush=True)
    speeds: dict[str, list[dict]] = {}
    for task_name, _, strength in SETTINGS[::2]:
        model, _ = (default_segmenter if task_name == "segmentation" else default_detector)()
        train = load_scenes("mnist-seg" if task_name == "segmentation" else "mnist-det", "train", 256)
        for _ in range(3 if args.speed_only else 1):
            sp = speed(model, train.x, train.y, printed_digit(strength), target=None, steps=20, batch=32,
                       task=task_name, region=(0.0, 0.0, 1.0, 1.0))
            speeds.setdefault(task_name, []).append(sp)
            print(f"{task_name}: patch training / floor (CPU time): {sp['ratio_to_floor']:.2f} whole, "
                  f"{sp['step_ratio_to_floor']:.2f} a step", flush=True)
    name = "physical_tasks_speed" if args.speed_only else "physical_tasks"
    path = write_results(name, {"settings": results, "speed": speeds, "load_before": load_before,
                                "load_after": os.getloadavg(), "quick": args.quick})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
