"""Cache-sized batches: a CPU runs a few hundred MNIST rows fastest in passes of :data:`CPU_ROWS`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: rows per forward pass on a CPU (cache-sized; see :mod:`advrobust.runtime.fast_forward`)
CPU_ROWS = 128


def chunked(fn: Callable[[Tensor], Tensor], x: Tensor, rows: int | None) -> Tensor:
    """``fn(x)``, in passes of at most ``rows`` rows (``None``: one pass)."""
    if rows is None or x.shape[0] <= rows:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(rows)])
