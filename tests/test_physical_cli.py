"""``advrobust patch`` end to end, its page (escaped), and its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from advrobust.cli.main import main
from advrobust.evaluation.physical import PhysicalSuccess
from advrobust.report.physical import physical_page

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code)


@pytest.fixture
def cnn_file(small_cnn, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path / "cache"))
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.trace(small_cnn.eval(), torch.rand(1, 1, 28, 28)), str(path))
    return str(path)


def test_patch_command_end_to_end(cnn_file, tmp_path, capsys) -> None:
    from PIL import Image

    out = tmp_path / "out"
    argv = ["patch", "--model", cnn_file, "--target", "8", "--steps", "3", "--draws", "2", "--n", "20",
            "--width-mm", "20", "--dpi", "254", "--shape", "circle", "--nps-weight", "0.1", "--scene", "printed-digit",
            "--out", str(out)]
    assert _exit_code(argv) == 0
    printed = capsys.readouterr().out
    assert "universal patch" in printed and "random patch" in printed and "digital PGD" in printed
    summary = json.loads((out / "physical.json").read_text())
    assert [r["name"] for r in summary["results"]][:2] == ["universal patch", "random patch (control)"]
    assert summary["task"] == "classification" and summary["loss"] == "margin"  # a classifier's default
    assert all(len(r["curve"]) == 5 for r in summary["results"])
    assert all("translation ±0.03" in r["transform"] for r in summary["results"])  # the printed-digit scene
    accuracy = summary["clean_accuracy"]  # the clean digits as they are and under the scene, said beside
    assert 0 <= accuracy["under_transformations"] <= 1 and accuracy["draws"] == 2
    assert f"{accuracy['as_is']:.1%} as they are" in " ".join(printed.split())
    with Image.open(out / "patch.png") as img:
        assert img.size == (200, 200) and img.mode == "RGBA" and img.info["dpi"][0] == pytest.approx(254, abs=0.1)
    assert "Success against transformation strength" in (out / "report.html").read_text()


def test_sticker_command_trains_and_exports_a_sticker(cnn_file, tmp_path, capsys) -> None:
    """``--shape sticker``: RP2's mask, then its texture; exported with the mask as alpha."""
    from PIL import Image

    out = tmp_path / "sticker"
    argv = ["patch", "--model", cnn_file, "--target", "8", "--shape", "sticker", "--region", "0.25,0.25,0.75,0.75",
            "--steps", "3", "--draws", "2", "--n", "20", "--out", str(out)]
    assert _exit_code(argv) == 0
    assert "universal sticker" in capsys.readouterr().out
    summary = json.loads((out / "physical.json").read_text())
    assert [r["name"] for r in summary["results"]][:2] == ["universal sticker", "random sticker (control)"]
    with Image.open(out / "patch.png") as img:  # the mask's bounding box, the mask as alpha
        assert img.mode == "RGBA" and 0 < img.getchannel("A").histogram()[0] < img.width * img.height


