"""One call on a GPU: does every attack run there, and how fast is it next to its floor and its peers.

A session lent an accelerator has a few minutes of it, so the whole GPU measurement is this one
prepared command (estimated at a few minutes on one H200, not yet measured; ``--quick`` much less).
Every row is recorded, a failure as its error's last line, so one broken part never hides the others;
the results file is rewritten after every row, so a run stopped at the call's time limit still
brings back what it measured.

* **Works there** (``works``): every registered classification attack on 16 test digits, the
  default CNN moved to the device. A row passes when the attack runs, ``x_adv`` stays on the device,
  in the box and (fixed-budget attacks) in the ball, and the model misclassifies every point the
  attack reports a success on. Also ``ar.evaluate`` with the ``standard`` suite, DAG against the
  built-in segmenter, a universal patch and one epoch of PGD-AT through ``advrobust.training.fit``.
* **Speed** (``speed``), timings CUDA-synchronized, best of three:
  PGD-40 against its floor (40 forward+backward passes of the same batch) on 500 points of the MNIST
  CNN and of a 32×32 RGB ``small-resnet`` (random weights and images: the passes cost the same), with
  torchattacks' PGD beside it where it imports; ``advrobust train --method pgd-at --eps 0.3`` (the
  default recipe, timed) and then ``standard`` against AutoAttack's standard version (``pyautoattack``)
  on 500 test points of that model; One-Pixel (400 × 10) against ART's PixelAttack on the same
  digits; C&W's fast preset: time, success and median l2 against the floor of its passes.

Peers are imported where they are installed and reported as missing otherwise; on the device
machine they come from wheels carried there (``benchmarks/gpu_prepare.sh``, benchmarks/README.md
"GPU"). Writes ``benchmarks/results/gpu.json`` (``--results NAME``) and, with ``--out DIR``, a copy there.

    python3 benchmarks/bench_gpu.py --out "$OUT"                     # on the device machine
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --quick    # a dry run here
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from bench_zoo_cw import measure as measure_cw  # noqa: E402
from common import floor_seconds, synchronize, timed, write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.attacks.base import MinimumNormAttack  # noqa: E402
from advrobust.attacks.registry import create, list_attacks, spec  # noqa: E402
from advrobust.data import load  # noqa: E402
from advrobust.threat import L0, Linf  # noqa: E402

#: the budget each norm is attacked at in the "works" part (MNIST scale; l0 in pixels, a square for ROA)
BUDGETS = {"linf": 0.3, "l2": 2.0, "l1": 10.0, "l0": 16.0}


def recorded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()``, or ``{"status": "error", "error": <its last line>}`` if it raises."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001 - a benchmark row records any failure and goes on
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        return {"status": "error", "error": last}


def verdict(ok: bool, **details: Any) -> dict[str, Any]:
    return {"status": "ok" if ok else "wrong", **details}


# --- works there ---------------------------------------------------------------------------------
def attack_row(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    cls = spec(name).load()
    if "classification" not in cls.tasks:
        return {"status": "skipped", "why": f"a {'/'.join(cls.tasks)} attack"}
    norm = spec(name).default_norm
    minimal = issubclass(cls, MinimumNormAttack)
    attack = create(name, norm=norm, eps=None if minimal else BUDGETS[norm])
    start = time.perf_counter()
    result = attack(model, x, y)
    synchronize(x.device)
    seconds = time.perf_counter() - start
    x_adv = result.x_adv
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    on_device = x_adv.device == x.device and result.success.device == x.device
    inside = bool(attack.threat.contains(x_adv, x).all())
    honest = bool(fooled[result.success].all())
    return verdict(on_device and inside and honest, seconds=seconds, success_rate=result.success_rate,
                   on_device=on_device, in_ball_and_box=inside, successes_misclassified=honest)


def works(device: torch.device, quick: bool, rows: dict[str, Any], save: Callable[[], None]) -> None:
    from advrobust.attacks.dag import DAG
    from advrobust.attacks.patch import UniversalPatch
    from advrobust.data.scenes import load_scenes
    from advrobust.training.dense import default_segmenter
    from advrobust.training.pretrained import default_model

    model = default_model()[0].eval().to(device)
    test = load("mnist-5k", split="test").subset(16, seed=0)
    x, y = test.x.to(device), test.y.to(device)
    for name in list_attacks():
        rows[name] = recorded(lambda name=name: attack_row(name, model, x, y))
        print(f"  {name:>14}: {rows[name]['status']} {rows[name].get('error', '')}", flush=True)
        save()

    def standard() -> dict[str, Any]:
        result = ar.evaluate(model, x, y, threat=Linf(eps=0.3), suite="standard")
        return verdict(True, robust_accuracy=float(result.robust[0].float().mean()))

    def dag() -> dict[str, Any]:
        segmenter = default_segmenter()[0].eval().to(device)
        scenes = load_scenes("mnist-seg", split="test")
        xs, ys = scenes.x[:4].to(device), scenes.y[:4].to(device)
        result = DAG(targets=0, max_iter=20 if quick else 200)(segmenter, xs, ys)
        return verdict(result.x_adv.device == xs.device, flipped=float(result.extras["flipped"].mean()))

    def patch() -> dict[str, Any]:
        attack = UniversalPatch(0.1, steps=5 if quick else 50, batch_size=16)
        texture = attack.fit(model, x, y, target=8)
        return verdict(True, texture_device=str(texture.texture.device))

    def training() -> dict[str, Any]:
        from advrobust import training
        from advrobust.models import create as create_model

        train = load("mnist-5k", split="train").subset(256 if quick else 1024, seed=0)
        net = create_model("mnist-cnn", train.num_classes, train.input_shape, seed=0)
        history = training.fit(net, train, None, method="pgd-at", epochs=1, device=str(device))
        return verdict(history.status != "failed", history_status=history.status)

    for name, part in (("evaluate standard", standard), ("DAG on the segmenter", dag), ("universal patch", patch),
                       ("fit pgd-at", training)):
        rows[name] = recorded(part)
        print(f"  {name:>14}: {rows[name]['status']} {rows[name].get('error', '')}", flush=True)
        save()


# --- speed ---------------------------------------------------------------------------------------
def pgd_speed(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, Any]:
    attack = ar.attacks.PGD(Linf(eps=eps), steps=40, early_stop=False)
    seconds, result = timed(lambda: attack(model, x, y), repeats=3, device=x.device)
    floor = floor_seconds(model, x, y, passes=40)
    row = {"points": len(x), "ours_s": seconds, "floor_s": floor, "ratio_to_floor": seconds / floor,
           "robust_accuracy": 1 - result.success_rate}
    try:
        import torchattacks
    except ImportError:
        return {**row, "torchattacks": "not installed"}
    peer = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 40, steps=40, random_start=True)
    peer_seconds, x_peer = timed(lambda: peer(x, y), repeats=3, device=x.device)
    with torch.no_grad():
        robust = float((model(x_peer).argmax(1) == y).float().mean())
    return {**row, "torchattacks_s": peer_seconds, "torchattacks_robust_accuracy": robust,
            "ours_over_torchattacks": seconds / peer_seconds}


def trained_pgd_at(device: torch.device, folder: Path, quick: bool) -> tuple[nn.Module, dict[str, Any]]:
    """The default command, timed: ``advrobust train --method pgd-at --eps 0.3`` on the device."""
    out = folder / "pgd-at.safetensors"
    command = [sys.executable, "-m", "advrobust", "train", "--method", "pgd-at", "--eps", "0.3", "--out", str(out),
               "--device", str(device), "--no-verify"] + (["--epochs", "1"] if quick else [])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["advrobust train failed"])[-1])
    return ar.models.load_model(str(out)).eval().to(device), {"command": " ".join(command[2:]), "seconds": seconds}


def standard_speed(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    seconds, result = timed(lambda: ar.evaluate(model, x, y, threat=Linf(eps=0.3), suite="standard"),
                            device=x.device)
    row = {"points": len(x), "ours_s": seconds, "robust_accuracy": float(result.robust[0].float().mean())}
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        return {**row, "autoattack": "not installed"}
    adversary = AutoAttack(model, norm="Linf", eps=0.3, version="standard", device=str(x.device), seed=0)
    peer_seconds, (x_adv, _) = timed(lambda: adversary.run_standard_evaluation(x, y, batch_size=256),
                                     device=x.device)
    with torch.no_grad():
        robust = (model(x_adv).argmax(1) == y) & ((x_adv - x).abs().flatten(1).amax(1) <= 0.3 + 1e-6)
    return {**row, "autoattack_s": peer_seconds, "autoattack_robust_accuracy": float(robust.float().mean()),
            "ours_over_autoattack": seconds / peer_seconds}


def one_pixel_speed(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    from advrobust.attacks.one_pixel import OnePixel

    attack = OnePixel(L0(pixels=1), population=400, generations=10)
    seconds, result = timed(lambda: attack(model, x, y), device=x.device)
    row = {"images": len(x), "ours_s": seconds, "ours_success_rate": result.success_rate}
    try:
        from art.attacks.evasion import PixelAttack
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return {**row, "art": "not installed"}
    classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=10, clip_values=(0.0, 1.0),
                                   device_type="gpu" if x.device.type == "cuda" else "cpu")
    peer = PixelAttack(classifier, th=1, es=1, max_iter=10, targeted=False, verbose=False)
    peer_seconds, x_peer = timed(lambda: peer.generate(x.cpu().numpy()), device=x.device)
    success = float((classifier.predict(x_peer).argmax(1) != y.cpu().numpy()).mean())
    return {**row, "art_s": peer_seconds, "art_success_rate": success, "speedup": peer_seconds / seconds}


def cw_speed(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    return {"points": len(x), **measure_cw(ar.attacks.CarliniWagner.fast(ar.L2()), model, x, y)}


def speed(device: torch.device, quick: bool, folder: Path, rows: dict[str, Any], save: Callable[[], None]) -> None:
    from advrobust.models import create as create_model
    from advrobust.training.pretrained import default_model

    n = 64 if quick else 500
    model = default_model()[0].eval().to(device)
    test = load("mnist-5k", split="test").subset(n, seed=0)
    x, y = test.x.to(device), test.y.to(device)
    gen = torch.Generator().manual_seed(0)
    resnet = create_model("small-resnet", 10, (3, 32, 32), seed=0).eval().to(device)
    x_rgb = torch.rand(n, 3, 32, 32, generator=gen).to(device)
    with torch.no_grad():
        y_rgb = resnet(x_rgb).argmax(1)
        correct = (model(x).argmax(1) == y).nonzero().squeeze(1)
    few = correct[: 10 if quick else 100]
    parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("pgd-40 mnist-cnn", lambda: pgd_speed(model, x, y, 0.3)),
        ("pgd-40 small-resnet rgb32", lambda: pgd_speed(resnet, x_rgb, y_rgb, 8 / 255)),
        ("one-pixel 400x10", lambda: one_pixel_speed(model, x[few], y[few])),
        ("cw fast", lambda: cw_speed(model, x[few], y[few])),
    ]
    for name, part in parts:
        rows[name] = recorded(part)
        print(f"  {name}: {json.dumps(rows[name], default=float)}", flush=True)
        save()

    def pgd_at_then_standard() -> dict[str, Any]:
        robust_model, training = trained_pgd_at(device, folder, quick)
        return {"training": training, **standard_speed(robust_model, x, y)}

    rows["standard vs autoattack, pgd-at cnn"] = recorded(pgd_at_then_standard)
    print(f"  standard: {json.dumps(rows['standard vs autoattack, pgd-at cnn'], default=float)}", flush=True)
    save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    parser.add_argument("--quick", action="store_true", help="fewer points and steps: checks the script runs")
    parser.add_argument("--only", choices=("works", "speed"), help="run one part")
    parser.add_argument("--results", default="gpu", help="name of the results file in benchmarks/results/")
    parser.add_argument("--out", type=Path, help="also copy the results file into this folder")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py: no CUDA device here; pass --device cpu for a dry run")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}", flush=True)
    out: dict[str, Any] = {"device": name, "quick": args.quick}

    def save() -> None:
        """Write what is measured so far: a run stopped at its time limit still brings its rows back."""
        path = write_results(args.results, out)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, args.out / path.name)

    with tempfile.TemporaryDirectory() as folder:
        if args.only in (None, "works"):
            works(device, args.quick, out.setdefault("works", {}), save)
        if args.only in (None, "speed"):
            speed(device, args.quick, Path(folder), out.setdefault("speed", {}), save)
    save()
    print(f"wrote benchmarks/results/{args.results}.json")


if __name__ == "__main__":
    main()
