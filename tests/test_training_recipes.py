"""Default recipes, collapse detection, robust validation by default, and the CLI's recipe/verification."""

from __future__ import annotations

import math
import re

import pytest
import torch

from advrobust.cli.main import main
from advrobust.data import load
from advrobust.errors import InputError
from advrobust.evaluation.store import ResultStore
from advrobust.models import create, load_checkpoint
from advrobust.training import RECIPES, CollapseRule, FitConfig, create_method, fit, recipe_for
from advrobust.training.collapse import detect
from advrobust.training.engine import STATE_FILE, load_state
from advrobust.training.history import EpochRecord

TINY = {"width": 16}


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code)


@pytest.fixture(scope="module")
def digits():
    """2048 training digits (stratified) and 100 test digits of mnist-5k."""
    train = load("mnist-5k", split="train").subset(2048, seed=0)
    test = load("mnist-5k", split="test").subset(100, seed=0)
    return train, test


def _model():
    return create("mnist-cnn", 10, (1, 28, 28), seed=0, **TINY)


def _records(rows: list[tuple[float, float, float | None, float | None]]) -> list[EpochRecord]:
    """(train loss, train acc, val acc, val robust acc) per epoch."""
    return [EpochRecord(i + 1, loss, acc, val, rob, 0.01, 1.0) for i, (loss, acc, val, rob) in enumerate(rows)]


# --- the collapse rule, on synthetic histories ------------------------------------------------------
def test_chance_accuracy_is_a_failure_after_patience_epochs():
    stuck = (2.302, 0.10, 0.10, None)
    assert detect(_records([stuck]), epochs=10, num_classes=10) is None  # one epoch: wait
    failure = detect(_records([stuck, stuck]), epochs=10, num_classes=10, lr=0.05)
    assert failure is not None and "at chance" in failure.reason and "lr 0.005" in failure.fix
    assert "\n" not in str(failure) and "likely fix" in str(failure)
    # at the last planned epoch one epoch is enough: the run is over and the model untrained
    assert detect(_records([stuck]), epochs=1, num_classes=10) is not None


def test_no_failure_during_the_warmup_nor_on_a_learning_run():
    stuck = (2.302, 0.10, 0.10, None)
    assert detect(_records([stuck] * 3), epochs=10, num_classes=10, warmup=0.4) is None  # epoch 3 < 4
    assert detect(_records([stuck] * 4), epochs=10, num_classes=10, warmup=0.4) is not None
    # an adversarial run: robust training loss near ln K, clean validation accuracy rising
    learning = [(2.31, 0.08, 0.35, 0.0), (2.25, 0.12, 0.60, 0.02)]
    assert detect(_records(learning), epochs=2, num_classes=10) is None
    # without a validation set the training loss stuck at ln K is the signal
    assert detect(_records([(2.30, 0.3, None, None)] * 2), epochs=5, num_classes=10) is not None
    assert detect(_records([(1.20, 0.6, None, None)] * 2), epochs=5, num_classes=10) is None


def test_a_non_finite_loss_fails_at_once_even_in_the_warmup():
    failure = detect(_records([(math.nan, 0.1, 0.1, None)]), epochs=10, num_classes=10, warmup=0.5, lr=1.0)
    assert failure is not None and "nan" in failure.reason and "learning rate" in failure.fix


def test_a_robust_collapse_is_a_failure():
    rows = [(0.9, 0.7, 0.97, 0.80), (0.8, 0.75, 0.97, 0.85), (0.7, 0.8, 0.98, 0.62)]
    failure = detect(_records(rows), epochs=10, num_classes=10)
    assert failure is not None and "85.0%" in failure.reason and "62.0%" in failure.reason
    rows[-1] = (0.7, 0.8, 0.98, 0.70)  # 15 points: noise of a 200-point estimate, not a collapse
    assert detect(_records(rows), epochs=10, num_classes=10) is None
    assert detect(_records(rows), epochs=10, num_classes=10, rule=CollapseRule(robust_drop=0.1)) is not None


# --- fit ----------------------------------------------------------------------------------------------
def test_an_absurd_learning_rate_is_reported_not_returned_as_trained(digits):
    train, test = digits
    history = fit(_model(), train.subset(256, seed=0), test, method="standard", epochs=3, lr=50.0)
    assert history.failed and history.status == "failed"
    assert "learning rate" in history.stop_reason and len(history) < 3  # stopped, not run to the end


