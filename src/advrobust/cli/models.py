"""``advrobust models``: list the architectures, or show a checkpoint's metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from advrobust.cli.common import print_listing
from advrobust.cli.console import console


@click.group(name="models")
def command() -> None:
    """List the architectures, or inspect a checkpoint."""


@command.command(name="list")
def list_command() -> None:
    """List the architectures that `advrobust train --arch` accepts."""
    from advrobust.models import ARCHITECTURES

    print_listing("architectures", ("name", "description"), [(name, a.summary) for name, a in ARCHITECTURES.items()])


@command.command(name="show")
@click.argument("checkpoint", type=click.Path(path_type=Path))
def show_command(checkpoint: Path) -> None:
    """Show the metadata of an advrobust checkpoint (.safetensors)."""
    from advrobust.models import read_metadata

    meta = read_metadata(checkpoint)
    table = Table(title=str(checkpoint), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in sorted(meta):
        if key == "classes":
            table.add_row(key, f"{len(meta[key])}: {', '.join(map(str, meta[key][:10]))}"
                          + (" …" if len(meta[key]) > 10 else ""))
        elif isinstance(meta[key], dict):
            for sub, value in meta[key].items():
                table.add_row(f"{key}.{sub}", _fmt(value))
        else:
            table.add_row(key, _fmt(meta[key]))
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)
