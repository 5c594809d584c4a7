"""Errors a user can act on.

Every error advrobust raises on purpose derives from :class:`AdvrobustError`; its message says what
was wrong and how to fix it, in one line. The CLI prints such errors without a traceback and exits
with status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AdvrobustError(Exception):
    """Base class of the errors advrobust raises for bad input or a bad environment."""


class InputError(AdvrobustError, ValueError):
    """A tensor, label, target or hyper-parameter that cannot be used as given."""


class DataError(AdvrobustError):
    """A data set that is unknown, missing, corrupt or fails its checksum."""


class ChecksumError(DataError):
    """A file whose SHA-256 differs from the expected one."""


class ModelLoadError(AdvrobustError):
    """A model or checkpoint that cannot be found, imported or loaded safely."""


class ModelAccessError(AdvrobustError, TypeError):
    """An attack that needs more access to the model than it offers (e.g. gradients of a black box)."""
