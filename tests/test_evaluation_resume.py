"""Resuming after an interruption (an exception, or ``kill -9`` of the process) and sharding across
two processes (gloo) both give exactly the numbers of one uninterrupted single-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import advrobust as ar

BUILD = textwrap.dedent(
    """
    import torch
    from torch import nn
    import advrobust as ar

    KW = {"epsilons": [0.03, 0.1], "suite": ["fgsm", "pgd"], "batch_size": 8}

    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5))
        x = torch.rand(45, 1, 8, 8, generator=torch.Generator().manual_seed(1))
        y = model(x).argmax(1)
        y[:4] = (y[:4] + 1) % 5
        return model.eval(), x, y
    """
)

SCRIPT = BUILD + textwrap.dedent(
    """
    import os, signal, sys
    from advrobust.distributed import join, rank_and_world

    torch.set_num_threads(1)
    run_dir, out, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class KillAfter:
        count = 0
        def task(self, description, total=None):
            return self
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return None
        def advance(self, n=1, **metrics):
            KillAfter.count += n
            if KillAfter.count == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    join()
    model, x, y = build()
    res = ar.evaluate(model, x, y, run_dir=None if run_dir == "-" else run_dir, progress=KillAfter(), **KW)
    if rank_and_world()[0] == 0:
        open(out, "w").write(res.to_json())
    """
)


def _comparable(d: dict) -> dict:
    """The result without wall-clock fields."""
    d = {k: v for k, v in d.items() if k not in ("timestamp", "seconds", "versions")}
    d["per_attack"] = [{k: v for k, v in r.items() if k != "seconds"} for r in d["per_attack"]]
    return d


def _run(tmp: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    script = tmp / "evaluate_script.py"
    script.write_text(SCRIPT)
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, str(script), *args], env=full_env, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> int:
    _, err = proc.communicate(timeout=240)
    if proc.returncode not in (0, -9):
        raise AssertionError(err.decode())
    return proc.returncode


@pytest.fixture(scope="module")
def reference() -> dict:
    """One uninterrupted single-process run (in this process: same code, same thread count)."""
    namespace: dict = {}
    exec(BUILD, namespace)  # noqa: S102 - the same model and data as the subprocesses build
    model, x, y = namespace["build"]()
    return _comparable(ar.evaluate(model, x, y, **namespace["KW"]).to_dict())


@pytest.mark.slow
def test_resume_after_kill_9_gives_the_same_numbers(tmp_path, reference):
    run_dir, out = tmp_path / "run", tmp_path / "out.json"
    assert _finish(_run(tmp_path, [str(run_dir), str(out), "5"])) == -9  # killed mid-run
    assert not out.exists()
    done = len(list((run_dir / "units").glob("*.pt")))
    assert 0 < done < 14  # some units were written, not all (2 attacks × 2 eps × ≤6 chunks)
    assert _finish(_run(tmp_path, [str(run_dir), str(out), "0"])) == 0
    assert _comparable(json.loads(out.read_text())) == reference


@pytest.mark.slow
def test_two_sharded_processes_equal_one(tmp_path, reference):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(_run(tmp_path, ["-", str(tmp_path / "sharded.json"), "0"], env))
    assert [_finish(p) for p in procs] == [0, 0]
    assert _comparable(json.loads((tmp_path / "sharded.json").read_text())) == reference


class _Stop(Exception):
    pass


class _StopAfter:
    """A progress sink that raises after ``n`` finished units (an interruption mid-run)."""

    def __init__(self, n: int) -> None:
        self.n, self.count = n, 0

    def task(self, description: str, total: int | None = None) -> _StopAfter:
        return self

    def __enter__(self) -> _StopAfter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, n: int = 1, **metrics: object) -> None:
        self.count += n
        if self.count == self.n:
            raise _Stop


class _Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_resume_in_process_skips_finished_units(tmp_path, linear_model):
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    y = linear_model(x).argmax(1)
    model = _Counting(linear_model)
    kw = {"epsilons": [0.1, 0.4], "suite": ["fgsm", "pgd"], "batch_size": 8}
    full = ar.evaluate(model, x, y, **kw)
    full_calls = model.calls
    with pytest.raises(_Stop):
        ar.evaluate(model, x, y, run_dir=tmp_path / "run", progress=_StopAfter(6), **kw)
    model.calls = 0
    resumed = ar.evaluate(model, x, y, run_dir=tmp_path / "run", **kw)
    assert model.calls < full_calls  # finished units were loaded, not recomputed
    assert _comparable(resumed.to_dict()) == _comparable(full.to_dict())
    with pytest.raises(ar.InputError, match="another evaluation"):
        ar.evaluate(model, x, y, run_dir=tmp_path / "run", **{**kw, "epsilons": [0.2]})
