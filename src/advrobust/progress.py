"""Progress reporting without printing.

Library code never prints (docs/architecture.md, "Conventions"): long loops take a ``progress`` object and tell it what
they do; the CLI passes one that draws rich progress bars, the Python API defaults to :data:`SILENT`.

    with progress.task("PGD eps=0.3", total=len(batches)) as task:
        for batch in batches:
            ...
            task.advance(1, robust_acc=0.91)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol


class Task(Protocol):
    def advance(self, n: int = 1, **metrics: Any) -> None:
        """Mark ``n`` more units done; ``metrics`` (name -> number) may be shown beside the bar."""


class Progress(Protocol):
    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]:
        """Open a unit of work of ``total`` steps (``None`` when unknown)."""


class _SilentTask:
    def advance(self, n: int = 1, **metrics: Any) -> None:
        return None

    def __enter__(self) -> _SilentTask:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _Silent:
    """A progress sink that shows nothing: the default of every library function."""

    def task(self, description: str, total: int | None = None) -> _SilentTask:
        return _SilentTask()


SILENT: Progress = _Silent()
