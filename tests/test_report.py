"""The HTML report: built from a real small evaluation, checked as HTML, for its numbers, its
escaping, its embedded and saved figures, the `advrobust report` command, and in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg

from advrobust.cli.main import main
from advrobust.cli.report import load_inputs
from advrobust.errors import InputError
from advrobust.evaluation import evaluate
from advrobust.evaluation.result import EvaluationResult
from advrobust.report import REPORT_FORMAT, write_report
from advrobust.report.figures import amplification
from advrobust.report.writer import figures_dir, results_path
from advrobust.threat import Linf

XSS = "<script>alert(1)</script>"
EPSILONS = [0.1, 0.3]
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "wbr", "source"}


class _Page(HTMLParser):
    """Checks that tags balance; collects image sources, links and the text of each section."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.sections: dict[str, str] = {}
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(a.get("src") or "")
        if "href" in a:
            self.hrefs.append(a["href"] or "")
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section or ""] = ""
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._section is not None:
            self.sections[self._section] += data


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def evaluation(small_cnn, mnist_batch) -> EvaluationResult:
    """A real evaluation (FGSM + PGD at two eps) of the small CNN on 40 digits, with class 0 named
    like a script tag and a model name that needs escaping."""
    x, y = mnist_batch
    idx = torch.cat([torch.arange(c * 20, c * 20 + 4) for c in range(10)])
    classes = [XSS, *[f"digit {k}" for k in range(1, 10)]]
    return evaluate(small_cnn, x[idx], y[idx], threat=Linf(eps=0.3), epsilons=EPSILONS,
                    suite="quick", classes=classes, model_name='cnn "A&B"', data_name="mnist-5k")


@pytest.fixture(scope="module")
def report(evaluation, tmp_path_factory) -> tuple[Path, str]:
    path = write_report(tmp_path_factory.mktemp("report") / "report.html", evaluation)
    return path, path.read_text(encoding="utf-8")


def test_report_is_balanced_self_contained_html(report):
    _, text = report
    page = parse(text)
    assert text.startswith("<!DOCTYPE html>")
    assert page.errors == [] and page.stack == []
    assert "script" not in page.tags and "link" not in page.tags  # no JavaScript, no stylesheets
    assert page.srcs and all(s.startswith("data:image/png;base64,") for s in page.srcs)
    assert all(h.startswith("#") for h in page.hrefs)  # only in-page links: nothing to fetch


def test_report_holds_every_section_with_the_results_numbers(report, evaluation):
    _, text = report
    sections = parse(text).sections
    assert {"summary", "examples", "curves", "min-norm", "per-class"} <= set(sections)
    summary = sections["summary"]
    assert f"{evaluation.clean_accuracy:.1%}" in summary
    for e, eps in enumerate(evaluation.epsilons):
        acc = evaluation.robust_accuracy[eps]
        lo, hi = evaluation.robust_accuracy_ci[eps]
        row = f"{eps:g}{acc:.1%}[{lo:.1%}, {hi:.1%}]"
        assert row in summary, f"summary row for eps={eps} not found"
        broken = {}
        for name in evaluation.broken_by[e]:
            if name is not None:
                broken[name] = broken.get(name, 0) + 1
        for name, count in broken.items():
            assert f"{name}: {count}" in summary
    curves = sections["curves"]
    for rec in evaluation.per_attack:
        assert f"{rec.attack}{rec.eps:g}{rec.robust_accuracy:.1%}{rec.success_rate:.1%}" in curves
    per_class = sections["per-class"]
    for row in evaluation.per_class():
        cells = [f"{row['n']}", f"{row['clean_accuracy']:.1%}"]
        cells += [f"{row['robust_accuracy'][eps]:.1%}" for eps in evaluation.epsilons]
        assert row["name"] + "".join(cells) in per_class
    shown = re.findall(r"predicted on x \+ r‖r‖∞(.*)", sections["examples"])
    assert shown, "the examples table is missing"
    for ex in evaluation.examples:
        if f"{ex.index}{ex.attack}{ex.eps:g}" in sections["examples"]:
            assert evaluation.classes[ex.adv_pred] in sections["examples"]


def test_user_text_is_escaped(report):
    _, text = report
    assert XSS not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'cnn "A&B"' not in text and "cnn &quot;A&amp;B&quot;" in text
    assert XSS in parse(text).sections["per-class"]  # shown to the reader as text


def _decode_png(data: bytes) -> np.ndarray:
    return mpimg.imread(io.BytesIO(data), format="png")


def test_figures_are_embedded_and_saved_beside_the_report(report):
    path, text = report
    saved = {p.name: p.read_bytes() for p in figures_dir(path).glob("*.png")}
    assert {"examples.png", "robustness_curves.png", "min_norm.png"} <= set(saved)
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in parse(text).srcs]
    assert sorted(embedded) == sorted(saved.values())
    for data in embedded:
        pixels = _decode_png(data)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and float(pixels.std()) > 0.05


