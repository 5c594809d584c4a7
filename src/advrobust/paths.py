"""Where advrobust keeps what it computes once and reuses (the default model, downloads).

The cache directory follows the XDG Base Directory Specification: ``$ADVROBUST_HOME`` if set, else
``$XDG_CACHE_HOME/advrobust``, else ``~/.cache/advrobust``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """The advrobust cache directory (not created; see :func:`cache_path`)."""
    home = os.environ.get("ADVROBUST_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "advrobust"


def cache_path(*parts: str) -> Path:
    """A path inside the cache directory; its parent folder is created."""
    path = cache_dir().joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path`` in one step.

    A reader never sees a half-written file: either the old file or the complete new one. On error
    the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
