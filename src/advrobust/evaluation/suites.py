"""Named ensembles of attacks, turned into configured attacks for one threat model.

* ``quick`` — FGSM (Goodfellow et al. 2015) then PGD (Madry et al. 2018): a smoke test, no robustness
  claim (:data:`CAVEATS`). ``standard`` is the default of :func:`advrobust.evaluate` and the CLI.
* ``standard`` — in the spirit of AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial
  robustness with an ensemble of diverse parameter-free attacks"): APGD-CE with 5 random restarts,
  targeted APGD on DLR, a minimum-norm attack (FMN, Pintor et al. 2021, in place of FAB) and the
  query-only Square attack (Andriushchenko et al. 2020), in that order, each on the points the
  previous ones left unbroken. AutoAttack runs APGD-CE once; on an FGSM-RS-trained MNIST CNN (500
  points, l∞ 0.3) APGD-CE alone left 54.8% robust with 1 restart, 53.0% with 2, 52.4% with 3 and
  50.0% with 5 (benchmarks/results/restarts_fgsm_rs.json). A point stops costing as soon as a
  restart breaks it; a robust point costs 5 runs (on a PGD-AT CNN, 37 s instead of 8 s of a
  four-minute evaluation).
* ``plus`` — ``standard`` and APGD-DLR with 5 restarts besides, in the spirit of AutoAttack's "plus"
  version (AA+, Croce & Hein 2020, §5).
* ``rand`` — for randomized defences, in the spirit of AutoAttack's ``version="rand"``: APGD-CE and
  APGD-DLR with expectation over transformation, each step's gradient averaged over 20 draws of the
  model (EOT, Athalye et al. 2018), one restart. :func:`advrobust.evaluate` runs it in place of
  ``standard`` and ``plus`` when the model's outputs change from call to call.
* ``seed`` — the seed document's attacks side by side: FGSM, I-FGSM, MI-FGSM, One-Pixel, L-BFGS-B,
  JSMA.

Every attack keeps its registry defaults (the paper's, see each attack's docstring) unless its
suite entry says otherwise (``("apgd-ce", {"restarts": 5})``); a user's list may hold such entries
too.

A fixed-budget attack not defined for the threat's norm is skipped, with the reason recorded. A
minimum-norm attack not defined for the norm still runs, in its own norm, and its adversarial
examples are measured in the threat's norm: any adversarial example inside the eps-ball is valid
evidence against robustness, whichever norm the attack minimized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advrobust.attacks import registry
from advrobust.attacks.base import Attack, FixedBudgetAttack
from advrobust.attacks.registry import Entry
from advrobust.errors import InputError
from advrobust.threat import Threat, threat_from_name

#: standard's and plus' restarts (see the module docstring)
_RESTARTS = {"restarts": 5}

SUITES: dict[str, tuple[Entry, ...]] = {
    "quick": ("fgsm", "pgd"),
    "standard": (("apgd-ce", _RESTARTS), "apgd-t", "fmn", "square"),
    "plus": (("apgd-ce", _RESTARTS), ("apgd-dlr", _RESTARTS), "apgd-t", "fmn", "square"),
    "rand": (("apgd-ce", {"eot": 20}), ("apgd-dlr", {"eot": 20})),
    "seed": ("fgsm", "i-fgsm", "mi-fgsm", "one-pixel", "lbfgs", "jsma"),
}

#: the suites that a randomized model's evaluation replaces by ``rand``
RAND_REPLACES = ("standard", "plus")


#: what a suite's number does not mean, printed with its table and in its report
CAVEATS: dict[str, str] = {
    "quick": (
        "quick is a smoke test, not a robustness claim: FGSM and PGD alone overstated robust accuracy by up "
        "to 25 points (28.0% vs 3.6%) on an FGSM-RS-trained MNIST CNN where the standard suite and AutoAttack "
        "agreed; use the standard suite"
    ),
}


def suite_caveat(label: str) -> str | None:
    """The caveat of a suite's numbers (``None`` for a suite that makes a robustness claim)."""
    return CAVEATS.get(label)


@dataclass
class Member:
    """One attack of an ensemble: its display name, the configured attack, or why it is skipped."""

    name: str
    attack: Attack | None
    skipped_reason: str | None = None


def _from_name(name: str, threat: Threat, seed: int, options: dict[str, Any]) -> Member:
    entry = registry.spec(name)
    key = next(k for k, v in registry.ATTACKS.items() if v is entry)
    try:
        cls = entry.load()
    except (ImportError, AttributeError) as exc:
        raise InputError(f"attack {key!r} is not available in this installation ({exc})") from None
    if threat.name not in cls.norms:
        if issubclass(cls, FixedBudgetAttack):
            reason = f"defined for {', '.join(cls.norms)}, not {threat.name}"
            return Member(key, None, reason)
        attack = registry.create(key, threat=threat_from_name(cls.norms[0]), **options)
    else:
        eps = threat.eps if issubclass(cls, FixedBudgetAttack) else None
        attack = registry.create(key, threat=threat.with_eps(eps), **options)
    attack.seed = seed
    return Member(key, attack)


def _from_attack(attack: Attack, threat: Threat) -> Member:
    name = attack.name or type(attack).__name__.lower()
    if isinstance(attack, FixedBudgetAttack) and attack.threat.name != threat.name:
        return Member(name, None, f"configured for {attack.threat.name}, not {threat.name}")
    return Member(name, attack)


def build_suite(
    suite: str | Sequence[Entry | Attack], threat: Threat, seed: int = 0, eot: int | None = None
) -> tuple[str, list[Member]]:
    """``(suite label, members)`` for a suite name, or a list of attack names, ``(name, options)``
    pairs and Attack objects. ``eot``: every attack built from a name averages over that many draws
    of the model (replacing the suite's own count; Attack objects keep theirs)."""
    extra = {} if eot is None else {"eot": eot}
    items: Sequence[Entry | Attack]
    if isinstance(suite, str):
        key = suite.strip().lower()
        if key not in SUITES:
            raise InputError(f"unknown suite {suite!r}: choose one of {', '.join(SUITES)} or list attacks")
        label, items = key, SUITES[key]
    else:
        items = list(suite)
        if not items:
            raise InputError("the list of attacks is empty")
        label = "custom"
    members: list[Member] = []
    for item in items:
        if isinstance(item, Attack):
            member = _from_attack(item, threat)
        elif isinstance(item, str):
            member = _from_name(item, threat, seed, dict(extra))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], dict):
            member = _from_name(item[0], threat, seed, {**item[1], **extra})
        else:
            raise InputError(
                "an attack must be a name, a (name, options) pair or an Attack object, "
                f"got {type(item).__name__}"
            )
        taken = {m.name for m in members}
        base, k = member.name, 2
        while member.name in taken:
            member.name, k = f"{base}#{k}", k + 1
        members.append(member)
    return label, members