def test_results_json_renders_the_same_report_again(report, evaluation, tmp_path):
    path, text = report
    data = json.loads(results_path(path).read_text())
    assert data["format"] == REPORT_FORMAT
    assert data["evaluation"]["robust"] == evaluation.robust.tolist()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "again.html"
    proc = subprocess.run(
        [sys.executable, "-m", "advrobust", "report", str(results_path(path)), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    again = parse(out.read_text().replace("again_figures/", "report_figures/")).sections
    assert again == parse(text).sections
    # piped, the command's rich output is plain text: no escape sequences, no control characters
    assert "\x1b" not in proc.stdout and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", proc.stdout)
    assert str(out) in proc.stdout


@pytest.mark.parametrize("content", ["{not json", '{"format": "other"}', "[1, 2]"])
def test_cli_errors_are_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(bad)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "bad.html").exists()


def test_write_report_refuses_nothing_and_non_html(tmp_path, evaluation):
    with pytest.raises(InputError, match="nothing to report"):
        write_report(tmp_path / "r.html")
    with pytest.raises(InputError, match=r"\.html"):
        write_report(tmp_path / "r.pdf", evaluation)


def test_amplification_makes_r_visible_without_clipping():
    for peak in (0.003, 0.01, 0.05, 0.1, 0.25, 0.3, 0.7, 1.0):
        k = amplification(peak)
        assert k * peak <= 0.5 + 1e-12  # 0.5 + k·r stays inside [0, 1]
        assert k * peak > 0.5 / 2.5  # the next factor of 1, 2, 5, 10, ... would clip
    assert amplification(0.1) == 5.0 and amplification(0.25) == 2.0 and amplification(1.0) == 0.5
    assert amplification(0.0) == 1.0


def _image(seed: int, c: int = 1, s: int = 8) -> torch.Tensor:
    return torch.rand(c, s, s, generator=torch.Generator().manual_seed(seed))


def test_optional_sections_show_their_inputs(tmp_path, evaluation):
    x = _image(0)
    targets = [1, 2, 3]
    x_adv = x.repeat(3, 1, 1, 1)
    for i in range(3):
        x_adv[i, 0, i, i] = 1.0 - x_adv[i, 0, i, i]
    one_pixel = SimpleNamespace(x=x, label=0, targets=torch.tensor(targets), x_adv=x_adv,
                                success=torch.tensor([True, False, True]),
                                confidence=torch.tensor([0.81, 0.12, 0.64]))
    fooling = SimpleNamespace(images=torch.stack([_image(k) for k in range(3)]),
                              targets=[0, 1, 2], confidence=[0.997, 0.42, 0.999], queries=[400, 900, 80])
    transfer = {"rows": ["fgsm × <b>src</b>", "pgd × src"], "columns": ["src", "tgt"],
                "matrix": [[0.9, 0.35], [1.0, 0.125]]}
    audit = SimpleNamespace(passed=False, checks=[
        SimpleNamespace(name="unbounded attack reaches 100%", verdict="pass",
                        evidence={"success": 1.0}, explanation="ok"),
        SimpleNamespace(name="<i>iterative beats single-step</i>", verdict="fail",
                        evidence={"fgsm": 0.2, "pgd": 0.1}, explanation="FGSM stronger than PGD"),
    ])
    training = {"method": "pgd-at", "best_epoch": 2, "monitor": "val_robust_acc", "stop_reason": None,
                "records": [
                    {"epoch": 1, "train_loss": 1.5, "train_acc": 0.5, "val_acc": None,
                     "val_robust_acc": None, "lr": 0.1, "seconds": 3.0, "note": None},
                    {"epoch": 2, "train_loss": 0.75, "train_acc": 0.875, "val_acc": 0.9,
                     "val_robust_acc": 0.625, "lr": 0.1, "seconds": 3.0, "note": "PGD acc collapsed"},
                ]}
    path = write_report(tmp_path / "all.html", evaluation, audit=audit, transfer=transfer,
                        one_pixel=[one_pixel], fooling=fooling, training=training, title="T <&>")
    text = path.read_text()
    page = parse(text)
    assert page.errors == [] and page.stack == []
    s = page.sections
    assert "reached 2 of 3 target classes" in s["one-pixel-0"]
    assert "99.7%" in s["fooling"] and "42.0%" in s["fooling"] and "900" in s["fooling"]
    assert "fgsm × <b>src</b>90.0%35.0%" in s["transfer"] and "<b>src</b>" not in text
    assert "12.5%" in s["transfer"]
    assert "<i>iterative beats single-step</i>failfgsm = 0.2, pgd = 0.1" in s["audit"]
    assert "FAILED" in s["summary"] and "2 checks: 1 pass, 1 fail" in s["summary"]
    assert "PGD acc collapsed" in s["training"] and "best epoch 2 on val_robust_acc" in s["training"]
    assert "<title>T &lt;&amp;&gt;</title>" in text
    names = {p.name for p in figures_dir(path).glob("*.png")}
    assert {"one_pixel_0.png", "fooling.png", "transfer.png", "training.png"} <= names
    assert len(page.srcs) == len(names)
    write_report(path, evaluation)  # the same page without the optional sections
    assert {p.name for p in figures_dir(path).glob("*.png")} == {
        "examples.png", "robustness_curves.png", "min_norm.png"}


@pytest.mark.chromium
def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (CI installs it with apt-get: see .ci/run)")
    path, _ = report
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1280,2000", "--enable-logging=stderr", "--v=0", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.exists(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line]
    assert console == []
    pixels = mpimg.imread(shot)[:, :, :3]
    assert pixels.shape[:2] == (2000, 1280)
    assert float(pixels.std()) > 0.05  # not blank
    assert float((pixels.mean(axis=2) < 0.5).mean()) > 0.01  # dark text and figures are drawn


def test_real_query_transfer_and_audit_sections(small_cnn, mnist_batch, evaluation, tmp_path):
    from advrobust.attacks.fooling import fooling_images
    from advrobust.attacks.one_pixel import one_pixel_all_targets
    from advrobust.evaluation import audit, transfer_matrix
    from advrobust.report.inputs import one_pixel_inputs

    x, y = mnist_batch
    pick = torch.tensor([0, 60])
    result = one_pixel_all_targets(small_cnn, x[pick], y[pick], population=20, generations=3)
    panels = one_pixel_inputs(small_cnn, x[pick], y[pick], result)
    with torch.no_grad():
        probs = small_cnn(result.result.x_adv).softmax(dim=1)
    for i, panel in enumerate(panels):
        assert panel["label"] == int(y[pick[i]]) and torch.equal(panel["x"], x[pick[i]])
        rows = slice(9 * i, 9 * i + 9)
        expected = probs[rows].gather(1, result.targets[i].view(-1, 1)).squeeze(1)
        assert torch.allclose(panel["confidence"], expected, atol=1e-6)
    with pytest.raises(InputError, match="one_pixel_inputs"):
        write_report(tmp_path / "raw.html", one_pixel=result)
    aud = audit(small_cnn, x[::20], y[::20], Linf(eps=0.3), steps=10)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    tr = transfer_matrix({"cnn": small_cnn}, {"cnn": small_cnn, "linear": linear}, x[::10], y[::10],
                         attacks=("fgsm",), threat=Linf(eps=0.2))
    fo = fooling_images(small_cnn, [0, 1, 2], input_shape=(1, 28, 28), method="gradient", budget=30)
    path = write_report(tmp_path / "q.html", evaluation, audit=aud, one_pixel=panels, transfer=tr,
                        fooling=fo)
    s = parse(path.read_text()).sections
    for row, rates in zip(tr.rows, tr.matrix, strict=True):
        assert row + "".join(f"{v:.1%}" for v in rates) in s["transfer"]
    assert "linf ε = 0.2" in s["transfer"]
    for k, conf, reached in zip(fo.classes, fo.confidence, fo.reached, strict=True):
        name = evaluation.classes[int(k)]
        assert f"{name}{float(conf):.1%}{'yes' if reached else 'no'}" in s["fooling"]
    for i, panel in enumerate(panels):
        reached = int(panel["success"].sum())
        assert f"reached {reached} of 9 target classes" in s[f"one-pixel-{i}"]
    for check in aud.checks:
        assert f"{check.name}{check.verdict}" in s["audit"]
    assert ("passed" if aud.passed else "FAILED") in s["summary"]
    again = write_report(tmp_path / "again.html", **load_inputs(results_path(path)))
    assert parse(again.read_text().replace("again_figures/", "q_figures/")).sections == s


def test_cli_reads_a_training_log_in_json_lines(evaluation, tmp_path, capsys):
    from advrobust.training.history import EpochRecord, TrainingHistory

    history = TrainingHistory(records=[
        EpochRecord(epoch=1, train_loss=1.25, train_acc=0.5, val_acc=None, val_robust_acc=None,
                    lr=0.1, seconds=2.0),
        EpochRecord(epoch=2, train_loss=0.5, train_acc=0.875, val_acc=0.9, val_robust_acc=0.625,
                    lr=0.05, seconds=2.0, note="robust accuracy collapsed"),
    ])
    log = tmp_path / "train.jsonl"
    history.write(log)
    saved = evaluation.save(tmp_path / "eval.json")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(saved), "--training", str(log), "--out", str(tmp_path / "r.html")])
    assert exit_info.value.code == 0
    training = parse((tmp_path / "r.html").read_text()).sections["training"]
    # epoch, train_loss, train_acc, val_acc, val_robust_acc, lr, seconds, note
    assert "11.2550.0%——0.12" in training  # not measured: a dash, not 0
    assert "20.587.5%90.0%62.5%0.052robust accuracy collapsed" in training
    assert (tmp_path / "r_figures" / "training.png").exists()
    assert "r.html" in capsys.readouterr().out


