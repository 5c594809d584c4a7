"""Speed of the gradient attacks (FGSM, PGD-40, MI-FGSM-10, APGD-100) against their floor.

On the default MNIST CNN, l∞ eps = 0.3, batches of 200 and 500 test digits, 2 threads:

* early stop OFF: wall time / floor, the floor being the time of as many forward+backward passes
  w.r.t. the input as the attack takes gradients (target <= 1.05). The contract adds forward-only
  passes on top (the clean check, the final iterate, the confirmation of the result: 2 for FGSM,
  3 for the iterative attacks); they are counted in the ratio, and reported separately as
  ``forward_passes`` with the ratio to a floor that includes them;
* early stop ON: wall time and robust accuracy next to the early-stop-off run (same robust
  accuracy up to the randomness of the attack, far less time on an undefended model);
* peers: if ``/tmp/peers`` holds a venv with torchattacks (``pip install --no-deps torchattacks``
  next to the same torch), its PGD-40 on the same model and points, in its own process.

    .venv/bin/python benchmarks/bench_gradient.py [--quick] [--repeats N]

Writes ``benchmarks/results/gradient.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import floor_seconds, timed, write_results  # noqa: E402

from advrobust.attacks.apgd import APGD  # noqa: E402
from advrobust.attacks.gradient import FGSM, MIFGSM, PGD  # noqa: E402
from advrobust.threat import Linf  # noqa: E402

EPS = 0.3
PEERS = Path("/tmp/peers/bin/python")


def load_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The project's default model when it exists, else the same architecture trained here (~10 s)."""
    try:
        from common import bench_model

        return bench_model()
    except ImportError:
        pass
    from advrobust.data import load
    from advrobust.models.architectures import create

    train, test = load("mnist-5k", split="train"), load("mnist-5k", split="test")
    torch.manual_seed(0)
    model = create("mnist-cnn", num_classes=10, input_shape=(1, 28, 28))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        perm = torch.randperm(len(train.y))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(train.x[b]), train.y[b]).backward()
            opt.step()
    return model.eval(), test.x, test.y


def forward_seconds(model: nn.Module, x: torch.Tensor, passes: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(passes):
                model(x)
        best = min(best, time.perf_counter() - start)
    return best


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, success: torch.Tensor) -> float:
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    return float((correct & ~success).float().mean())


def attacks(early_stop: bool) -> dict[str, tuple[object, int, int]]:
    """name -> (attack, gradient passes, forward-only passes) with early stop on or off."""
    threat = Linf(EPS)
    return {
        "fgsm": (FGSM(threat), 1, 2),
        "pgd-40": (PGD(threat, steps=40, early_stop=early_stop), 40, 3),
        "mi-fgsm-10": (MIFGSM(threat, steps=10, early_stop=early_stop), 10, 3),
        "apgd-100": (APGD(threat, steps=100, early_stop=early_stop), 100, 3),
    }


def bench_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    fwd = forward_seconds(model, x, 10) / 10
    on = attacks(early_stop=True)
    for name, (attack, grads, forwards) in attacks(early_stop=False).items():
        floor = floor_seconds(model, x, y, grads, repeats=repeats)
        wall, res = timed(lambda a=attack: a(model, x, y), repeats=repeats)
        row = {
            "gradient_passes": grads,
            "forward_passes": forwards,
            "floor_s": floor,
            "wall_s": wall,
            "ratio_to_floor": wall / floor,
            "ratio_to_floor_with_forwards": wall / (floor + forwards * fwd),
            "robust_accuracy": robust_accuracy(model, x, y, res.success),
        }
        if name != "fgsm":
            wall_on, res_on = timed(lambda a=on[name][0]: a(model, x, y), repeats=repeats)
            row.update(
                early_stop_wall_s=wall_on,
                early_stop_robust_accuracy=robust_accuracy(model, x, y, res_on.success),
                early_stop_speedup=wall / wall_on,
                early_stop_mean_queries=float(res_on.queries.float().mean()),
            )
        out[name] = row
        print(f"  {name:11s} ratio {row['ratio_to_floor']:.3f}  " + (
            f"early stop x{row['early_stop_speedup']:.1f}" if "early_stop_speedup" in row else ""), flush=True)
    return out


PEER_SCRIPT = r"""
import json, sys, time
import torch, torchattacks
torch.set_num_threads(2)
model = torch.jit.load(sys.argv[1])
x, y = torch.load(sys.argv[2])
atk = torchattacks.PGD(model, eps=0.3, alpha=2.5 * 0.3 / 40, steps=40, random_start=True)
best = float("inf")
for _ in range(int(sys.argv[3])):
    start = time.perf_counter(); adv = atk(x, y); best = min(best, time.perf_counter() - start)
with torch.no_grad():
    robust = ((model(x).argmax(1) == y) & (model(adv).argmax(1) == y)).float().mean().item()
print(json.dumps({"torchattacks": torchattacks.__version__, "wall_s": best, "robust_accuracy": robust}))
"""


def bench_peers(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict | None:
    """torchattacks' PGD-40 on the same points, in the throwaway venv (never a dependency).

    Both sides attack the same TorchScript trace of the model (the peer process cannot import
    advrobust), so ours/theirs compares the attacks, not the module's form.
    """
    if not PEERS.exists():
        return None
    traced = torch.jit.trace(model, x[:2])
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / name for name in ("model.pt", "data.pt", "peer.py")]
        traced.save(str(files[0]))
        torch.save((x, y), files[1])
        files[2].write_text(PEER_SCRIPT)
        cmd = [str(PEERS), str(files[2]), str(files[0]), str(files[1]), str(repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    peer = json.loads(proc.stdout.strip().splitlines()[-1])
    for early_stop in (False, True):
        attack = PGD(Linf(EPS), steps=40, early_stop=early_stop)
        wall, res = timed(lambda a=attack: a(traced, x, y), repeats=repeats)
        key = "on" if early_stop else "off"
        peer[f"ours_pgd40_early_stop_{key}_wall_s"] = wall
        peer[f"ours_pgd40_early_stop_{key}_robust_accuracy"] = robust_accuracy(traced, x, y, res.success)
        peer[f"ours_over_theirs_early_stop_{key}"] = wall / peer["wall_s"]
    return peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 200 only")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs (default 1: ~3 min)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    repeats = max(1, args.repeats)
    model, x_all, y_all = load_model()
    results: dict[str, object] = {"eps": EPS, "norm": "linf", "batches": {}}
    for n in (200,) if args.quick else (200, 500):
        print(f"batch {n}", flush=True)
        x, y = x_all[:n], y_all[:n]
        row = bench_batch(model, x, y, repeats)
        peer = bench_peers(model, x, y, repeats)
        results["batches"][str(n)] = {"attacks": row, "peers": peer}
    path = write_results("gradient", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
