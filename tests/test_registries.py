"""Registries are matched by name: a class's own ``name`` (what results and reports are labelled with)
must be the key it is registered under, so the two can never drift apart. The command line's
``NAME:OPTION=VALUE,...`` reads into the options the attack is built with."""

from __future__ import annotations

import pytest

import advrobust.training.adversarial  # noqa: F401 - registers the adversarial training methods
from advrobust.attacks.registry import ATTACKS, create, parse_entry
from advrobust.errors import InputError
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


def test_an_entry_with_options_builds_the_attack_it_names():
    assert parse_entry("pgd") == "pgd"
    name, options = parse_entry("pgd:steps=7,step-size=0.01,early_stop=false,restarts=2")
    assert (name, options) == ("pgd", {"steps": 7, "step_size": 0.01, "early_stop": False, "restarts": 2})
    attack = create(name, threat=Linf(eps=0.1), **options)
    assert (attack.steps, attack.step_size, attack.early_stop, attack.restarts) == (7, 0.01, False, 2)
    assert parse_entry("dag:targets=vanish,seed=none") == ("dag", {"targets": "vanish", "seed": None})


@pytest.mark.parametrize("text, message", [
    ("pgd:stepz=3", "attack 'pgd' takes no option 'stepz'; its options: "),
    ("pgd:steps", "attack options are OPTION=VALUE"),
    ("pgd:=3", "attack options are OPTION=VALUE"),
    ("pgdd:steps=3", "unknown attack 'pgdd'"),
])
def test_a_bad_entry_says_what_is_wrong(text, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        parse_entry(text)