@pytest.mark.parametrize("n", [60, 500])
def test_curves_draw_accuracies_of_zero_and_one(n):
    from advrobust.evaluation.result import EvaluationResult
    from advrobust.report.figures import robustness_curves
    from advrobust.report.views import evaluation_view

    robust = torch.zeros(3, n, dtype=torch.bool)
    robust[0] = True  # 100% at the first eps, 0% after: Wilson bounds off by rounding at both ends
    zeros = torch.zeros(n, dtype=torch.long)
    ev = evaluation_view(EvaluationResult(
        model_name="m", model_fingerprint="", data_name="d", threat="linf", epsilons=[0.1, 0.2, 0.3],
        suite="quick", attacks=["pgd"], classes=[], labels=zeros, clean_pred=zeros,
        clean_correct=torch.ones(n, dtype=torch.bool), robust=robust, broken_by=[[None] * n] * 3,
        min_norm=torch.full((n,), math.inf),
    ))
    assert ev.robust_accuracy == (1.0, 0.0, 0.0)
    fig = robustness_curves(ev)
    overall = next(line for line in fig.axes[0].get_lines() if line.get_label().startswith("overall"))
    assert list(overall.get_ydata()) == [1.0, 1.0, 0.0, 0.0]  # clean at ε = 0, then each eps


