"""``--defence``, ``--bpda`` and ``--eot`` from the command line: the bundled defences by name, BPDA
that breaks what plain gradients cannot, and EOT draws that cost their queries."""

from __future__ import annotations

import pytest
import torch

from advrobust.cli.main import main
from advrobust.errors import InputError
from advrobust.evaluation import EvaluationResult
from advrobust.models.bpda import BPDA
from advrobust.models.defences import DEFENCES, Preprocessed, defend

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path / "cache"))


@pytest.fixture
def cnn_file(small_cnn, tmp_path):
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.trace(small_cnn.eval(), torch.rand(1, 1, 28, 28)), str(path))
    return str(path)


def _evaluate(argv: list[str], tmp_path, name: str) -> EvaluationResult:
    out = tmp_path / f"{name}.json"
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--n", "30", "--no-store", "--json", str(out), *argv])
    assert info.value.code == 0
    return EvaluationResult.load(out)


def test_every_named_defence_builds_and_is_listed_in_the_help(small_cnn, capsys):
    x = torch.rand(2, 1, 28, 28)
    for name, entry in DEFENCES.items():
        defended = defend(small_cnn, name)
        assert defended(x).shape == (2, 10)
        if entry.transform is not None:
            assert isinstance(defended, Preprocessed) and isinstance(defend(small_cnn, name, bpda=True), BPDA)
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, entry in DEFENCES.items():
        assert f"{name}[:{entry.parameter}={entry.default:g}]".replace(" ", "") in help_text.replace("- ", "-")


@pytest.mark.parametrize(("spec", "bpda", "message"), [
    ("blur:3", False, "unknown defence 'blur:3'"),
    ("jpeg:high", False, "quality must be a number"),
    ("noise:0.3", True, "BPDA is for non-differentiable"),
    ("bit-depth:12", False, "1 <= bits <= 8"),
])
def test_bad_defences_are_one_line_errors(small_cnn, spec, bpda, message):
    with pytest.raises(InputError, match=message):
        defend(small_cnn, spec, bpda=bpda)


def test_bpda_flag_breaks_what_the_quantized_model_hides(cnn_file, tmp_path):
    argv = ["--model", cnn_file, "--defence", "bit-depth:2", "--attack", "pgd", "--eps", "0.3"]
    plain = _evaluate(argv, tmp_path, "plain")
    through = _evaluate([*argv, "--bpda"], tmp_path, "bpda")
    assert plain.model_name.endswith("+ bit-depth:2") and through.model_name.endswith("(BPDA)")
    assert plain.clean_accuracy == through.clean_accuracy > 0.8  # the same deployed model
    robust_plain, robust_bpda = plain.robust_accuracy_at(), through.robust_accuracy_at()
    assert robust_plain > 0.6 and robust_bpda < 0.2, (robust_plain, robust_bpda)


def test_eot_flag_averages_over_draws_and_pays_for_them(cnn_file, tmp_path):
    argv = ["--model", cnn_file, "--defence", "bit-depth:2", "--attack", "pgd", "--eps", "0.1"]
    one = _evaluate(argv, tmp_path, "one")
    three = _evaluate([*argv, "--eot", "3"], tmp_path, "three")
    queries = [result.per_attack[0].mean_queries for result in (one, three)]
    assert queries[1] == pytest.approx(3 * queries[0], rel=0.05), queries


def test_bpda_without_a_defence_is_a_one_line_error(cnn_file, capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--model", cnn_file, "--n", "10", "--no-store", "--bpda"])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--defence bit-depth:2 --bpda" in err


def test_transform_flag_evaluates_the_model_as_a_camera_sees_it(cnn_file, tmp_path):
    argv = ["--model", cnn_file, "--attack", "pgd:steps=5", "--eps", "0.1"]
    plain = _evaluate(argv, tmp_path, "plain")
    seen = _evaluate([*argv, "--transform", "physical", "--eot", "2"], tmp_path, "physical")
    assert not plain.randomized and seen.randomized and "draws" in seen.verdict_rule  # a fresh draw per pass
    assert seen.model_name.endswith("under physical")
    assert seen.clean_accuracy < plain.clean_accuracy  # physical() moves digits more than this CNN bears
    assert seen.robust_accuracy_at() <= seen.clean_accuracy
