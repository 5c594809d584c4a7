"""``advrobust certify``: certified robust accuracy of a smoothed model, beside the attacked one.

    advrobust certify --model noise.safetensors --sigma 0.25 --n 100 --samples 1000 --eps 0.5,1.0,1.5
    advrobust certify --model ablated.safetensors --smoothing column --band 4 --patch 5 --n 500

Gaussian smoothing (Cohen et al. 2019) prints, per l2 eps, the certified accuracy (a lower bound) and
the accuracy left by an attack on the smoothed classifier (an upper bound): the interval of
:mod:`advrobust.defences.interval`. Column smoothing (Levine & Feizi 2020) prints the certified
accuracy against ``--patch``-wide patches and, unless ``--no-attack``, the accuracy left by the
rectangular occlusion attack on the vote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from advrobust.cli.console import RichProgress, console
from advrobust.cli.evaluate import load_model, load_points, model_options, parse_eps, pct
from advrobust.errors import InputError


def _interval_table(result: Any) -> Table:
    cert = result.certificate
    table = Table(title=f"Randomized smoothing, σ = {cert.sigma} (n0 = {cert.n0}, n = {cert.n}, α = {cert.alpha})")
    for name in ("l2 eps", "certified (lower)", "attacked (upper)", "gap"):
        table.add_column(name, justify="right")
    for row in result.rows():
        table.add_row(f"{row['eps']:g}", pct(row["certified"]), pct(row["attacked"]), pct(row["gap"]))
    return table


def _gaussian(model: Any, data: Any, sigma: float, eps: list[float], samples: int, n0: int, alpha: float,
              attack: bool, seed: int, progress: Any) -> dict[str, Any]:
    from advrobust.defences import GaussianSmoothing, certified_accuracy, certify_and_attack

    smoothed = GaussianSmoothing(model, sigma=sigma)
    if attack:
        result = certify_and_attack(smoothed, data.x, data.y, eps, n0=n0, n=samples, alpha=alpha, seed=seed,
                                    progress=progress)
        console.print(_interval_table(result))
        console.print(result.attack)
        cert, summary = result.certificate, result.to_dict()
    else:
        cert = smoothed.certify(data.x, n0=n0, n=samples, alpha=alpha, seed=seed, progress=progress)
        acc = certified_accuracy(cert, data.y, eps)
        summary = {"sigma": sigma, "rows": [{"eps": e, "certified": a} for e, a in zip(eps, acc, strict=True)]}
        for e, a in zip(eps, acc, strict=True):
            console.print(f"certified accuracy at l2 radius {e:g}: {pct(a)}")
    console.print(f"{cert.seconds_per_point:.3f} s per certified point, {cert.samples_per_second:,.0f} samples/s")
    return summary


def _column(model: Any, data: Any, band: int, patch: int, attack: bool, progress: Any) -> dict[str, Any]:
    from advrobust.defences import ColumnSmoothing, certify_and_attack_patches

    smoothed = ColumnSmoothing(model, band=band)
    summary: dict[str, Any] = {"band": band, "patch": patch}
    if attack:
        result = certify_and_attack_patches(smoothed, data.x, data.y, [patch], progress=progress)
        cert, summary["certified"], summary["attacked"] = result.certificate, result.certified[0], result.attacked[0]
    else:
        cert = smoothed.certify(data.x, patch=patch, progress=progress)
        summary["certified"] = cert.certified_accuracy(data.y)
    summary["clean_accuracy"] = float((cert.prediction == data.y).float().mean())
    console.print(f"column smoothing, band {band}: clean {pct(summary['clean_accuracy'])}, certified against "
                  f"{patch}×{patch} patches {pct(summary['certified'])}")
    if attack:
        console.print(f"accuracy left by a {patch}×{patch} occlusion attack (ROA on the vote): "
                      f"{pct(summary['attacked'])}")
    console.print(f"{cert.seconds / max(len(cert), 1):.4f} s per certified point, {cert.samples_per_second:,.0f} "
                  "ablated images/s")
    return summary


@click.command(name="certify")
@model_options()
@click.option("--smoothing", type=click.Choice(["gaussian", "column"]), default="gaussian", show_default=True,
              help="Randomized (Gaussian, l2) or derandomized column smoothing (patches).")
@click.option("--sigma", type=float, default=0.25, show_default=True, help="Gaussian noise std (pixel units).")
@click.option("--eps", "eps_values", multiple=True, metavar="E[,E...]",
              help="l2 radii to report [default: 0.5,1.0,1.5].")
@click.option("--samples", type=int, default=1000, show_default=True,
              help="CERTIFY's estimation samples n per point (the paper: 100000).")
@click.option("--n0", type=int, default=100, show_default=True, help="CERTIFY's selection samples per point.")
@click.option("--alpha", type=float, default=0.001, show_default=True, help="Failure probability per point.")
@click.option("--band", type=int, default=4, show_default=True, help="Column smoothing: kept band width.")
@click.option("--patch", type=int, default=5, show_default=True, help="Column smoothing: patch width certified.")
@click.option("--attack/--no-attack", default=True, show_default=True, help="Also attack (the upper bound).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the numbers to this file.")
def command(model_spec: str | None, weights: str | None, data_name: str, root: str | None, split: str,
            n_points: int | None, seed: int, smoothing: str, sigma: float, eps_values: tuple[str, ...],
            samples: int, n0: int, alpha: float, band: int, patch: int, attack: bool, json_path: str | None) -> None:
    """Certified robust accuracy of a smoothed model, beside the attacked robust accuracy."""
    progress = RichProgress()
    if model_spec is None:
        raise InputError("give --model: a base classifier trained for smoothing (e.g. `advrobust train "
                         "--method gaussian-noise --sigma 0.25` or `--method column-ablation`)")
    model, _name, _classes = load_model(model_spec, weights, progress)
    data = load_points(data_name, root, split, 100 if n_points is None else n_points, seed)
    if smoothing == "gaussian":
        eps = parse_eps(eps_values) or [0.5, 1.0, 1.5]
        summary = _gaussian(model, data, sigma, eps, samples, n0, alpha, attack, seed, progress)
    else:
        summary = _column(model, data, band, patch, attack, progress)
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2) + "\n")
