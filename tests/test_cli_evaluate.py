"""End to end through ``advrobust.cli.main.main``: evaluate, results, audit, transfer, and the
one-line errors (exit 1) for unknown data, a missing folder, a corrupt checkpoint, a wrong shape."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.cli.main import main
from advrobust.evaluation import EvaluationResult
from advrobust.evaluation.store import ResultStore

# the tests hand the CLI TorchScript files, as users do; torch deprecates writing and reading them
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


def _script(model: nn.Module, path) -> str:
    torch.jit.save(torch.jit.trace(model.eval(), torch.rand(1, 1, 28, 28)), str(path))
    return str(path)


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code)


class Quantized(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Run directories and the default store go to a temporary cache, never the user's."""
    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path / "cache"))


@pytest.fixture
def cnn_file(small_cnn, tmp_path):
    return _script(small_cnn, tmp_path / "cnn.pt")


def test_evaluate_end_to_end_then_results(cnn_file, tmp_path, capsys):
    db, out = tmp_path / "r.sqlite", tmp_path / "r.json"
    argv = ["evaluate", "--model", cnn_file, "--n", "30", "--eps", "0.1,0.3", "--attack", "fgsm",
            "--attack", "pgd", "--db", str(db), "--json", str(out), "--batch-size", "16"]
    assert _exit_code(argv) == 0
    assert not any((tmp_path / "cache" / "runs").glob("*"))  # its own run folder is gone once done
    printed = capsys.readouterr().out
    assert "robust [95% CI]" in printed and "pgd" in printed and "clean accuracy" in printed
    result = EvaluationResult.load(out)
    assert result.n_points == 30 and result.epsilons == [0.1, 0.3] and result.attacks == ["fgsm", "pgd"]
    assert result.robust_accuracy[0.3] <= result.robust_accuracy[0.1] <= result.clean_accuracy
    assert f"{100 * result.robust_accuracy[0.1]:.1f}%" in printed
    # the same numbers as the Python API on the same points
    data = ar.data.load("mnist-5k", split="test").subset(30, seed=0)
    model = torch.jit.load(cnn_file)
    direct = ar.evaluate(model, data.x, data.y, epsilons=[0.1, 0.3], suite=["fgsm", "pgd"], batch_size=16)
    assert torch.equal(direct.robust, result.robust)
    # recorded in the store, listed by `advrobust results`, exported
    rows = ResultStore(db).rows()
    assert len(rows) == 1 and rows[0].robust_accuracy[0.3][0] == result.robust_accuracy[0.3]
    assert _exit_code(["results", "--db", str(db), "--csv", str(tmp_path / "r.csv")]) == 0
    listing = capsys.readouterr().out
    assert "cnn" in listing and f"{100 * result.robust_accuracy[0.3]:.1f}%" in listing
    assert (tmp_path / "r.csv").read_text().count("\n") == 2
    assert _exit_code(["results", "--db", str(db), "--show", str(rows[0].id)]) == 0
    assert _exit_code(["results", "--db", str(db), "--show", "99"]) == 1


def test_audit_command_fails_masked_model_with_exit_3(small_cnn, tmp_path, capsys):
    masked = _script(Quantized(small_cnn), tmp_path / "masked.pt")
    out = tmp_path / "audit.json"
    argv = ["audit", "--model", masked, "--n", "10", "--steps", "5", "--json", str(out)]
    assert _exit_code(argv) == 3
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "gradients" in printed
    saved = json.loads(out.read_text())
    assert saved["passed"] is False and any(c["verdict"] == "fail" for c in saved["checks"])


def test_transfer_command(small_cnn, tmp_path, capsys):
    a = _script(small_cnn, tmp_path / "a.pt")
    b = _script(Quantized(small_cnn), tmp_path / "b.pt")
    out = tmp_path / "t.json"
    argv = ["transfer", "--model", a, "--model", b, "--n", "20", "--attack", "fgsm", "--json", str(out)]
    assert _exit_code(argv) == 0
    printed = capsys.readouterr().out
    assert "white-box" in printed and "*" in printed
    saved = json.loads(out.read_text())
    assert saved["sources"] == ["a", "b"] and len(saved["matrix"]) == 2 and len(saved["matrix"][0]) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "no-such-data"], "no-such-data"),
        (["--data", "mnist", "--root", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--model", "CORRUPT"], "corrupt"),
        (["--model", "WRONG_SHAPE"], "shape"),
    ],
)
def test_user_errors_are_one_line_exit_1(extra, message, tmp_path, capsys, cnn_file):
    if "CORRUPT" in extra:
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"\x00garbage" * 64)
        extra = ["--model", str(bad)]
    elif "WRONG_SHAPE" in extra:
        rgb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
        rgb(torch.rand(1, 3, 32, 32))
        path = tmp_path / "rgb.pt"
        torch.jit.save(torch.jit.trace(rgb.eval(), torch.rand(1, 3, 32, 32)), str(path))
        extra = ["--model", str(path)]
    else:
        extra = ["--model", cnn_file, *extra]
    assert _exit_code(["evaluate", "--n", "10", "--no-store", *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and message.lower() in err.lower()
