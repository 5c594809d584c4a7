"""``advrobust faces`` and ``advrobust data download faces``: arguments, errors, a report page."""

from __future__ import annotations

import shutil

import pytest

from advrobust.cli.faces import build_attack, parse_budget
from advrobust.cli.main import main
from advrobust.errors import InputError
from advrobust.faces import is_available
from advrobust.faces.weights import demo_photo_paths

needs_weights = pytest.mark.skipif(
    not is_available(), reason="face weights not in the cache: run `advrobust data download faces` (needs npm)"
)


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code)


def test_budget_parsing_and_attack_choices():
    assert parse_budget("4/255") == pytest.approx(4 / 255)
    assert parse_budget("0.5") == 0.5
    for bad in ("x", "1/0", "-1"):
        with pytest.raises(InputError, match="--eps"):
            parse_budget(bad)
    assert build_attack("apgd", "linf", 0.01, 5).threat.eps == 0.01
    with pytest.raises(InputError, match="--norm l2"):
        build_attack("cw", "linf", 0.01, 5)


def test_download_faces_reports_a_bad_source_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ADVROBUST_HOME", str(tmp_path / "home"))
    assert _exit_code(["data", "download", "faces", "--from", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no model/ folder" in err and len(err.strip().splitlines()) == 1
    assert _exit_code(["data", "download", "faces", "--root", str(tmp_path)]) == 1
    assert "ADVROBUST_HOME" in capsys.readouterr().err
    assert _exit_code(["data", "download", "mnist", "--from", str(tmp_path)]) == 1
    assert "--from is for" in capsys.readouterr().err


@needs_weights
def test_impersonate_needs_a_target(capsys):
    photo = str(demo_photo_paths()[1])
    assert _exit_code(["faces", "attack", "--mode", "impersonate", photo]) == 1
    assert "TARGET" in capsys.readouterr().err


@needs_weights
def test_verify_and_dodge_write_an_escaped_report(tmp_path, capsys):
    photos = demo_photo_paths()
    assert _exit_code(["faces", "verify", str(photos[1]), str(photos[1])]) == 0
    said = capsys.readouterr().out
    assert "distance 0.0000" in said and "same person" in said
    odd = tmp_path / "<img src=x onerror=alert(1)>.jpg"  # a file name that must not become markup
    shutil.copyfile(photos[1], odd)
    out = tmp_path / "report"
    argv = ["faces", "attack", "--mode", "dodge", "--eps", "4/255", "--steps", "10", "--out", str(out), str(odd)]
    assert _exit_code(argv) == 0
    assert "dodge succeeded" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page and "<img src=x" not in page
    assert page.count("data:image/png;base64,") == 3 and (out / "dodge.png").is_file()


@needs_weights
def test_frames_attack_reports_its_physical_success_and_stays_in_the_frames(tmp_path, capsys):
    import torch

    from advrobust.faces import FacePipeline, load_image
    from advrobust.faces.accessories import eyeglass_mask

    photo = demo_photo_paths()[1]
    out = tmp_path / "frames"
    argv = ["faces", "attack", "--mode", "dodge", "--frames", "--steps", "2", "--eot-draws", "1",
            "--physical-draws", "3", "--out", str(out), str(photo)]
    assert _exit_code(argv) == 0
    said = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "physical success under 3 fresh transformations" in said and "random frames" in said
    page = (out / "report.html").read_text()
    for shown in ("eyeglass frames", "random frames (control)", "What the camera sees", "The frames, as printed",
                  "Success against transformation strength"):
        assert shown in page
    from PIL import Image

    with Image.open(out / "frames.png") as printed:  # level frames at the wearer's scale, see-through around
        assert printed.mode == "RGBA" and round(printed.info["dpi"][0]) == 300
        width_mm = printed.width / 300 * 25.4
        assert 120 < width_mm < 190 and printed.height < printed.width / 2  # eyes 63 mm apart: ~2.5 × 63 mm
        assert printed.getchannel("A").getextrema() == (0, 255)
    face = FacePipeline.load().best_face(photo)
    after = load_image(out / "dodge.png")[None]  # the attacked crop, saved as 8 bits
    outside = (1 - eyeglass_mask(face)).bool().expand_as(after)
    assert torch.allclose(after[outside], face.crop[None][outside], atol=1 / 255 + 1e-6)
    assert _exit_code(["faces", "attack", "--mode", "dodge", "--frames", "--attack", "apgd", str(photo)]) == 1