#: (training digits, epochs) per method: a few dozen optimizer steps of its recipe
BRIEF = {"standard": (512, 4), "fgsm-rs": (2048, 3), "fgsm-ep": (2048, 5), "pgd-at": (1024, 3), "trades": (1024, 3)}
#: settings of the method that judges the brief run, where they differ from the trained one's: FGSM-EP's
#: regularizer β·MSE(f(x_adv), f(x_start)) grows with the logits' scale while the network learns (an
#: untrained network's logits are all alike), so it is judged on its adversarial cross-entropy
JUDGED_WITH = {"fgsm-ep": {"beta": 0.0}}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BRIEF))
def test_each_default_recipe_lowers_its_loss(digits, name):
    """The recipe (optimizer, peak lr, schedule, warm-up, inner attack), shortened to a few epochs on
    a subset, lowers the method's objective at full eps on a fixed batch, and is not judged failed."""
    train, test = digits
    n, epochs = BRIEF[name]
    train = train.subset(n, seed=0)
    model = _model()
    method = create_method(name, **recipe_for(name).method_options())
    judge = create_method(name, **{**recipe_for(name).method_options(), **JUDGED_WITH.get(name, {})})
    x, y = train.x[:128], train.y[:128]

    def objective() -> float:
        torch.manual_seed(0)
        loss, _ = judge.loss(model.eval(), x, y, progress=1.0)
        return float(loss.detach())

    before = objective()
    history = fit(model, train, test, method=method, epochs=epochs, val_points=20)
    recipe = recipe_for(name)
    assert {k: history.config[k] for k in ("optimizer", "lr", "schedule", "batch_size", "shift")} == {
        "optimizer": recipe.optimizer, "lr": recipe.lr, "schedule": recipe.schedule, "batch_size": recipe.batch_size,
        "shift": recipe.shift}
    assert history.config["method"].get("warmup") == recipe.warmup
    assert history.status == "completed", history.stop_reason
    assert objective() < before - 0.1, (name, before, objective())


def test_robust_validation_is_on_by_default_for_adversarial_methods(digits):
    train, test = digits[0].subset(256, seed=0), digits[1]
    history = fit(_model(), train, test, method=create_method("fgsm-rs", eps=0.1), epochs=1, val_points=30)
    assert history.records[0].val_robust_acc is not None
    assert history.config["val_attack"]["name"] == "pgd" and history.config["val_attack"]["eps"] == 0.1
    plain = fit(_model(), train, test, method="standard", epochs=1)
    assert plain.records[0].val_robust_acc is None and plain.config["val_attack"] is None
    off = fit(_model(), train, test, method=create_method("fgsm-rs", eps=0.1), epochs=1, val_attack=None)
    assert off.records[0].val_robust_acc is None


def test_fit_config_and_keywords_agree(digits):
    train = digits[0].subset(256, seed=0)
    config = FitConfig.from_recipe(recipe_for("standard"), epochs=1, optimizer="adam", lr=0.005)
    a, b = _model(), _model()
    fit(a, train, None, config)
    fit(b, train, method="standard", epochs=1, optimizer="adam", lr=0.005)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(InputError, match="no option lrate"):
        fit(_model(), train, lrate=0.1)
    with pytest.raises(InputError, match="optimizer"):
        FitConfig(optimizer="rmsprop")


# --- the CLI ----------------------------------------------------------------------------------------------
def _shown_recipe(text: str) -> dict[str, str]:
    block = text.split("Recipe of --method", 1)[1]
    return dict(re.findall(r"^  ([a-z-]+) {2,}(\S.*)$", block, flags=re.M))


