"""The cost model that picks One-Pixel's and Square's scoring path, fitted to measured CPU time.

:mod:`advrobust.runtime.path_cost` models each path's CPU time from the layers' shapes, so that which
path scores an attack's edits never depends on a timing (the paths round differently; a timed choice
made two runs with one seed differ). This script measures, one thread, best of three CPU times:

* one-pixel edits (4096 per call, 20 images): the frozen whole model on painted images, the crop
  network (where the window is small enough to build it) and the changed regions;
* square edits of every side offered, 4, 32 and 512 rows per call: the changed regions and the
  frozen whole model;

on every member of :mod:`advrobust.models.zoo` at both sizes and on the built-in ``mnist-cnn`` and
``small-resnet``; fits each path's rates (non-negative least squares on relative error) and reports,
per decision the attacks make (crop network or changed regions, changed regions or whole images),
how often the modelled choice is the measured faster one and what the wrong ones cost.

    .venv/bin/python benchmarks/bench_path_costs.py        # about 9 minutes on one core

Writes ``benchmarks/results/path_costs.json``; the fitted rates go into ``path_cost.py`` by hand.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results  # noqa: E402

from advrobust.models.architectures import create  # noqa: E402
from advrobust.models.zoo import SHAPES, ZOO, build  # noqa: E402
from advrobust.runtime import local_forward as lf  # noqa: E402
from advrobust.runtime import path_cost  # noqa: E402
from advrobust.runtime import square_edits as se  # noqa: E402
from advrobust.runtime.chunks import CPU_ROWS  # noqa: E402
from advrobust.runtime.frozen import frozen_trace  # noqa: E402
from advrobust.tensors import painted_copies, painted_squares  # noqa: E402

PIXEL_ROWS = 4096
SQUARE_ROWS = (4, 32, 512)


def cpu_seconds(run: Callable[[], object], repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def models() -> list[tuple[str, torch.nn.Module, tuple[int, int, int]]]:
    zoo = [(f"{name}:{size}", build(name, SHAPES[size]).eval(), SHAPES[size]) for size in SHAPES for name in ZOO]
    return zoo + [("mnist-cnn", create("mnist-cnn", 10, (1, 28, 28), seed=0).eval(), (1, 28, 28)),
                  ("small-resnet", create("small-resnet", 10, (3, 32, 32), seed=0).eval(), (3, 32, 32))]


def one_pixel(name: str, model: torch.nn.Module, shape: tuple[int, int, int]) -> list[dict[str, Any]]:
    base = torch.rand(20, *shape, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    img = torch.randint(0, len(base), (PIXEL_ROWS,), generator=gen)
    pos = torch.randint(0, shape[1] * shape[2], (PIXEL_ROWS,), generator=gen)
    vals = torch.rand(PIXEL_ROWS, shape[0], generator=gen)
    graph = lf._graph(model, base[:1])
    sizes = [s[2:] for s in graph.shapes]
    ra, ca = (lf._axis(graph.steps, [s[a] for s in sizes], a) for a in (0, 1))
    rows, cols = (lf._changed(graph.steps, [s[a] for s in sizes], a) for a in (0, 1))
    local = lf.LocalForward(graph, ra, ca, base)
    out = []
    if 2 * ra.window * ca.window <= graph.shapes[-1][2] * graph.shapes[-1][3]:
        probe = lf._probe(base)
        local.crop.freeze(local.crop_inputs(*probe))
        out.append(("crop", path_cost.crop_work(graph, ra, ca), cpu_seconds(lambda: local(img, pos, vals))))
    local.regions = local.changed_regions()
    out.append(("regions", path_cost.regions_work(graph, rows, cols), cpu_seconds(lambda: local(img, pos, vals))))
    painted = painted_copies(base, img, pos[:, None], vals[:, None, :])
    whole = frozen_trace(model, (base[:8],)) or model
    out.append(("whole", path_cost.whole_work(graph),
                cpu_seconds(lambda: [whole(part) for part in painted.split(CPU_ROWS)])))
    return [{"model": name, "case": "pixel", "path": path, "rows": PIXEL_ROWS, "work": vars(work), "seconds": t}
            for path, work, t in out]


def square(name: str, model: torch.nn.Module, shape: tuple[int, int, int]) -> list[dict[str, Any]]:
    n = max(SQUARE_ROWS)
    base = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))
    edits = se.square_edits(model, base)
    if edits is None:
        return []
    graph = lf._graph(model, base[:1])
    whole = frozen_trace(model, (base[:8],)) or model
    return [sample for side in sorted(edits.sides) for rows in SQUARE_ROWS
            for sample in square_pair(name, graph, edits, whole, base, side, rows)]


def square_pair(name: str, graph: lf._Graph, edits: se.SquareEdits, whole: Callable[[torch.Tensor], object],
                base: torch.Tensor, side: int, rows: int) -> list[dict[str, Any]]:
    """``rows`` random squares of ``side``: timed on the edits and as whole images."""
    gen = torch.Generator().manual_seed(side)
    _, channels, height, width = base.shape
    img = torch.randperm(len(base), generator=gen)[:rows]
    top = torch.randint(0, height - side + 1, (rows,), generator=gen)
    left = torch.randint(0, width - side + 1, (rows,), generator=gen)
    patch = torch.rand(rows, channels, side, side, generator=gen)
    repeats = max(1, len(base) // rows)

    def on_edits() -> None:
        for _ in range(repeats):
            edits(img, top, left, patch)

    def on_whole() -> None:
        for _ in range(repeats):
            images = painted_squares(base.index_select(0, img), top, left, patch)
            [whole(part) for part in images.split(CPU_ROWS)]

    return [{"model": name, "case": f"square-{side}", "path": path, "rows": rows, "work": vars(work),
             "seconds": cpu_seconds(run) / repeats}
            for path, work, run in (("regions", path_cost.regions_work(graph, *edits.sides[side]), on_edits),
                                    ("whole", path_cost.whole_work(graph), on_whole))]


def fit(samples: list[dict[str, Any]]) -> path_cost.Rates:
    """Non-negative least squares of the CPU time on :class:`~advrobust.runtime.path_cost.Work`,
    each sample weighted by 1/its time (relative error)."""
    a = np.array([[s["rows"] * s["work"]["macs"], s["rows"] * s["work"]["moved"], s["rows"] * s["work"]["values"],
                   s["rows"], s["work"]["operations"]] for s in samples], dtype=float)
    y = np.array([s["seconds"] * 1e6 for s in samples])
    coef, _ = nnls(a / y[:, None], np.ones(len(y)))
    return path_cost.Rates(*(float(c) for c in coef))


def decisions(samples: list[dict[str, Any]], rates: dict[str, path_cost.Rates]) -> dict[str, Any]:
    """Per pair of paths timed on the same edits: whether the model picks the faster one."""
    groups: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for s in samples:
        groups.setdefault((s["model"], s["case"], s["rows"]), {})[s["path"]] = s
    pairs = []
    for (model, case, rows), paths in groups.items():
        chosen_pair = ("crop", "regions") if "crop" in paths else ("regions", "whole")
        first, second = (paths[p] for p in chosen_pair)
        modelled = [rates[p["path"]].seconds(path_cost.Work(**p["work"]), rows) for p in (first, second)]
        picked, faster = (0 if modelled[0] < modelled[1] else 1), (0 if first["seconds"] < second["seconds"] else 1)
        measured = [first["seconds"], second["seconds"]]
        pairs.append({"model": model, "case": case, "rows": rows, "paths": list(chosen_pair),
                      "measured_seconds": measured, "modelled_seconds": [m * 1.0 for m in modelled],
                      "picks_faster": picked == faster, "cost_of_pick": measured[picked] / min(measured)})
    wrong = [p for p in pairs if not p["picks_faster"]]
    return {"pairs": pairs, "right": len(pairs) - len(wrong), "of": len(pairs),
            "worst_cost_of_pick": max((p["cost_of_pick"] for p in pairs), default=1.0)}


def main() -> None:
    torch.set_num_threads(1)
    samples: list[dict[str, Any]] = []
    load = os.getloadavg()[0]
    with torch.no_grad():
        for name, model, shape in models():
            samples += one_pixel(name, model, shape) + square(name, model, shape)
            print(f"{name}: measured", flush=True)
    rates = {path: fit([s for s in samples if s["path"] == path]) for path in ("whole", "crop", "regions")}
    fitted = {path: vars(r) for path, r in rates.items()}
    current = {"whole": path_cost.WHOLE, "crop": path_cost.CROP, "regions": path_cost.REGIONS}
    result = {"load_average": [load, os.getloadavg()[0]], "fitted_rates": fitted,
              "decisions_fitted": decisions(samples, rates), "decisions_in_use": decisions(samples, current),
              "samples": samples}
    for key in ("decisions_fitted", "decisions_in_use"):
        d = result[key]
        print(f"{key}: right {d['right']}/{d['of']}, worst pick costs {d['worst_cost_of_pick']:.2f}x")
        for p in d["pairs"]:
            if not p["picks_faster"]:
                print(f"   wrong: {p['model']} {p['case']} rows {p['rows']} {p['paths']}: measured "
                      f"{[round(t * 1e3, 2) for t in p['measured_seconds']]} ms, cost {p['cost_of_pick']:.2f}x")
    for path, r in fitted.items():
        print(path, {k: float(f"{v:.3g}") for k, v in r.items()})
    print(f"wrote {write_results('path_costs', result)}")


if __name__ == "__main__":
    main()
