"""``advrobust audit``: the gradient-masking checks, a verdict per check; exit status 3 on a failure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from advrobust.cli.common import defence_options, defend_model, load_model, load_points, model_options, progress_for
from advrobust.cli.console import console

#: exit status when a check fails (1 is a user error, 2 a usage error)
EXIT_FAILED = 3

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def _evidence(evidence: dict) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)

    return "\n".join(f"{k}: {fmt(v)}" for k, v in evidence.items())


@click.command("audit")
@model_options()
@click.option("--norm", default="linf", show_default=True, type=click.Choice(["linf", "l2", "l1"]))
@click.option("--eps", type=float, default=0.3, show_default=True, help="The budget whose robustness is audited.")
@click.option("--steps", type=int, default=40, show_default=True, help="PGD steps of the checks.")
@click.option("--queries", type=int, default=5000, show_default=True,
              help="Queries per point of the Square attack in the black-box check.")
@click.option("--surrogate", metavar="SPEC|CHECKPOINT", help="Another model to transfer from (adds that check).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Save the checks as JSON.")
@defence_options()
def command(
    model_spec: str | None, weights: str | None, data_name: str, root: str | None, split: str,
    n_points: int | None, seed: int, norm: str, eps: float, steps: int, queries: int,
    surrogate: str | None,
    json_path: Path | None, defence: str | None, bpda: bool, eot: int | None,
) -> None:
    """Check a model for gradient masking (Carlini et al. 2019; Athalye et al. 2018): each check's
    verdict, the numbers behind it and what they mean. Exits with status 3 if a check fails."""
    from advrobust.evaluation.masking import audit
    from advrobust.threat import threat_from_name

    progress = progress_for(0)
    model, model_name, _ = load_model(model_spec, weights, progress)
    model, model_name = defend_model(model, model_name, defence, bpda)
    other = load_model(surrogate, None, progress)[0] if surrogate else None
    data = load_points(data_name, root, split, 200 if n_points is None else n_points, seed)
    result = audit(model, data.x, data.y, threat_from_name(norm, eps), surrogate=other, steps=steps,
                   queries=queries, eot=eot, seed=seed, progress=progress)
    verdict = "[green]passed[/]" if result.passed else "[bold red]FAILED[/]"
    table = Table(title=f"Gradient-masking audit of {model_name}, {norm} eps={eps:g}, "
                        f"{result.n_points} points: {verdict}", title_justify="left")
    for column in ("check", "verdict", "evidence", "what it means"):
        table.add_column(column)
    for check in result.checks:
        table.add_row(check.name, f"[{_STYLE[check.verdict]}]{check.verdict}[/]", _evidence(check.evidence),
                      check.explanation)
    console.print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(result.to_dict(), default=float))
        console.print(f"audit saved to {json_path}")
    if not result.passed:
        # SystemExit, not click's Exit: click returns (not raises) Exit codes in non-standalone mode
        sys.exit(EXIT_FAILED)
