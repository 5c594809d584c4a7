"""``advrobust certify`` end to end: Gaussian smoothing's interval and column smoothing's certificate
from a checkpoint file, and the one-line error without a model."""

from __future__ import annotations

import json

import pytest

from advrobust.cli.main import main
from advrobust.models import create, save_checkpoint


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code)


def _checkpoint(path, channels: int) -> str:
    model = create("mnist-cnn", 10, (channels, 28, 28), seed=0, width=4, hidden=16)
    meta = {"arch": "mnist-cnn", "arch_kwargs": {"width": 4, "hidden": 16}, "num_classes": 10,
            "input_shape": [channels, 28, 28], "data": "mnist-5k"}
    save_checkpoint(path, model, meta)
    return str(path)


def test_certify_gaussian_interval(tmp_path) -> None:
    out = tmp_path / "cert.json"
    argv = ["certify", "--model", _checkpoint(tmp_path / "noise.safetensors", 1), "--n", "6", "--samples", "60",
            "--n0", "10", "--eps", "0.25,0.5", "--json", str(out)]
    assert _exit_code(argv) == 0
    summary = json.loads(out.read_text())
    assert [row["eps"] for row in summary["rows"]] == [0.25, 0.5]
    for row in summary["rows"]:
        assert 0 <= row["certified"] <= row["attacked"] <= summary["clean_accuracy"]
    assert summary["samples_per_second"] > 0 and summary["n"] == 60


def test_certify_column(tmp_path) -> None:
    out = tmp_path / "col.json"
    argv = ["certify", "--model", _checkpoint(tmp_path / "ablated.safetensors", 2), "--smoothing", "column",
            "--n", "5", "--band", "4", "--patch", "3", "--json", str(out)]
    assert _exit_code(argv) == 0
    summary = json.loads(out.read_text())
    assert summary["certified"] <= summary["attacked"] <= summary["clean_accuracy"]


def test_certify_needs_a_model(capsys) -> None:
    assert _exit_code(["certify"]) == 1
    assert "--model" in capsys.readouterr().err
