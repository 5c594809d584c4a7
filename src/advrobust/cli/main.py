"""Entry point of the ``advrobust`` command.

Commands live in their own modules (``advrobust.cli.<module>``, each exposing a click command named
``command``) and are imported only when invoked, so ``advrobust --help`` starts fast and a broken
optional dependency of one command never breaks the others.
"""

from __future__ import annotations

import importlib
import sys

import click

from advrobust.errors import AdvrobustError
from advrobust.runtime.huge_pages import prefer_huge_pages

# name -> (module under advrobust.cli, one-line help shown by `advrobust --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "Train a model (standard or adversarial) and save a checkpoint."),
    "evaluate": ("evaluate", "Attack a model and print its clean and robust accuracy."),
    "certify": ("certify", "Certified robust accuracy of a smoothed model, beside the attacked one."),
    "audit": ("audit", "Check an evaluation for gradient masking, with a verdict per check."),
    "patch": ("patch", "Train a universal adversarial patch, measure it under transformations, export it."),
    "transfer": ("transfer", "Craft on surrogate models, attack targets: the transfer matrix."),
    "results": ("results", "List, compare and export the stored evaluation results."),
    "report": ("report", "Write the HTML report of an evaluation (images, curves, tables)."),
    "attacks": ("attacks", "List the attacks and their defaults."),
    "data": ("data", "List the data sets, inspect one, or download it."),
    "models": ("models", "List the architectures, or inspect a checkpoint."),
    "faces": ("faces", "Verify faces, or attack a real face detector and recognizer."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"advrobust.cli.{COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short_help) for name, (_, short_help) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="advrobust")
def cli() -> None:
    """advrobust: attack, evaluate, defend and report the adversarial robustness of image models
    (classifiers, segmenters, detectors, face recognition).

    Start with `advrobust evaluate`: it trains (once, then cached) the default CNN on the built-in
    MNIST digits and prints its robustness.
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print one line and exit 1, usage errors exit 2 (click)."""
    prefer_huge_pages()  # before any large tensor: PyTorch reads the switch once
    try:
        # with standalone_mode=False click returns the code of ctx.exit(n) instead of exiting
        code = cli.main(args=argv, prog_name="advrobust", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except AdvrobustError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted: finished work is saved; run the same command again to resume.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
