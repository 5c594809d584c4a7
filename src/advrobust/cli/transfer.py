"""``advrobust transfer``: the transfer matrix of Dong et al. (2018, Table 1) in one command.

Without ``--model``, three models trained by advrobust on mnist-5k (each once, then cached): the
default ``mnist-cnn``, a narrower ``mnist-cnn`` from another seed, and an ``mlp`` — two
architectures, three seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from advrobust.cli.common import load_model, load_points, model_options, progress_for
from advrobust.cli.console import console
from advrobust.progress import Progress


def _default_models(progress: Progress) -> dict[str, Any]:
    from advrobust.training.pretrained import Recipe, default_model

    recipes = {
        "cnn-seed0": Recipe(),
        "cnn-w8-seed1": Recipe(arch_kwargs={"width": 8}, seed=1),
        "mlp-seed2": Recipe(arch="mlp", arch_kwargs={}, seed=2),
    }
    return {name: default_model(progress=progress, recipe=r)[0] for name, r in recipes.items()}


@click.command("transfer")
@model_options(many=True)
@click.option("--eps", type=float, default=0.3, show_default=True)
@click.option("--norm", default="linf", show_default=True, type=click.Choice(["linf", "l2", "l1"]))
@click.option("--attack", "attack_names", multiple=True, metavar="NAME",
              help="Attacks to craft with (repeatable) [default: fgsm, i-fgsm, mi-fgsm].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Save the matrix as JSON.")
def command(
    model_spec: tuple[str, ...], weights: str | None, data_name: str, root: str | None, split: str,
    n_points: int | None, seed: int, eps: float, norm: str,
    attack_names: tuple[str, ...], json_path: Path | None,
) -> None:
    """Craft adversarial examples on each model and measure their success on every model: rows are
    attack × source, columns targets, * marks the white-box diagonal. Give models with --model
    (repeatable); without, three small models are trained on mnist-5k (once, then cached)."""
    from advrobust.evaluation.transfer import transfer_matrix
    from advrobust.threat import threat_from_name

    progress = progress_for(0)
    if model_spec:
        models = {}
        for spec in model_spec:
            model, name, _ = load_model(spec, weights, progress)
            models[name if name not in models else spec] = model
    else:
        models = _default_models(progress)
    data = load_points(data_name, root, split, 500 if n_points is None else n_points, seed)
    attacks = list(attack_names) or ["fgsm", "i-fgsm", "mi-fgsm"]
    result = transfer_matrix(models, models, data.x, data.y, attacks=attacks, threat=threat_from_name(norm, eps),
                             progress=progress)
    table = Table(title=f"Transfer success rate (%), {norm} eps={eps:g}, {len(data)} points "
                        "(* white-box)", title_justify="left")
    table.add_column("attack")
    table.add_column("source")
    for target in result.targets:
        table.add_column(target, justify="right")
    for attack, source, rates in result.table():
        table.add_row(attack, source, *(f"{100 * v:.1f}" + ("*" if t == source else "") for t, v in rates.items()))
    console.print(table)
    if json_path is not None:
        json_path.write_text(result.to_json())
        console.print(f"matrix saved to {json_path}")
