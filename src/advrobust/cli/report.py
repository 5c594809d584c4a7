"""``advrobust report``: render the HTML report from saved results (JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from advrobust.cli.console import console
from advrobust.errors import InputError

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _read_json(path: Path) -> Any:
    """A JSON document, or a JSON-lines file (one record per line) as a list."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}): pass the JSON file "
                         f"a command or write_report wrote") from None


def _evaluation(data: Any) -> Any:
    from advrobust.evaluation.result import EvaluationResult

    if not isinstance(data, dict):
        raise InputError("the result file holds no evaluation: pass the JSON that `advrobust "
                         "evaluate` saved or that a report wrote beside itself (*_results.json)")
    return EvaluationResult.from_dict(data)


def load_inputs(result: Path) -> dict[str, Any]:
    """The ``write_report`` arguments held by ``result``: an evaluation's JSON, or the
    ``*_results.json`` a report wrote (every result it showed)."""
    from advrobust.report import REPORT_FORMAT

    data = _read_json(result)
    if isinstance(data, dict) and data.get("format") == REPORT_FORMAT:
        inputs = {k: v for k, v in data.items() if k != "format"}
        if inputs.get("evaluation") is not None:
            inputs["evaluation"] = _evaluation(inputs["evaluation"])
        return inputs
    return {"evaluation": _evaluation(data)}


@click.command("report")
@click.argument("result", type=_FILE)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write [default: RESULT with the suffix .html].")
@click.option("--audit", type=_FILE, help="An audit's JSON (advrobust audit).")
@click.option("--transfer", type=_FILE, help="A transfer matrix's JSON (advrobust transfer).")
@click.option("--one-pixel", type=_FILE, multiple=True,
              help="A One-Pixel all-targets result's JSON; repeat for several images.")
@click.option("--fooling", type=_FILE, help="A fooling-images result's JSON.")
@click.option("--training", type=_FILE, help="A training history: its JSON or JSON-lines log.")
@click.option("--title", help="Title of the page [default: 'Robustness report: MODEL'].")
def command(
    result: Path,
    out: Path | None,
    audit: Path | None,
    transfer: Path | None,
    one_pixel: tuple[Path, ...],
    fooling: Path | None,
    training: Path | None,
    title: str | None,
) -> None:
    """Write the HTML report of RESULT: an evaluation's JSON, or a report's *_results.json.

    One self-contained page (images embedded, works offline and with JavaScript off), its figures
    as PNG files in <name>_figures/ and the results in <name>_results.json.
    """
    from advrobust.report import write_report
    from advrobust.report.writer import figures_dir, results_path

    saved = _read_json(result)
    if isinstance(saved, dict) and saved.get("task") in ("segmentation", "detection"):
        from advrobust.report.tasks import write_task_report  # evaluate --task ... --json

        console.print(f"report   {write_task_report(out or result.with_suffix('.html'), saved, title)}",
                      markup=False, highlight=False, soft_wrap=True)
        return
    inputs = load_inputs(result)
    extra = {"audit": audit, "transfer": transfer, "fooling": fooling, "training": training}
    inputs.update({k: _read_json(p) for k, p in extra.items() if p is not None})
    if one_pixel:
        inputs["one_pixel"] = [_read_json(p) for p in one_pixel]
    if out is None:
        out = result.with_suffix(".html")
        if out.name.endswith("_results.html"):
            out = out.with_name(out.name[: -len("_results.html")] + ".html")
    path = write_report(out, title=title, **inputs)

    evaluation = inputs.get("evaluation")
    if evaluation is not None:
        title_text = Text(f"{evaluation.model_name} on {evaluation.data_name}")  # no markup
        table = Table(title=title_text, title_justify="left")
        table.add_column("ε", justify="right")
        table.add_column("robust accuracy", justify="right")
        table.add_row("0 (clean)", f"{evaluation.clean_accuracy:.1%}")
        for eps, acc in evaluation.robust_accuracy.items():
            table.add_row(f"{eps:g}", f"{acc:.1%}")
        console.print(table)
    pngs = sorted(figures_dir(path).glob("*.png"))
    for what, where in (
        ("report", str(path)),
        ("figures", f"{figures_dir(path)}/ ({len(pngs)} PNG)"),
        ("results", str(results_path(path))),
    ):
        console.print(f"{what:<8} {where}", markup=False, highlight=False, soft_wrap=True)
