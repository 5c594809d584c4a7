"""The default recipes, as a user runs them: ``advrobust train --method M --eps 0.3`` on mnist-5k.

For each method (``--all``: fgsm-rs, fgsm-ep, trades, pgd-at, one after the other; by default
fgsm-rs only, the one that fits in ``make bench``) this runs exactly

    advrobust train --method M --eps 0.3 --verify-points 500 --out DIR/M.safetensors --db DIR/results.sqlite

(every training setting the method's default recipe; ``--verify-points 500`` only sizes the
`standard`-suite evaluation the command runs at the end, l∞ 0.3) under ``/usr/bin/time -v``, and
records: wall time of the whole command and of its training part (the sum of the epochs' seconds),
CPU time (user + sys), the load average before and after (``/proc/loadavg``: on a shared machine wall
time is inflated, CPU time much less), the exit status, clean test accuracy, the training's own
PGD-10 validation figure and the `standard` suite's clean and robust accuracy on 500 test points.

Goals (the issue's): PGD-AT and TRADES ≥ 95 % clean and ≥ 80 % `standard`-robust in ≤ 15 minutes,
FGSM-RS ≥ 95 % clean and ≥ 70 % `standard`-robust in ≤ 5 minutes, on 2 cores; the same for FGSM-EP,
the single-step method with FGSM-RS's cost.

    .venv/bin/python benchmarks/bench_training_defaults.py           # fgsm-rs (minutes)
    .venv/bin/python benchmarks/bench_training_defaults.py --all     # all three (half an hour on 2 quiet cores)
    .venv/bin/python benchmarks/bench_training_defaults.py --extra "--epochs 30 --step-size 0.3"   # a trial

Writes ``benchmarks/results/training_defaults.json`` after each method (a cut-off run keeps the
finished ones; a method not run this time keeps its earlier row).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import RESULTS, write_results

from advrobust.models import read_metadata

EPS = 0.3
VERIFY_POINTS = 500
#: (clean, `standard`-robust, minutes) per method, in the order ``--all`` runs them
GOALS = {"fgsm-rs": (0.95, 0.70, 5), "fgsm-ep": (0.95, 0.70, 5), "trades": (0.95, 0.80, 15), "pgd-at": (0.95, 0.80, 15)}


def _load() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def _time_v(stderr: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}: ([0-9.:]+)", stderr)
    if match is None:
        return float("nan")
    parts = [float(p) for p in match.group(1).split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def run(method: str, workdir: Path, extra: list[str], label: str) -> dict[str, Any]:
    out = workdir / f"{label}.safetensors"
    argv = ["advrobust", "train", "--method", method, "--eps", str(EPS), *extra, "--verify-points",
            str(VERIFY_POINTS), "--out", str(out), "--db", str(workdir / "results.sqlite")]
    command = ["/usr/bin/time", "-v", sys.executable, "-m", *argv]
    load_before = _load()
    proc = subprocess.run(command, capture_output=True, text=True)
    load_after = _load()
    wall = _time_v(proc.stderr, "Elapsed (wall clock) time (h:mm:ss or m:ss)")
    cpu = _time_v(proc.stderr, "User time (seconds)") + _time_v(proc.stderr, "System time (seconds)")
    row: dict[str, Any] = {
        "command": " ".join(argv[:-4] + ["--out", "M.safetensors", "--db", "results.sqlite"]),
        "exit_status": proc.returncode, "wall_seconds": wall, "cpu_seconds": cpu,
        "load_average_before": load_before, "load_average_after": load_after,
        "output_tail": proc.stdout[-1500:] + proc.stderr[-1500:] if proc.returncode else proc.stdout[-600:],
    }
    if proc.returncode == 0 and out.exists():
        meta = read_metadata(out)
        verified = meta.get("verification", {})
        training = meta["training"]
        train_seconds = sum(r for r in _epoch_seconds(out.with_suffix(".state")))
        goal_clean, goal_robust, goal_minutes = GOALS.get(method, (None, None, None))
        row.update({
            "recipe": {k: training.get(k) for k in ("epochs", "batch_size", "optimizer", "lr", "schedule",
                                                     "weight_decay", "warmup", "beta")},
            "inner_attack": training.get("attack"),
            "status": training.get("status"), "stop_reason": training.get("stop_reason"),
            "epochs_run": training.get("epochs_run"),
            "train_seconds": train_seconds,
            "clean_accuracy_1000": meta["clean_accuracy"],
            "validation_robust": meta.get("robust_accuracy"),
            "standard": verified,
            "goal": {"clean": goal_clean, "standard_robust": goal_robust, "minutes": goal_minutes},
        })
    return row


def _epoch_seconds(state_dir: Path) -> list[float]:
    from advrobust.training.engine import STATE_FILE, load_state

    state = load_state(state_dir / STATE_FILE)
    return [float(r["seconds"]) for r in state["history"]["records"]]


def _previous_runs() -> dict[str, Any]:
    previous = RESULTS / "training_defaults.json"
    return json.loads(previous.read_text())["runs"] if previous.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["fgsm-rs"])
    parser.add_argument("--all", action="store_true", help=", ".join(GOALS))
    parser.add_argument("--workdir", type=Path, default=None, help="where checkpoints go (default: a temp dir)")
    parser.add_argument("--extra", default="", help="train flags on top of the defaults, e.g. '--epochs 30 "
                        "--step-size 0.3': a trial recipe, recorded as 'METHOD [FLAGS]' beside the defaults")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="advrobust-train-defaults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.extra)
    for method in GOALS if args.all else args.methods:
        label = method if not extra else f"{method} [{' '.join(extra)}]"
        row = run(method, workdir, extra, re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_"))
        print(json.dumps({label: {k: v for k, v in row.items() if k != "output_tail"}}, default=float), flush=True)
        runs = {**_previous_runs(), label: row}  # read again: another run may have written meanwhile
        path = write_results("training_defaults", {
            "data": "mnist-5k", "model": "mnist-cnn (width 32, the CLI's default)", "eps": EPS, "norm": "linf",
            "verify_points": VERIFY_POINTS, "cores": 2, "runs": runs,
        })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
