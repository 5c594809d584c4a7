"""advrobust.training: fit, determinism, checkpoint/resume, early stopping, methods, schedules, logs."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn

from advrobust.data.dataset import Dataset
from advrobust.errors import InputError
from advrobust.models import create, fingerprint
from advrobust.progress import SILENT
from advrobust.training import (
    METHODS,
    EarlyStopping,
    Standard,
    Stop,
    accuracy,
    create_method,
    fit,
    method_names,
)
from advrobust.training.engine import STATE_FILE, load_state
from advrobust.training.schedules import SCHEDULES, make_scheduler

TINY_CNN = {"width": 8, "hidden": 32}
CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def tiny(mnist_split) -> tuple[Dataset, Dataset]:
    """600 train digits (60 per class) and 300 validation digits (30 per class) of mnist-5k."""
    x_train, y_train, x_test, y_test = mnist_split
    tr = torch.cat([torch.arange(c * 400, c * 400 + 60) for c in range(10)])
    te = torch.cat([torch.arange(c * 100, c * 100 + 30) for c in range(10)])
    return (Dataset("mnist-5k", "train", x_train[tr], y_train[tr], CLASSES),
            Dataset("mnist-5k", "test", x_test[te], y_test[te], CLASSES))


def _model(seed: int = 0) -> nn.Module:
    return create("mnist-cnn", 10, (1, 28, 28), seed=seed, **TINY_CNN)


FAST = {"epochs": 3, "batch_size": 32, "lr": 0.005, "optimizer": "adam", "seed": 0}


def test_training_improves_accuracy(tiny):
    train, val = tiny
    model = _model()
    before = accuracy(model, val)
    history = fit(model, train, val, **FAST)
    assert len(history) == 3
    assert history.records[-1].val_acc == pytest.approx(accuracy(model, val))
    assert history.records[-1].val_acc >= 0.6 > before + 0.3  # 3 short epochs on 600 digits
    assert history.records[-1].train_loss < history.records[0].train_loss
    # a cosine schedule: the recorded learning rate falls epoch after epoch
    lrs = [r.lr for r in history.records]
    assert lrs[0] > lrs[1] > lrs[2] > 0
    assert history.monitor == "val_acc" and history.best_epoch is not None and history.stop_reason is None


def test_same_seed_same_weights_other_seed_other_weights(tiny):
    train, _ = tiny
    small = {**FAST, "epochs": 1}
    a, b, c = _model(), _model(), _model()
    ha = fit(a, train, **small)
    hb = fit(b, train, **small)
    fit(c, train, **{**small, "seed": 1})
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert ha.records[0].train_loss == hb.records[0].train_loss


def test_fit_leaves_the_callers_rng_alone(tiny):
    train, _ = tiny
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    fit(_model(), train, **{**FAST, "epochs": 1})
    assert torch.equal(torch.rand(3), expected)


class _KillAt:
    """A progress sink that 'kills' the run (KeyboardInterrupt) when the given epoch starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def task(self, description: str, total: int | None = None):
        if description.startswith(f"epoch {self.epoch}/"):
            raise KeyboardInterrupt
        return SILENT.task(description, total)


def _metrics(history):
    return [(r.epoch, r.train_loss, r.train_acc, r.val_acc, r.lr) for r in history.records]


