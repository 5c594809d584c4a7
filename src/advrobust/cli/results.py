"""``advrobust results``: the stored evaluations as a leaderboard; show one, export JSON/CSV."""

from __future__ import annotations

from pathlib import Path

import click
from rich import box
from rich.table import Table

from advrobust.cli.common import pct
from advrobust.cli.console import console
from advrobust.cli.evaluate import results_table


@click.command("results")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
              help="Results store [default: results.sqlite in the advrobust cache].")
@click.option("--model", help="Only this model (its name, or a prefix of its fingerprint).")
@click.option("--data", "data_name", help="Only this data set.")
@click.option("--norm", type=click.Choice(["linf", "l2", "l1", "l0"]), help="Only this threat model.")
@click.option("--eps", type=float, help="Rank by robust accuracy at this eps (runs without it are left out).")
@click.option("--limit", type=int, help="Show at most this many rows.")
@click.option("--show", "show_id", type=int, metavar="ID", help="Print one stored evaluation in full.")
@click.option("--delete", "delete_id", type=int, metavar="ID", help="Delete one stored evaluation.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Export the listed evaluations (full results) as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Export the listed rows as CSV.")
def command(
    db: Path | None, model: str | None, data_name: str | None, norm: str | None, eps: float | None,
    limit: int | None, show_id: int | None, delete_id: int | None, json_path: Path | None,
    csv_path: Path | None,
) -> None:
    """List the recorded evaluations, best robust accuracy first (a local leaderboard): at --eps if
    given, else at each run's largest eps."""
    from advrobust.evaluation.store import ResultStore

    store = ResultStore(db)
    if show_id is not None:
        console.print(results_table(store.get(show_id)))
        return
    if delete_id is not None:
        store.delete(delete_id)
        console.print(f"deleted evaluation {delete_id} from {store.path}")
        return
    rows = store.rows(model=model, data=data_name, threat=norm, eps=eps, limit=limit)
    if not rows:
        console.print(f"no stored evaluations in {store.path} match: run `advrobust evaluate` first")
        return
    all_eps = sorted({e for r in rows for e in r.robust_accuracy})
    table = Table(title=f"Stored evaluations, robust accuracy at each eps ({store.path})", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for column in ("id", "model", "data", "attack", "n", "clean"):
        table.add_column(column, justify="right" if column in ("id", "n", "clean") else "left")
    for e in all_eps:
        table.add_column(f"@{e:g}", justify="right")
    for r in rows:
        cells = [pct(r.robust_accuracy[e][0]) if e in r.robust_accuracy else "-" for e in all_eps]
        table.add_row(str(r.id), r.model_name, r.data_name, f"{r.threat} {r.suite}", str(r.n_points),
                      pct(r.clean_accuracy), *cells)
    console.print(table)
    if json_path is not None:
        console.print(f"exported to {store.export_json(json_path, rows)}")
    if csv_path is not None:
        console.print(f"exported to {store.export_csv(csv_path, rows)}")
