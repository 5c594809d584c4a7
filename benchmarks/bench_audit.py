"""What the gradient-masking audit costs next to one ``standard`` evaluation of the same points.

On ``--n`` stratified test digits at l∞ ``--eps``: the wall time of ``ar.audit`` (its ten checks)
and of ``ar.evaluate(..., suite="standard")`` (wall and CPU time: the CPU ratio is the one to trust
on a loaded machine), and their ratio (goal: the audit costs no more than
the evaluation). ``--model`` names checkpoints (repeatable; default: the default model).

    .venv/bin/python benchmarks/bench_audit.py [--n 200] [--model CKPT ...]

Writes ``benchmarks/results/audit.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results  # noqa: E402

import advrobust as ar  # noqa: E402
from advrobust.data import load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--model", action="append", default=[])
    args = parser.parse_args()
    test = load("mnist-5k", split="test").subset(args.n, seed=0)
    threat = ar.Linf(eps=args.eps)
    rows = {}
    for spec in args.model or ["default"]:
        if spec == "default":
            from advrobust.training.pretrained import default_model

            model, _ = default_model()
        else:
            model, _ = ar.models.load_checkpoint(spec)
        start, cpu = time.perf_counter(), time.process_time()
        rep = ar.evaluate(model, test.x, test.y, threat=threat, suite="standard")
        standard, standard_cpu = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        aud = ar.audit(model, test.x, test.y, threat)
        audit, audit_cpu = time.perf_counter() - start, time.process_time() - cpu
        rows[Path(spec).stem] = {
            "clean_accuracy": rep.clean_accuracy, "standard_robust_accuracy": rep.robust_accuracy_at(),
            "standard_seconds": standard, "audit_seconds": audit, "audit_over_standard": audit / standard,
            "standard_cpu_seconds": standard_cpu, "audit_cpu_seconds": audit_cpu,
            "audit_over_standard_cpu": audit_cpu / standard_cpu,
            "audit_passed": aud.passed, "verdicts": {c.name: c.verdict for c in aud.checks},
        }
        print(Path(spec).stem, rows[Path(spec).stem], flush=True)
    path = write_results("audit", {"n": args.n, "eps": args.eps, "load_average": os.getloadavg(), "models": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
