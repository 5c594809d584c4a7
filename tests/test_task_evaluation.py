"""Segmenters and detectors under attack end to end: evaluate_task, the results store, the report, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from advrobust.cli.main import main
from advrobust.errors import InputError
from advrobust.evaluation.store import ResultStore
from advrobust.evaluation.tasks import evaluate_task
from advrobust.models import save_checkpoint
from advrobust.models.dense import create_dense
from advrobust.report.tasks import write_task_report

sys.path.insert(0, str(Path(__file__).parent))
from test_dag import _square_detector, per_pixel_linear  # noqa: E402


def test_segmentation_metrics_fall_with_eps_and_the_worst_case_is_never_better(tmp_path):
    model = per_pixel_linear()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.35
    y = model(x).argmax(dim=1)
    store = ResultStore(tmp_path / "results.sqlite")
    ev = evaluate_task(model, x, y, attacks=["dag", "pgd"], epsilons=[0.02, 0.2], store=store, batch_size=4)
    assert ev.task == "segmentation" and ev.clean == {"miou": 1.0, "pixel_accuracy": 1.0}
    for attack in ("dag", "pgd", "worst"):
        assert ev.metrics["0.2"][attack]["pixel_accuracy"] <= ev.metrics["0.02"][attack]["pixel_accuracy"]
    for eps in ("0.02", "0.2"):
        worst = ev.metrics[eps]["worst"]["pixel_accuracy"]
        assert all(worst <= ev.metrics[eps][a]["pixel_accuracy"] + 1e-9 for a in ("dag", "pgd"))
        assert ev.norms[eps]["pgd"]["median_linf"] <= float(eps) + 1e-6
    assert ev.metrics["0.2"]["worst"]["pixel_accuracy"] < 0.1  # every pixel lies within 0.15 of its threshold
    assert 0 < ev.extras["0.2"]["dag"]["iterations"] <= 200
    rows = store.task_metrics(1)
    assert ("clean", "none", "miou", 1.0) in rows and any(r[:3] == ("0.2", "worst", "miou") for r in rows)
    page = write_task_report(tmp_path / "seg.html", ev).read_text()
    assert "mIoU" in page and "data:image/png;base64" in page and (tmp_path / "seg_figures" / "examples.png").exists()
    assert json.loads(json.dumps(ev.to_dict()))["metrics"]["0.2"]["dag"]["miou"] == ev.metrics["0.2"]["dag"]["miou"]
    lo, hi = ev.intervals["clean"]
    assert lo <= 1.0 <= hi + 1e-12
    with pytest.raises(SystemExit) as info:  # the saved JSON renders again from the command line
        main(["report", str(ev.save(tmp_path / "seg.json")), "--out", str(tmp_path / "again.html")])
    assert info.value.code in (0, None) and "mIoU" in (tmp_path / "again.html").read_text()


def test_detection_map_under_dag_vanish(tmp_path):
    model = _square_detector()
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, 4:8, 8:12] = 1.0
    y = [{"boxes": [[6.0, 2.0, 14.0, 10.0]], "labels": [1]}] * 2
    from advrobust.attacks.dag import DAG

    ev = evaluate_task(model, x, y, attacks=[DAG(targets="vanish")], epsilons=[None, 0.01])
    assert ev.clean["map"] == pytest.approx(1.0)
    assert ev.metrics["unbounded"]["dag"]["map"] == 0.0 and ev.metrics["0.01"]["dag"]["map"] == pytest.approx(1.0)
    assert "<svg" not in write_task_report(tmp_path / "det.html", ev).read_text()  # the boxes are drawn in a PNG


def test_a_physical_evaluation_attacks_through_the_transformations_and_judges_under_fresh_draws(tmp_path):
    from advrobust.transforms import Geometric

    model = _square_detector()
    x, y = torch.zeros(4, 1, 16, 16), torch.zeros(4, 1, 5)
    for i, (r, c) in enumerate([(4, 4), (4, 8), (8, 4), (8, 8)]):  # one object on an inner cell each
        x[i, 0, r : r + 4, c : c + 4] = 1.0
        y[i, 0] = torch.tensor([1.0, c - 2, r - 2, c + 6, r + 6])
    store = ResultStore(tmp_path / "results.sqlite")
    pose = Geometric(rotation=10, scale=0.1)
    ev = evaluate_task(model, x, y, attacks=["pgd"], epsilons=[0.0, 0.3], transform=pose, eot=2, draws=3, store=store)
    assert ev.transform == pose.describe() and (ev.eot, ev.draws) == (2, 3)
    assert ev.physical["0"]["pgd"] == ev.baseline  # no perturbation: the transformations alone, the same draws
    assert ev.physical["0.3"]["pgd"]["map"] < ev.baseline["map"]
    rows = store.task_metrics(1)
    assert ("0.3", "pgd", "physical_map", ev.physical["0.3"]["pgd"]["map"]) in rows
    assert ("clean", "none", "physical_map", ev.baseline["map"]) in rows
    page = write_task_report(tmp_path / "det.html", ev).read_text()
    assert "Under the transformations" in page and "transformations alone" in page


@pytest.mark.slow
def test_cli_evaluate_task_segmentation(tmp_path, capsys):
    model = create_dense("mnist-fcn", 11, (1, 64, 64), seed=0, width=4)
    meta = {"arch": "mnist-fcn", "arch_kwargs": {"width": 4}, "num_classes": 11, "input_shape": [1, 64, 64]}
    ckpt = save_checkpoint(tmp_path / "seg.safetensors", model, meta)
    argv = ["evaluate", "--task", "segmentation", "--model", str(ckpt), "--n", "3", "--eps", "0.02",
            "--attack", "pgd", "--db", str(tmp_path / "r.sqlite"), "--report", str(tmp_path / "r.html")]
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    assert "miou" in out and "pgd" in out and (tmp_path / "r.html").exists()
    assert ResultStore(tmp_path / "r.sqlite").task_metrics(1)[0][:3] == ("clean", "none", "miou")

    # the paper's unbounded DAG, twice, each with its --attack options: a net that calls every pixel
    # background by a wide margin keeps its background pixels (DAG's targets) to the last iteration
    with torch.no_grad():
        model.head[2].bias[0] = 50.0
    ckpt = save_checkpoint(tmp_path / "background.safetensors", model, meta)
    argv = ["evaluate", "--task", "segmentation", "--model", str(ckpt), "--n", "2", "--eps", "none",
            "--attack", "dag:max_iter=3", "--attack", "dag:max-iter=5,gamma=4", "--no-store",
            "--json", str(tmp_path / "dag.json")]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0, capsys.readouterr().out
    saved = json.loads((tmp_path / "dag.json").read_text())
    assert saved["attacks"] == ["dag", "dag#2"] and saved["epsilons"] == [None]
    assert saved["extras"]["unbounded"]["dag"]["iterations"] == 3
    assert saved["extras"]["unbounded"]["dag#2"]["iterations"] == 5

    # physical: PGD through the scene's transformations (EOT 2), judged under 2 fresh draws
    argv = ["evaluate", "--task", "segmentation", "--model", str(ckpt), "--n", "2", "--eps", "0.1", "--attack",
            "pgd:steps=2", "--transform", "printed-digit:0.5", "--eot", "2", "--draws", "2", "--no-store",
            "--json", str(tmp_path / "physical.json")]
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    assert "transformed" in out and "transformations: " in out
    saved = json.loads((tmp_path / "physical.json").read_text())
    assert saved["eot"] == 2 and saved["draws"] == 2 and set(saved["physical"]["0.1"]) == {"pgd"}


@pytest.mark.parametrize("argv, message", [
    (["--eps", "none"], "--eps none (no budget) is for DAG with --task"),
    (["--attack", "pgd:stepz=3"], "attack 'pgd' takes no option 'stepz'; its options: "),
    (["--attack", "pgd:steps"], "attack options are OPTION=VALUE"),
    (["--task", "detection", "--eot", "4"], "--eot and --draws with --task count draws of --transform"),
    (["--task", "detection", "--draws", "4"], "--eot and --draws with --task count draws of --transform"),
    (["--transform", "physical", "--draws", "4"], "--draws counts the draws a segmenter's or detector's"),
    (["--task", "detection", "--defence", "noise:0.1"], "--defence and --bpda put a defence in front of a classifier"),
    (["--task", "detection", "--transform", "sunlight"], "unknown transformations 'sunlight'"),
    (["--task", "detection", "--transform", "physical:strong"], "--transform takes NAME[:STRENGTH]"),
])
def test_cli_budget_and_attack_options_errors(argv, message, capsys):
    """Each is caught before a model loads, in one line."""
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--n", "2", "--no-store", *argv])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_ar_evaluate_hands_a_segmenter_to_evaluate_task():
    import advrobust as ar

    model = per_pixel_linear()
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.4
    y = model(x).argmax(dim=1)
    ev = ar.evaluate(model, x, y, epsilons=[0.2], suite=["pgd"])
    assert ev.task == "segmentation" and ev.attacks == ["pgd"] and ev.metrics["0.2"]["pgd"]["pixel_accuracy"] < 0.05


def test_ar_evaluate_through_a_transform_for_a_segmenter_and_a_classifier(small_cnn):
    import advrobust as ar
    from advrobust.transforms import Geometric

    model, pose = per_pixel_linear(), Geometric(rotation=20)
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.4
    y = model(x).argmax(dim=1)
    ev = ar.evaluate(model, x, y, epsilons=[0.2], suite=["pgd"], transform=pose, eot=2)
    assert ev.transform == pose.describe() and ev.eot == 2 and set(ev.physical["0.2"]) == {"pgd"}
    with pytest.raises(InputError, match="eot for a segmenter or detector counts draws of a transform"):
        ar.evaluate(model, x, y, epsilons=[0.2], suite=["pgd"], eot=2)
    digits = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    seen = ar.evaluate(small_cnn, digits, small_cnn(digits).argmax(1), suite=["fgsm"], transform=pose, eot=2)
    assert seen.randomized and "draws" in seen.verdict_rule  # the classifier as a camera sees it


def test_only_dag_runs_without_a_budget():
    model = per_pixel_linear()
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    with pytest.raises(InputError, match="pgd needs an eps: the unbounded budget"):
        evaluate_task(model, x, model(x).argmax(dim=1), attacks=["dag", "pgd"], epsilons=[None])
