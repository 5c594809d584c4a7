"""``advrobust attacks [PATTERN]``: the registered attacks with their kind, norms, summary and defaults."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import click
from rich.table import Table

from advrobust.attacks.base import kind_of
from advrobust.attacks.registry import ALIASES, ATTACKS, list_attacks
from advrobust.cli.console import console, is_piped
from advrobust.errors import InputError


@dataclass(frozen=True)
class AttackInfo:
    """One row of the listing."""

    name: str
    aliases: tuple[str, ...]
    kind: str
    norms: str
    summary: str
    defaults: str


# arguments that are plumbing, not hyper-parameters of the method
_NOT_HYPERPARAMETERS = {"threat", "progress"}


def describe(name: str) -> AttackInfo:
    """What the listing shows for one registry name; the class is imported to read its defaults
    (its ``__init__`` keyword defaults, overridden by the registry preset)."""
    spec = ATTACKS[name]
    aliases = tuple(sorted(a for a, target in ALIASES.items() if target == name))
    try:
        cls = spec.load()
    except (ImportError, AttributeError):
        return AttackInfo(name, aliases, "-", spec.default_norm, spec.summary, "(not available in this version)")
    params = {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.default is not inspect.Parameter.empty and p.name not in _NOT_HYPERPARAMETERS
    }
    params.update(spec.preset)
    defaults = ", ".join(f"{k}={v!r}" for k, v in params.items())
    norms = ", ".join(n if n != spec.default_norm else f"{n}*" for n in cls.norms)
    return AttackInfo(name, aliases, kind_of(cls), norms, spec.summary, defaults)


@click.command("attacks")
@click.argument("pattern", default="*")
def command(pattern: str) -> None:
    """List the attacks whose name matches PATTERN (shell-style, e.g. '*fgsm*'), with their kind,
    norms (* = default norm), summary and default hyper-parameters."""
    names = list_attacks(pattern)
    if not names:
        raise InputError(f"no attack matches {pattern!r}: run `advrobust attacks` to list them all")
    columns = ("name", "kind", "norms", "summary", "defaults")
    rows = []
    for info in map(describe, names):
        label = info.name + (f" ({', '.join(info.aliases)})" if info.aliases else "")
        rows.append((label, info.kind, info.norms, info.summary, info.defaults))
    if is_piped():  # one tab-separated line per attack: easy to grep and cut
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join(row))
        return
    table = Table(title="advrobust attacks")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
