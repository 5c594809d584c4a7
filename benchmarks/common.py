"""Shared pieces of the benchmarks: the model under test, the floor, timing, and the JSON output.

The floor of a gradient attack is the time of the same number of forward+backward passes (w.r.t.
the input) of the same model on the same batch: an attack cannot be cheaper than its own gradient
evaluations, so ``wall time / floor`` measures everything the attack adds (DESIGN.md, "Conventions").

    from common import bench_model, floor_seconds, rows_per_second, synchronize, timed, write_results
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESULTS = Path(__file__).parent / "results"


def bench_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The default model (``mnist-cnn`` on ``mnist-5k``, cached) and the full test split."""
    from advrobust.data import load
    from advrobust.training.pretrained import default_model

    model, _meta = default_model()
    test = load("mnist-5k", split="test")
    return model.eval(), test.x, test.y


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously; a CPU has nothing to wait for)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` time of ``passes`` forward+backward passes w.r.t. the input on ``x``."""
    best = float("inf")
    for _ in range(repeats):
        synchronize(x.device)
        start = time.perf_counter()
        for _ in range(passes):
            xv = x.detach().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(xv), y, reduction="none").sum()
            torch.autograd.grad(loss, xv)
        synchronize(x.device)
        best = min(best, time.perf_counter() - start)
    return best


def rows_per_second(model: nn.Module, shape: tuple[int, ...], rows: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` forward throughput of ``model`` on batches of ``rows`` inputs."""
    x = torch.rand(rows, *shape)
    best = float("inf")
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return rows / best


def timed(fn: Callable[[], Any], repeats: int = 1, device: torch.device | None = None) -> tuple[float, Any]:
    """Best-of-``repeats`` wall time of ``fn()`` and its last result (the work it queued on ``device``
    included)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if device is not None:
            synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device is not None:
            synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def cpu_model() -> str:
    """The CPU's model name where Linux says it (``/proc/cpuinfo``): ratios and times are comparable
    within one kind of CPU (oneDNN picks other kernels on another), so each result records its own."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the environment attached."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **results}, indent=2, default=float) + "\n")
    return path