def test_examples_shown_span_labels_and_budgets():
    """The seed figure's rows: distinct points, a new label before a repeated one, every eps."""
    from advrobust.evaluation.result import Example
    from advrobust.report.sections import pick_examples

    blank = torch.zeros(1, 2, 2)

    def ex(index: int, label: int, eps: float) -> Example:
        return Example(index, blank, blank, label, label, 0.9, (label + 1) % 10, 0.8, eps, eps, "pgd")

    # a test set sorted by class: points 0-9 are zeros, 10-19 ones, ...; broken at both budgets
    examples = [ex(i, i // 10, eps) for eps in (0.1, 0.3) for i in range(40)]
    picked = pick_examples(examples, k=6)
    assert len(picked) == 6 and len({p.index for p in picked}) == 6
    assert sorted({p.label for p in picked}) == [0, 1, 2, 3]  # all four labels before any repeat
    assert {p.eps for p in picked} == {0.1, 0.3}
    assert [p.eps for p in picked] == sorted(p.eps for p in picked)


def test_the_report_reads_an_evaluation_from_its_json_as_from_the_object(evaluation):
    """The view of the JSON dictionary (through EvaluationResult.from_dict) is the view of the object;
    a dictionary that is not an evaluation result is refused with a one-line error."""
    import dataclasses
    import json

    from advrobust.report.views import evaluation_view

    direct, via_json = evaluation_view(evaluation), evaluation_view(json.loads(evaluation.to_json()))
    for field in dataclasses.fields(direct):
        a, b = getattr(direct, field.name), getattr(via_json, field.name)
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b), field.name
        elif field.name == "examples":
            assert [(x.index, x.attack, x.eps) for x in a] == [(x.index, x.attack, x.eps) for x in b]
            assert all(torch.allclose(x.x_adv, y.x_adv) for x, y in zip(a, b, strict=True))
        elif field.name == "per_attack":
            assert [r.attack for r in a] == [r.attack for r in b]
            assert [r.broken for r in a] == [r.broken for r in b]
        else:
            assert a == b, field.name
    broken = {k: v for k, v in evaluation.to_dict().items() if k != "robust"}
    with pytest.raises(InputError, match="not an evaluation result"):
        evaluation_view(broken)


@pytest.mark.parametrize(
    ("reached", "k", "hits"),
    [
        ([True] * 5 + [False] * 19, 6, 1),  # 5 of 24 -> 1.25 of 6: one success shown, not the seeded few
        ([False, False, True, True, True, False, True, True], 4, 2),
        ([True] * 10, 6, 6),
        ([False] * 3 + [True] * 9, 6, 4),  # 0.75 of 6 rounds to 4 (banker's rounding of 4.5)
        ([True, False], 6, 1),  # fewer draws than views: all of them
    ],
)
def test_camera_views_succeed_as_often_as_the_pool(reached, k, hits):
    from advrobust.report.faces import representative_draws

    shown = representative_draws(reached, k)
    assert shown == sorted(set(shown)) and len(shown) == min(k, len(reached))
    assert sum(reached[i] for i in shown) == hits