def test_resume_after_kill_reproduces_the_uninterrupted_run(tiny, tmp_path):
    train, val = tiny
    settings = {**FAST, "epochs": 2, "schedule": "onecycle", "optimizer": "adam", "lr": 0.005}
    whole = _model()
    expected = fit(whole, train, val, **settings)

    killed = _model()
    with pytest.raises(KeyboardInterrupt):
        fit(killed, train, val, checkpoint_dir=tmp_path, progress=_KillAt(2), **settings)
    state = load_state(tmp_path / STATE_FILE)  # loads with weights_only=True
    assert state["epoch"] == 1

    resumed = _model(seed=99)  # a fresh process would build an untrained model: the state must win
    history = fit(resumed, train, val, checkpoint_dir=tmp_path, **settings)
    assert fingerprint(resumed) == fingerprint(whole)
    assert _metrics(history) == _metrics(expected)

    # a finished run resumes to a no-op; other settings are refused, not silently mixed
    again = _model(seed=5)
    fit(again, train, val, checkpoint_dir=tmp_path, **settings)
    assert fingerprint(again) == fingerprint(whole)
    with pytest.raises(InputError, match="other settings.*lr"):
        fit(_model(), train, val, checkpoint_dir=tmp_path, **{**settings, "lr": 0.01})
    other = Dataset("mnist-5k", "train", train.x.flip(0), train.y.flip(0), CLASSES)  # same size, other order
    with pytest.raises(InputError, match="other settings.*train_data"):
        fit(_model(), other, val, checkpoint_dir=tmp_path, **settings)
    # resume=False starts over (and overwrites the state)
    fresh = _model()
    fit(fresh, train, val, checkpoint_dir=tmp_path, resume=False, **settings)
    assert fingerprint(fresh) == fingerprint(whole)


