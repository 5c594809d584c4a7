"""What several commands share: the model and data options and their loading, budgets, percentages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from advrobust.cli.console import RichProgress, console
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress


def parse_eps(values: tuple[str, ...], unbounded: bool = False) -> list[float | None] | None:
    """``--eps 0.1 --eps 0.2,0.3`` -> ``[0.1, 0.2, 0.3]`` (``None`` when not given); with ``unbounded``
    also ``none`` -> ``None`` in the list (no budget: DAG against a segmenter or detector)."""
    out: list[float | None] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() == "none":
                if not unbounded:
                    raise InputError("--eps none (no budget) is for DAG with --task segmentation|detection; "
                                     "give numbers here (e.g. 0.1,0.3)")
                out.append(None)
                continue
            try:
                out.append(float(part))
            except ValueError:
                raise InputError(f"--eps takes numbers (e.g. 0.1,0.3){' or none' if unbounded else ''}, "
                                 f"got {part!r}") from None
    return out or None


#: the scene transformations the CLI names (``advrobust.transforms`` presets)
SCENES = ("physical", "printed-digit")


def scene_transform(name: str, strength: float = 1.0) -> Any:
    """The preset ``name`` (:data:`SCENES`) at ``strength`` × its documented ranges."""
    from advrobust.transforms import physical, printed_digit

    if name not in SCENES:
        raise InputError(f"unknown transformations {name!r}: use {' or '.join(SCENES)}")
    if not strength >= 0:
        raise InputError(f"the transformations' strength must be >= 0 (0: none, 1: their documented ranges), "
                         f"got {strength}")
    return (printed_digit if name == "printed-digit" else physical)(strength)


def parse_scene(spec: str) -> Any:
    """``--transform NAME[:STRENGTH]`` (e.g. ``printed-digit:0.5``) as a transformation."""
    name, _, strength = spec.strip().partition(":")
    try:
        value = float(strength) if strength else 1.0
    except ValueError:
        raise InputError(f"--transform takes NAME[:STRENGTH] (e.g. printed-digit:0.5), got {spec!r}") from None
    return scene_transform(name.strip().lower(), value)


def load_model(spec: str | None, weights: str | None, progress: Progress) -> tuple[Any, str, list[str] | None]:
    """``(model, name, class names or None)`` for ``--model`` (default: the default model)."""
    if spec is None:
        from advrobust.training.pretrained import default_model

        model, meta = default_model(progress=progress)
        return model, f"{meta.get('arch', 'default')} (default)", meta.get("classes")
    from advrobust.models import load_checkpoint
    from advrobust.models import load_model as load_any

    if spec.endswith(".safetensors") and weights is None:
        model, meta = load_checkpoint(spec)
        return model, Path(spec).stem, meta.get("classes")
    return load_any(spec, weights=weights), Path(spec.split(":")[0]).stem, None


def _stacked(decorators: list[Any]) -> Any:
    """One decorator applying ``decorators`` so that the options appear in their listed order."""

    def apply(f: Any) -> Any:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def defence_options() -> Any:
    """``--defence NAME[:VALUE]`` (a bundled defence in front of the model), ``--bpda`` (attack its
    input transformation through BPDA) and ``--eot N`` (draws each attack averages over). The names
    are those of :data:`advrobust.models.defences.DEFENCES` (written out here: the CLI does not import
    torch to print its help)."""
    decorators = [
        click.option("--defence", metavar="NAME[:VALUE]",
                     help="Put a bundled defence in front of the model: noise[:sigma=0.3], "
                          "resize-pad[:min_scale=0.8], dropout[:p=0.3] (randomized), bit-depth[:bits=3], "
                          "median[:size=3], jpeg[:quality=75] (input transformations)."),
        click.option("--bpda", is_flag=True,
                     help="Attack the defence's input transformation (bit-depth, median, jpeg) through BPDA: "
                          "the real transformation forward, the identity backward (Athalye et al. 2018)."),
        click.option("--eot", type=int, metavar="N",
                     help="Every attack averages gradients (or scores) over N draws of a randomized model "
                          "[default: 20 when the model is randomized, else 1]."),
    ]

    return _stacked(decorators)


def defend_model(model: Any, name: str, defence: str | None, bpda: bool) -> tuple[Any, str]:
    """``(model behind the defence, its display name)``; the model unchanged without ``--defence``."""
    if defence is None:
        if bpda:
            raise InputError("--bpda attacks a defence's input transformation: name it with --defence, "
                             "e.g. --defence bit-depth:2 --bpda")
        return model, name
    from advrobust.models.defences import defend

    return defend(model, defence, bpda=bpda), f"{name} + {defence}" + (" (BPDA)" if bpda else "")


def load_points(name: str, root: str | None, split: str, n: int | None, seed: int) -> Any:
    """The data set, cut to a stratified, seeded subset of ``n`` points if asked."""
    from advrobust.data import load

    data = load(name, root=root, split=split)
    if n is not None:
        if n < 1:
            raise InputError(f"--n must be at least 1, got {n}")
        if n < len(data):
            data = data.subset(n, seed=seed)
    return data


def progress_for(rank: int) -> Progress:
    return RichProgress() if rank == 0 else SILENT


def model_options(many: bool = False) -> Any:
    """The options naming the model(s) and the points: ``--model`` (repeatable if ``many``),
    ``--weights``, ``--data``, ``--root``, ``--split``, ``--n``, ``--seed``."""
    model_help = ("A .safetensors checkpoint, a TorchScript file or package.module:factory "
                  + ("(repeatable)." if many else "[default: the default model, trained once and cached]."))
    decorators = [
        click.option("--model", "model_spec", metavar="SPEC|CHECKPOINT", multiple=many, help=model_help),
        click.option("--weights", metavar="PATH", help="Weights for a package.module:factory model."),
        click.option("--data", "data_name", default="mnist-5k", show_default=True, help="Data set name."),
        click.option("--root", metavar="PATH", help="Folder or file of the data set (not for mnist-5k)."),
        click.option("--split", default="test", show_default=True, help="Split to evaluate on."),
        click.option("--n", "--points", "n_points", type=int, metavar="N",
                     help="Use a stratified subset of N points (--points under torchrun, whose own "
                          "options take --n)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subset and the attacks."),
    ]

    return _stacked(decorators)


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def pct_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{100 * value:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def print_listing(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print a listing (``advrobust data list``, ``models list``): names in bold, the last column folded."""
    table = Table(title=title)
    last = len(columns) - 1
    for i, column in enumerate(columns):
        table.add_column(column, style="bold" if i == 0 else None, overflow="fold" if i == last else "ellipsis")
    for row in rows:
        table.add_row(*row)
    console.print(table)
