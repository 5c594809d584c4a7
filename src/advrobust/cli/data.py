"""``advrobust data``: list the data sets, show one (shape, classes, counts, pixel range), download one."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from advrobust.cli.common import print_listing
from advrobust.cli.console import RichProgress, console
from advrobust.data import DATASETS, SPLITS, canonical_name, default_root, list_datasets, load
from advrobust.errors import InputError

ROOT_HELP = "folder (mnist, cifar10), class folder (folder) or .npz file (npz); default for downloads: see list"


@click.group(name="data")
def command() -> None:
    """List the data sets, inspect one, or download it."""


@command.command(name="list")
def list_command() -> None:
    """List the data sets and where each is read from."""
    where = {"builtin": "built in", "user": "--root required"}
    rows = [(name, description, where.get(DATASETS[name].kind) or str(default_root(name)))
            for name, description in list_datasets().items()]
    print_listing("data sets", ("name", "description", "root"), rows)


@command.command(name="show")
@click.argument("name")
@click.option("--root", type=click.Path(path_type=Path), default=None, help=ROOT_HELP)
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
def show_command(name: str, root: Path | None, split: str) -> None:
    """Show a data set: shape, classes, points per class, pixel range."""
    data = load(name, root=root, split=split)
    c, h, w = data.input_shape
    summary = Table(title=f"{data.name} ({data.split})", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value")
    summary.add_row("points", str(len(data)))
    summary.add_row("image shape", f"{c}×{h}×{w} (C×H×W), {data.x.dtype}")
    summary.add_row("classes", str(data.num_classes))
    if len(data):
        low, high = data.x.aminmax()
        summary.add_row("pixel range", f"[{low.item():.4g}, {high.item():.4g}], mean {data.x.mean().item():.4g}")
    console.print(summary)
    counts = Table(title="points per class")
    counts.add_column("label", justify="right")
    counts.add_column("class")
    counts.add_column("points", justify="right")
    for label, (cls, count) in enumerate(zip(data.classes, data.class_counts(), strict=True)):
        counts.add_row(str(label), cls, str(count))
    console.print(counts)


@command.command(name="download")
@click.argument("name")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="folder to download into")
@click.option("--from", "source", type=click.Path(exists=True, path_type=Path), default=None,
              help="faces: the face-api tarball or folder you already have (instead of npm pack)")
def download_command(name: str, root: Path | None, source: Path | None) -> None:
    """Download mnist or cifar10 into --root, or the face models (faces), verified by SHA-256."""
    from advrobust.data.download import download_dataset

    if name.lower() == "faces":
        from advrobust.faces.weights import download_faces, faces_dir

        if root is not None:
            raise InputError(f"face models go to the cache ({faces_dir()}): set ADVROBUST_HOME to move it, not --root")
        with console.status("npm pack, verify, convert" if source is None else f"verify and convert {source}"):
            files = download_faces(source)
        for path in files:
            console.print(f"verified and installed {path}")
        console.print("next: advrobust faces verify A.jpg B.jpg")
        return
    if source is not None:
        raise InputError("--from is for `advrobust data download faces` only")
    key = canonical_name(name)
    folder = (root or default_root(key)).expanduser()
    files = download_dataset(key, folder, progress=RichProgress())
    for path in files:
        console.print(f"verified {path}")
    console.print(f"next: advrobust data show {key} --root {folder}")
