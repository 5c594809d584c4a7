"""Terminal output for the CLI: rich tables and progress bars that degrade to plain text when piped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


class _RichTask:
    def __init__(self, bar: Progress | None, task_id: int | None, description: str) -> None:
        self._bar, self._id, self._description = bar, task_id, description

    def advance(self, n: int = 1, **metrics: Any) -> None:
        if self._bar is None or self._id is None:
            return
        extra = "  ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
        self._bar.update(self._id, advance=n, metrics=extra)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class RichProgress:
    """The :class:`advrobust.progress.Progress` of the CLI: a rich bar per task on a terminal, one
    line per finished task when stderr is not a terminal (no control characters in logs)."""

    def __init__(self, console: Console = err_console) -> None:
        self._console = console

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_RichTask]:
        if not self._console.is_terminal:
            yield _RichTask(None, None, description)
            self._console.print(f"done: {description}")
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
        )
        with Progress(*columns, console=self._console, transient=False) as bar:
            task_id = bar.add_task(description, total=total, metrics="")
            yield _RichTask(bar, task_id, description)


def is_piped() -> bool:
    return not sys.stdout.isatty()
