"""``advrobust train`` and ``advrobust models`` end to end through the CLI entry point."""

from __future__ import annotations

import csv

import pytest

from advrobust.cli.main import main
from advrobust.data import load
from advrobust.models import fingerprint, load_checkpoint
from advrobust.training import accuracy, method_names

FAST = ["--limit", "300", "--epochs", "2", "--width", "8", "--optimizer", "adam", "--lr", "0.005",
        "--batch-size", "30"]


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code)


def test_train_end_to_end_then_resume_then_show(tmp_path, capsys):
    out, log = tmp_path / "m.safetensors", tmp_path / "log.csv"
    argv = ["train", *FAST, "--out", str(out), "--log", str(log)]
    assert _run(argv) == 0
    printed = capsys.readouterr().out
    assert f"saved {out}" in printed and "clean accuracy" in printed
    model, meta = load_checkpoint(out)
    test = load("mnist-5k", split="test")
    assert meta["clean_accuracy"] == pytest.approx(accuracy(model, test))
    assert meta["clean_accuracy"] > 0.5  # two epochs on 300 digits: far above chance
    assert meta["training"]["method"] == "standard" and meta["training"]["limit"] == 300
    assert meta["arch_kwargs"] == {"width": 8} and meta["input_shape"] == [1, 28, 28]
    with open(log) as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    assert (tmp_path / "m.state" / "state.pt").is_file()

    # the same command again resumes the finished run: no training, the same weights
    out.unlink()
    assert _run(argv) == 0
    again, meta2 = load_checkpoint(out)
    assert fingerprint(again) == fingerprint(model) == meta2["fingerprint"]
    # other hyper-parameters on the same state are refused unless --no-resume
    assert _run([*argv[:-4], "--lr", "0.01", "--out", str(out)]) == 1
    assert "other settings" in capsys.readouterr().err

    assert _run(["models", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "mnist-cnn" in shown and meta["fingerprint"][:16] in shown.replace("\n", "").replace("│", "")


def test_models_list_and_errors(tmp_path, capsys):
    assert _run(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("mnist-cnn", "small-resnet", "mlp"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    assert _run(["models", "show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "corrupt" in err and "Traceback" not in err
    assert _run(["train", "--data", "no-such-data", "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "unknown data set" in capsys.readouterr().err
    assert _run(["train", "--beta", "3"]) == 2  # standard training takes no method options
    assert "--beta does not apply to --method standard" in capsys.readouterr().err
    assert _run(["train", "--val-attack", "pgd", "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "--val-eps" in capsys.readouterr().err


def test_train_help_lists_every_registered_method(capsys):
    assert _run(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in method_names())
