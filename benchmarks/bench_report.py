"""How long writing the HTML report takes, next to the evaluation it reports.

The report must never be the slow part of ``advrobust evaluate --report``: its reference ("floor")
is the evaluation it shows. On the default model (``mnist-cnn`` on ``mnist-5k``) and ``points``
test points (default 500), l∞ ε ∈ {0.1, 0.2, 0.3}, suite ``quick`` (FGSM + PGD-40): the evaluation's
wall time, the best of 3 ``write_report`` times, their ratio, and the page's size.

    .venv/bin/python benchmarks/bench_report.py [--points 500]

Writes ``benchmarks/results/report.json``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import bench_model, timed, write_results

from advrobust.evaluation import evaluate
from advrobust.report import write_report
from advrobust.report.writer import figures_dir
from advrobust.threat import Linf

EPSILONS = [0.1, 0.2, 0.3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500)
    args = parser.parse_args()
    model, x, y = bench_model()
    x, y = x[: args.points], y[: args.points]
    evaluation_s, result = timed(lambda: evaluate(
        model, x, y, threat=Linf(eps=0.3), epsilons=EPSILONS, suite="quick",
        model_name="mnist-cnn", data_name="mnist-5k"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        report_s, _ = timed(lambda: write_report(path, result), repeats=3)
        html_bytes = path.stat().st_size
        pngs = len(list(figures_dir(path).glob("*.png")))
    results = {
        "points": len(y),
        "epsilons": EPSILONS,
        "suite": "quick",
        "evaluation_seconds": evaluation_s,
        "report_seconds": report_s,
        "report_over_evaluation": report_s / evaluation_s,
        "html_bytes": html_bytes,
        "figures": pngs,
    }
    out = write_results("report", results)
    print(f"evaluation {evaluation_s:.2f} s, report {report_s:.2f} s "
          f"(ratio {report_s / evaluation_s:.3f}), page {html_bytes / 1e3:.0f} kB, {pngs} figures -> {out}")


if __name__ == "__main__":
    main()
