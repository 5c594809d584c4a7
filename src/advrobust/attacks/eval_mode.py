"""The model runs in eval mode during an attack and is left in the mode each module was found in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from advrobust.runtime.runner import Model


@contextmanager
def evaluation_mode(model: Model) -> Iterator[None]:
    """Put every module of ``model`` in eval mode; restore each module's own mode afterwards."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
