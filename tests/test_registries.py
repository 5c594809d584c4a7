"""Registries are matched by name: a class's own ``name`` (what results and reports are labelled with)
must be the key it is registered under, so the two can never drift apart."""

from __future__ import annotations

import pytest

import advrobust.training.adversarial  # noqa: F401 - registers the adversarial training methods
from advrobust.attacks.registry import ATTACKS, create
from advrobust.threat import Linf
from advrobust.training.methods import METHODS


@pytest.mark.parametrize("key", [k for k, s in ATTACKS.items() if not s.preset])
def test_each_attack_class_is_named_by_its_key(key):
    assert ATTACKS[key].load().name == key


def test_preset_entries_are_variants_of_a_registered_class():
    """``apgd-dlr`` is APGD with ``loss="dlr"``: its class is registered under its own name too."""
    for key, entry in ATTACKS.items():
        if entry.preset:
            cls = entry.load()
            assert cls.name in ATTACKS and ATTACKS[cls.name].load() is cls, key
            assert create(key, threat=Linf(eps=0.1)).name == key  # labelled as the variant it is


@pytest.mark.parametrize("key", sorted(METHODS))
def test_each_training_method_is_named_by_its_key(key):
    assert getattr(METHODS[key], "name", key) == key