def test_corrupt_state_gives_a_clear_error(tiny, tmp_path):
    train, _ = tiny
    (tmp_path / STATE_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read the training state.*--no-resume"):
        fit(_model(), train, checkpoint_dir=tmp_path, **FAST)


def test_logs_one_row_per_epoch_as_csv_and_jsonl(tiny, tmp_path):
    train, val = tiny
    history = fit(_model(), train, val, log_path=tmp_path / "log.csv", **{**FAST, "epochs": 2})
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["val_acc"]) == pytest.approx(history.records[1].val_acc)
    history.write(tmp_path / "log.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["train_loss"] for x in lines] == [r.train_loss for r in history.records]
    assert lines[0]["val_robust_acc"] is None


class _Sabotage(Standard):
    """Standard training that turns to wrong labels (y + 1 mod 10) after the first epoch: val
    accuracy peaks at epoch 1 and then collapses, so the best weights are those of epoch 1."""

    name = "sabotage"

    def loss(self, model, x, y, progress):
        return super().loss(model, x, (y + 1) % 10 if progress >= 1 / 4 else y, progress)


def test_early_stopping_keeps_the_best_weights(tiny):
    train, val = tiny
    model = _model()
    # the sabotage is a collapse (validation accuracy falls to 0): the check is off to see early stopping
    history = fit(model, train, val, method=_Sabotage(), early_stopping=EarlyStopping("val_acc", patience=2),
                  collapse=None, **{**FAST, "epochs": 4})
    accs = history.column("val_acc")
    assert history.best_epoch == 1 + accs.index(max(accs))
    assert history.stop_reason is not None and "did not improve for 2 epochs" in history.stop_reason
    assert history.best_epoch == 1 and len(history) == 3  # epochs 2 and 3 did not improve: stop
    assert accuracy(model, val) == pytest.approx(max(accs))  # the model holds the best, not the last, weights
    assert accs[-1] < max(accs)


class _StopAtTwo(Standard):
    name = "stopper"

    def on_epoch_end(self, history):
        if len(history) == 1:
            return "a warning only"
        return Stop("collapse detected") if len(history) == 2 else None


def test_a_method_can_warn_and_stop(tiny):
    train, val = tiny
    history = fit(_model(), train, val, method=_StopAtTwo(), **{**FAST, "epochs": 4})
    assert len(history) == 2
    assert history.records[0].note == "a warning only"
    assert history.records[1].note == "collapse detected" == history.stop_reason


class _SabotageThenStop(_Sabotage):
    name = "sabotage-stop"

    def on_epoch_end(self, history):
        return Stop("collapse") if len(history) == 3 else None


def test_a_stopping_method_gets_the_best_robust_weights(tiny):
    """Stopped by the method while robust validation accuracy is monitored: the best robust epoch
    (epoch 1, before the labels go wrong) is what the model holds, not the collapsed last one."""
    pytest.importorskip("advrobust.attacks.gradient")
    from advrobust.attacks import create as create_attack

    train, val = tiny
    model = _model()
    attack = create_attack("fgsm", eps=0.01)
    history = fit(model, train, val, method=_SabotageThenStop(), val_attack=attack, val_points=len(val),
                  **{**FAST, "epochs": 5})
    robust = history.column("val_robust_acc")
    assert len(history) == 3 and history.stop_reason == "collapse"
    assert history.best_epoch == history.final_epoch == 1 and robust[0] > robust[-1]
    clean = model(val.x).argmax(1) == val.y
    assert float((clean & ~attack(model, val.x, val.y).success).float().mean()) == pytest.approx(robust[0])


def test_val_attack_measures_robust_accuracy(tiny):
    pytest.importorskip("advrobust.attacks.gradient")
    from advrobust.attacks import create as create_attack

    train, val = tiny
    model = _model()
    weak, strong = create_attack("fgsm", eps=0.02), create_attack("pgd", eps=0.3, steps=10)
    history = fit(model, train, val, val_attack=weak, val_points=len(val), **{**FAST, "epochs": 1})
    record = history.records[0]
    assert history.monitor == "val_robust_acc"
    # recomputed by hand on the same (here: all) points: correct on the clean input and not broken
    clean = model(val.x).argmax(1) == val.y
    weak_robust = float((clean & ~weak(model, val.x, val.y).success).float().mean())
    strong_robust = float((clean & ~strong(model, val.x, val.y).success).float().mean())
    assert record.val_robust_acc == pytest.approx(weak_robust)
    assert strong_robust < weak_robust <= record.val_acc
    subset = fit(_model(), train, val, val_attack=weak, val_points=50, **{**FAST, "epochs": 1})
    assert (subset.records[0].val_robust_acc * 50) == pytest.approx(round(subset.records[0].val_robust_acc * 50))


def test_bad_arguments_fail_early(tiny):
    train, val = tiny
    with pytest.raises(InputError, match="optimizer"):
        fit(_model(), train, optimizer="rmsprop")
    with pytest.raises(InputError, match="schedule"):
        fit(_model(), train, schedule="step", epochs=1)
    with pytest.raises(InputError, match="validation set"):
        fit(_model(), train, early_stopping=EarlyStopping("val_acc"))
    with pytest.raises(InputError, match="val_attack"):
        fit(_model(), train, val, early_stopping=EarlyStopping())
    with pytest.raises(InputError, match="unknown training method 'magic'.*standard"):
        fit(_model(), train, method="magic")


def test_method_registry_and_standard_loss():
    assert "standard" in method_names() and METHODS["standard"] is Standard
    method = create_method("standard")
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    loss, logits = method.loss(model, x, y, 0.5)
    assert torch.allclose(loss, nn.functional.cross_entropy(model(x), y))
    assert torch.equal(logits, model(x)) and method.describe() == {"method": "standard"}
    with pytest.raises(InputError, match="bad options"):
        create_method("standard", eps=0.3)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_have_their_shape(name):
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = make_scheduler(name, opt, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(100), key=lambda i: lrs[i])
    if name == "constant":
        assert lrs == [1.0] * 100
    elif name == "cosine":
        assert lrs[0] == 1.0 and lrs[50] == pytest.approx(0.5) and lrs[99] < 1e-3
        assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    elif name == "cyclic":  # Wong et al. 2020: 0 -> peak at 2/5 -> 0
        assert lrs[0] == 0.0 and peak == 40 and lrs[40] == pytest.approx(1.0) and lrs[99] < 0.02
    else:  # onecycle: from max/25 up to max at 30 %, then down to max/(25·10^4)
        assert lrs[0] == pytest.approx(1 / 25) and peak == 30 and lrs[99] < 1e-3
    assert all(0 <= v <= 1 + 1e-12 and not math.isnan(v) for v in lrs)


def test_amp_bf16_on_cpu_still_learns(tiny):
    train, val = tiny
    model = _model()
    history = fit(model, train, val, amp=True, **{**FAST, "epochs": 2})
    full = fit(_model(), train, val, **{**FAST, "epochs": 2})
    assert history.records[-1].val_acc >= max(0.3, full.records[-1].val_acc - 0.15)  # bf16: about as good
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never changes the weights
