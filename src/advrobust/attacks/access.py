"""How much of a model an attack may use: ``labels`` < ``scores`` < ``gradients``.

A torch module offers gradients; black-box wrappers (:mod:`advrobust.models.blackbox`) declare less
with an ``access`` attribute. Every attack declares what it ``needs``; one that needs more than the
model offers is refused before any work.
"""

from __future__ import annotations

from typing import Literal

from advrobust.errors import ModelAccessError
from advrobust.runtime.runner import Model

Access = Literal["gradients", "scores", "labels"]

#: the access levels, least first: a model offering one level offers every level before it
ACCESS_LEVELS: tuple[Access, ...] = ("labels", "scores", "gradients")


def model_access(model: Model) -> Access:
    """How much of the model an attack may use: ``gradients`` (default), ``scores`` or ``labels``."""
    return getattr(model, "access", "gradients")


def allows(have: Access, needs: Access) -> bool:
    """Whether a model offering ``have`` gives an attack that ``needs`` enough."""
    return ACCESS_LEVELS.index(have) >= ACCESS_LEVELS.index(needs)


def check_access(owner: str, needs: Access, model: Model) -> None:
    """Refuse, with a one-line hint, an attack (``owner``) that needs more than the model offers."""
    have = model_access(model)
    if not allows(have, needs):
        raise ModelAccessError(
            f"{owner} needs {needs} of the model, which offers only {have}: "
            "pick an attack that works with less (e.g. 'square' or 'one-pixel' for scores)"
        )