def _mask_png(path, box=(8, 8, 18, 14)) -> str:
    """A 56×56 PNG (twice the digits' size) with a white rectangle ``box`` given in digit pixels."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (56, 56), 0)
    if box[2] > box[0]:
        ImageDraw.Draw(image).rectangle([2 * v for v in box[:2]] + [2 * v - 1 for v in box[2:]], fill=255)
    image.save(path)
    return str(path)


def test_mask_option_trains_a_texture_in_the_users_shape(cnn_file, tmp_path, capsys) -> None:
    from PIL import Image

    out = tmp_path / "masked"
    argv = ["patch", "--model", cnn_file, "--target", "8", "--mask", _mask_png(tmp_path / "m.png"), "--steps", "3",
            "--draws", "2", "--n", "20", "--out", str(out)]
    assert _exit_code(argv) == 0
    summary = json.loads((out / "physical.json").read_text())
    assert [r["name"] for r in summary["results"]][:2] == ["universal texture in the mask",
                                                          "random texture in the mask (control)"]
    assert summary["area"] == pytest.approx(10 * 6 / 28**2)  # the rectangle, resized to the digits
    with Image.open(out / "patch.png") as img:  # the mask's bounding box, 10×6, fully opaque
        assert img.mode == "RGBA" and img.width / img.height == pytest.approx(10 / 6, rel=0.01)
        assert img.getchannel("A").getextrema() == (255, 255)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--region", "0,0,1"], "--region"), (["--palette", "MISSING"], "does not exist"),
     (["--area", "0.9", "--rotation", "45"], "does not fit"), (["--mask", "MASK", "--shape", "circle"], "--shape"),
     (["--mask", "MISSING"], "does not exist"), (["--mask", "EMPTY"], "is empty")],
)
def test_patch_command_user_errors_are_one_line(cnn_file, tmp_path, capsys, extra, message) -> None:
    files = {"MISSING": str(tmp_path / "missing.csv"), "MASK": _mask_png(tmp_path / "m.png"),
             "EMPTY": _mask_png(tmp_path / "e.png", (0, 0, 0, 0))}  # all black
    argv = ["patch", "--model", cnn_file, "--steps", "1", "--draws", "1", "--n", "10", "--out", str(tmp_path / "o"),
            *[files.get(e, e) for e in extra]]
    assert _exit_code(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_preview_spreads_over_the_classes_and_leaves_out_the_target() -> None:
    from advrobust.cli.patch import _preview_points

    y = torch.arange(10).repeat_interleave(5)  # a stratified subset: sorted by class
    shown = _preview_points(y, target=3, dense=False)
    assert len(shown) == 8 and 3 not in y[shown].tolist()
    assert len(set(y[shown].tolist())) == 8
    assert len(_preview_points(y, target=None, dense=False)) == 8
    assert _preview_points(y[:3], target=None, dense=False).tolist() == [0, 1, 2]


def test_physical_page_escapes_names() -> None:
    r = PhysicalSuccess(name="<script>x</script>", digital=1.0, physical=0.5, baseline=0.1, n_points=3,
                        n_draws=2, transform="rotation & <b>", curve=[(0.0, 1.0), (1.0, 0.5)])
    html = physical_page("a <title>", [r], notes=["<img src=x>"])
    assert "<script>x" not in html and "&lt;script&gt;" in html and "<img src=x>" not in html
    assert "rotation &amp; &lt;b&gt;" in html
    # a texture with an alpha mask is shown on a checkerboard: white ink must not vanish into the page
    with_texture = physical_page("t", [r], texture_png=b"png")
    assert '<figure class="transparent"><img' in with_texture and "figure.transparent img" in with_texture


def test_patch_command_on_a_detector_reports_its_metrics(tmp_path, capsys, monkeypatch) -> None:
    """``--task detection``: a checkpoint's detector on the mnist-det scenes, trained to make objects
    vanish; the table and the page carry mAP and recall digitally and under transformations."""
    from advrobust.models import save_checkpoint
    from advrobust.models.dense import create_dense

    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path / "cache"))
    model = create_dense("mnist-centernet", 11, (1, 64, 64), seed=0, width=4)
    meta = {"arch": "mnist-centernet", "arch_kwargs": {"width": 4}, "num_classes": 11, "input_shape": [1, 64, 64]}
    ckpt = save_checkpoint(tmp_path / "det.safetensors", model, meta)
    out = tmp_path / "det"
    argv = ["patch", "--task", "detection", "--model", str(ckpt), "--target", "0", "--steps", "2", "--draws", "2",
            "--n", "3", "--scene", "printed-digit", "--out", str(out)]
    from advrobust.cli.console import console

    monkeypatch.setattr(console, "width", 200)  # the metrics table unwrapped
    assert _exit_code(argv) == 0
    printed = capsys.readouterr().out
    assert "the task's metrics" in printed and "mAP@0.5 digital" in printed and "no attack" in printed
    summary = json.loads((out / "physical.json").read_text())
    assert [r["name"] for r in summary["results"]] == ["universal patch", "random patch (control)",
                                                       "digital PGD (l∞ 0.3)"]
    assert all(set(r["metrics"]) == {"clean", "digital", "physical", "baseline"} for r in summary["results"])
    assert all(r["n_points"] == 3 for r in summary["results"])
    assert summary["task"] == "detection" and summary["loss"] == "ce"  # a dense task's default objective
    assert summary["clean_accuracy"] is None  # a dense task's clean metrics are in its metrics table
    page = (out / "report.html").read_text()
    assert "metrics" in page and "mAP@0.5 transformed" in page and "mAP@0.5 against transformation strength" in page
    assert "What the model sees" in page  # the detector's boxes on scenes with and without the patch
    # RP2's sticker on the detector: its shape found through the task's objective, then its texture
    assert _exit_code([*argv[:-2], "--shape", "sticker", "--out", str(tmp_path / "sticker")]) == 0
    summary = json.loads((tmp_path / "sticker" / "physical.json").read_text())
    assert [r["name"] for r in summary["results"]][:2] == ["universal sticker", "random sticker (control)"]
