"""The ``standard`` suite (APGD-CE, APGD-T, FMN, Square) against AutoAttack's standard version.

On the default MNIST CNN (or ``--model CHECKPOINT``), ``--n`` stratified test digits (default 500),
l∞ ``--eps`` (default 0.3, the MNIST budget of Madry et al. 2018):

* advrobust ``standard``: robust accuracy, wall and CPU time (on a shared machine the CPU time is
  the fairer comparison: both sides run with the same threads), and the ratio of the wall time to the floor
  (the time of the suite's queries alone: forward+backward passes for the gradient attacks, forward
  passes for Square, timed per row on batches of ``--batch-size``: :func:`suite_floor`);
* the other suites of ``--suites`` (default ``standard,quick``; ``plus`` adds restarts) on the same
  points: ``quick`` (FGSM + PGD-40) shows what a single PGD run overstates;
* AutoAttack (Croce & Hein 2020, ``version="standard"``: APGD-CE, APGD-T, FAB-T, Square) on the same
  points and model (as TorchScript), in its own process, if ``pyautoattack`` imports in the venv
  named by ``--autoattack-python`` (default ``/tmp/aa_venv/bin/python``: a throwaway venv with
  ``pip install --no-deps pyautoattack`` beside the same torch 2.13.0 CPU wheel).

Target (issue 6): our robust accuracy no higher than AutoAttack's (within 0.2 points), in half its time.

    .venv/bin/python benchmarks/bench_evaluation.py [--n 500] [--model PATH] [--results NAME]
        [--suites standard,plus,quick]

Writes ``benchmarks/results/evaluation.json`` (or ``NAME.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import floor_seconds, rows_per_second, write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.attacks.registry import get as get_attack  # noqa: E402

AUTOATTACK_SCRIPT = """
import json, sys, time
import torch
from pyautoattack import AutoAttack
torch.set_num_threads(int(sys.argv[3]))
model = torch.jit.load(sys.argv[1]).eval()
data = torch.load(sys.argv[2])
x, y = data["x"], data["y"]
adversary = AutoAttack(model, norm="Linf", eps=float(sys.argv[4]), version="standard", device="cpu", seed=0)
start, cpu = time.perf_counter(), time.process_time()
x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=int(sys.argv[5]))  # returns (x_adv, y_adv)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
with torch.no_grad():
    robust = (model(x_adv).argmax(1) == y) & ((x_adv - x).abs().flatten(1).amax(1) <= float(sys.argv[4]) + 1e-6)
print(json.dumps({"robust_accuracy": robust.float().mean().item(), "seconds": seconds, "cpu_seconds": cpu_seconds}))
"""


def load(model_path: str | None, n: int) -> tuple[torch.nn.Module, str, torch.Tensor, torch.Tensor]:
    data = ar.data.load("mnist-5k", split="test").subset(n, seed=0)
    if model_path is None:
        from advrobust.training.pretrained import default_model

        return default_model()[0].eval(), "mnist-cnn (default)", data.x, data.y
    return ar.models.load_model(model_path), Path(model_path).stem, data.x, data.y


def suite_floor(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, per_attack: list, batch_size: int) -> float:
    """The time of the suite's queries alone: a gradient attack's query costs a forward+backward
    pass, a score-based one's (Square) a forward pass, each timed per row on the evaluation's batch
    and multiplied out (running all of them would take as long as the suite)."""
    rows = min(batch_size, len(y))
    backward_row = floor_seconds(model, x[:rows], y[:rows], passes=3) / 3 / rows
    forward_row = 1 / rows_per_second(model, tuple(x.shape[1:]), rows)
    return sum(
        r.mean_queries * r.attacked * (backward_row if get_attack(r.attack).needs == "gradients" else forward_row)
        for r in per_attack
    )


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, suite: str, eps: float, batch_size: int) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    result = ar.evaluate(model, x, y, threat=ar.Linf(eps=eps), suite=suite, batch_size=batch_size)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    queries = sum(r.mean_queries * r.attacked for r in result.per_attack)
    floor = suite_floor(model, x, y, result.per_attack, batch_size)
    return {
        "robust_accuracy": result.robust_accuracy_at(eps),
        "robust_accuracy_ci": result.robust_accuracy_ci[eps],
        "clean_accuracy": result.clean_accuracy,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_average": os.getloadavg()[0],
        "queries_per_point": queries / len(y),
        "floor_seconds": floor,
        "ratio_to_floor": seconds / floor,
        "per_attack": [
            {"attack": r.attack, "robust_accuracy_after": r.robust_accuracy, "attacked": r.attacked,
             "broken": r.broken, "seconds": r.seconds, "mean_queries": r.mean_queries}
            for r in result.per_attack
        ],
    }


def autoattack(python: Path, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               batch_size: int) -> dict:
    if not python.exists():
        return {"skipped": f"{python} not found (make a venv with pyautoattack, --no-deps)"}
    with tempfile.TemporaryDirectory() as tmp:
        model_file, data_file, script = Path(tmp) / "m.pt", Path(tmp) / "d.pt", Path(tmp) / "aa.py"
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(model, x[:1]), str(model_file))
        torch.save({"x": x, "y": y}, data_file)
        script.write_text(AUTOATTACK_SCRIPT)
        proc = subprocess.run(
            [str(python), str(script), str(model_file), str(data_file), str(torch.get_num_threads()), str(eps),
             str(batch_size)],
            capture_output=True, text=True, timeout=3600,
        )
    if proc.returncode != 0:
        return {"skipped": f"autoattack failed: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.3, help="l∞ budget [default: 0.3]")
    parser.add_argument("--model", help="a checkpoint / TorchScript file [default: the default model]")
    parser.add_argument("--autoattack-python", type=Path, default=Path("/tmp/aa_venv/bin/python"))
    parser.add_argument("--batch-size", type=int, default=256,
                        help="points per batch, ours and AutoAttack's [default: 256, advrobust evaluate's]")
    parser.add_argument("--suites", default="standard,quick",
                        help="our suites to run, comma-separated [default: standard,quick]")
    parser.add_argument("--results", default="evaluation",
                        help="name of the results file in benchmarks/results/ [default: evaluation]")
    args = parser.parse_args()
    model, name, x, y = load(args.model, args.n)
    results = {"model": name, "n_points": len(y), "eps": args.eps, "norm": "linf"}
    results["batch_size"] = args.batch_size
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    for suite in suites:
        results[suite] = ours(model, x, y, suite, args.eps, args.batch_size)
    results["autoattack_standard"] = autoattack(args.autoattack_python, model, x, y, args.eps, args.batch_size)
    results["autoattack_standard"]["load_average"] = os.getloadavg()[0]
    aa = results["autoattack_standard"]
    if "robust_accuracy" in aa:
        results["versus_autoattack"] = {
            suite: {"robust_accuracy_minus_autoattack": results[suite]["robust_accuracy"] - aa["robust_accuracy"],
                    "time_ratio_to_autoattack": results[suite]["seconds"] / aa["seconds"],
                    "cpu_time_ratio_to_autoattack": results[suite]["cpu_seconds"] / aa["cpu_seconds"]}
            for suite in suites
        }
    path = write_results(args.results, results)
    print(json.dumps({k: v for k, v in results.items() if k not in suites}, indent=1, default=float))
    for key in suites:
        r = results[key]
        print(f"{key}: robust {100 * r['robust_accuracy']:.1f}% in {r['seconds']:.1f} s "
              f"({r['ratio_to_floor']:.2f}x floor)")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
