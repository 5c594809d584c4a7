"""The evaluation a user gets without choosing: the standard suite at the standard budget, and the
quick suite labelled for what it is (a smoke test) wherever its numbers are shown."""

from __future__ import annotations

import pytest
import torch

import advrobust as ar
from advrobust.cli.main import main
from advrobust.evaluation.suites import SUITES, suite_caveat
from advrobust.report import write_report

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path / "cache"))


def test_evaluate_defaults_to_the_standard_suite(small_cnn, mnist_batch):
    x, y = mnist_batch
    res = ar.evaluate(small_cnn, x[:24], y[:24])
    assert res.suite == "standard"
    assert res.attacks == [name if isinstance(name, str) else name[0] for name in SUITES["standard"]]
    assert res.epsilons == [0.3]
    assert res.robust_accuracy_at() == res.robust_accuracy[0.3]


def test_cli_defaults_to_standard_at_one_budget_and_flags_quick(small_cnn, tmp_path, capsys):
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.trace(small_cnn.eval(), torch.rand(1, 1, 28, 28)), str(path))
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--model", str(path), "--n", "20", "--no-store", "--json", str(tmp_path / "s.json")])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    standard = ar.evaluation.EvaluationResult.load(tmp_path / "s.json")
    assert standard.suite == "standard" and standard.epsilons == [0.3]
    assert "Not a robustness claim" not in printed

    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--model", str(path), "--n", "20", "--no-store", "--suite", "quick",
              "--json", str(tmp_path / "q.json")])
    assert info.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "Not a robustness claim" in printed and "smoke test" in printed

    quick = ar.evaluation.EvaluationResult.load(tmp_path / "q.json")
    page = write_report(tmp_path / "q.html", quick).read_text()
    assert "Not a robustness claim" in page and suite_caveat("quick").split(":")[0] in page
    page = write_report(tmp_path / "s.html", standard).read_text()
    assert "Not a robustness claim" not in page