def test_help_shows_the_documented_recipe(capsys):
    for name, recipe in RECIPES.items():
        assert _run(["train", "--method", name, "--help"]) == 0
        shown = _shown_recipe(capsys.readouterr().out)
        assert shown["epochs"] == str(recipe.epochs) and shown["optimizer"] == recipe.optimizer
        assert float(shown["lr"]) == recipe.lr and shown["schedule"] == recipe.schedule
        assert shown["shift"] == str(recipe.shift)
        if recipe.warmup is not None:
            assert float(shown["warmup"]) == recipe.warmup and float(shown["eps"]) == 0.3
        if recipe.beta is not None:  # TRADES' β, FGSM-EP's λ
            assert float(shown["beta"]) == recipe.beta
    assert _run(["train", "--method", "pgd-at", "--steps", "4", "-h"]) == 0
    assert _shown_recipe(capsys.readouterr().out)["step-size"] == "0.1875"  # 2.5·0.3/4
    # FGSM-EP's own option, and one its constructor passes on to FGSM-RS's (**kwargs)
    assert _run(["train", "--method", "fgsm-ep", "--beta", "4", "--step-size", "0.3", "-h"]) == 0
    shown = _shown_recipe(capsys.readouterr().out)
    assert shown["beta"] == "4" and shown["step-size"] == "0.3"
    assert shown["inner-attack"] == "fgsm-rs from the epoch prior"


def test_the_recipe_shown_is_the_one_used_and_the_model_is_verified(tmp_path, capsys):
    out, db = tmp_path / "t.safetensors", tmp_path / "r.sqlite"
    flags = ["--method", "trades", "--limit", "600", "--width", "16", "--epochs", "2", "--batch-size", "32",
             "--optimizer", "sgd", "--lr", "0.03", "--momentum", "0.8", "--steps", "2", "--beta", "3", "--eps", "0.2",
             "--shift", "1", "--val-points", "20"]
    assert _run(["train", *flags, "--help"]) == 0
    shown = _shown_recipe(capsys.readouterr().out)
    assert _run(["train", *flags, "--verify-points", "20", "--db", str(db), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    state = load_state(tmp_path / "t.state" / STATE_FILE)
    used = {**state["config"], **state["history"]["config"]}
    meta = load_checkpoint(out)[1]
    method = used["method"]
    for flag in ("epochs", "batch-size", "optimizer", "lr", "momentum", "weight-decay", "schedule", "shift"):
        assert shown[flag] == f"{used[flag.replace('-', '_')]:g}" if flag not in ("optimizer", "schedule") \
            else shown[flag] == used[flag]
    assert float(shown["eps"]) == method["eps"] == 0.2 and shown["norm"] == method["norm"]
    assert float(shown["warmup"]) == method["warmup"] and float(shown["beta"]) == method["beta"] == 3
    assert shown["inner-attack"] == method["attack"]["name"] and int(shown["steps"]) == method["attack"]["steps"]
    assert float(shown["step-size"]) == pytest.approx(method["attack"]["alpha"]) == pytest.approx(0.25)
    assert shown["val-attack"].startswith(used["val_attack"]["name"]) and int(shown["val-points"]) == 20
    assert meta["training"]["lr"] == 0.03 and meta["training"]["status"] == "completed"
    assert meta["training"]["shift"] == used["shift"] == 1
    # the end-of-training evaluation: the standard suite on 20 test points, in the metadata and the store
    verified = meta["verification"]
    assert verified["suite"] == "standard" and verified["points"] == 20 and verified["eps"] == 0.2
    assert 0 <= verified["robust_accuracy"] <= verified["clean_accuracy"] <= 1
    assert "verified with the `standard` suite" in printed and "validation" in printed
    rows = ResultStore(db).rows(model="t")
    assert len(rows) == 1 and rows[0].suite == "standard" and rows[0].n_points == 20


def test_a_collapsing_run_exits_non_zero_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "c.safetensors"
    code = _run(["train", "--limit", "100", "--width", "8", "--epochs", "2", "--lr", "1000",
                 "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and not out.exists()
    assert err[-1].startswith("error: training failed:") and "likely fix" in err[-1]
    assert not any(line.startswith("saved") for line in err)


def test_standard_training_has_no_robust_validation_nor_verification(tmp_path):
    out = tmp_path / "s.safetensors"
    argv = ["train", "--limit", "300", "--width", "8", "--epochs", "2", "--optimizer", "adam", "--lr", "0.005",
            "--patience", "3", "--out", str(out)]
    assert _run(argv) == 0
    meta = load_checkpoint(out)[1]
    assert "verification" not in meta and "robust_accuracy" not in meta
    assert meta["training"]["status"] == "completed" and meta["training"]["optimizer"] == "adam"
