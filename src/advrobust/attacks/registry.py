"""Names -> attacks, for the CLI and configs (in the spirit of timm's model registry).

    create("pgd", norm="linf", eps=0.3, steps=40)    # -> PGD(Linf(eps=0.3), steps=40)
    list_attacks("*fgsm*")                             # -> ['fgsm', 'i-fgsm', 'mi-fgsm']
    parse_entry("dag:gamma=4,targets=0")               # -> ('dag', {'gamma': 4, 'targets': 0}), the CLI's form

Entries name their module and class as strings, so listing attacks imports none of them.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from advrobust.errors import InputError
from advrobust.threat import Threat, threat_from_name


@dataclass(frozen=True)
class AttackSpec:
    """One registry entry: where the class lives, preset keyword arguments, a one-line summary."""

    module: str
    cls: str
    summary: str
    default_norm: str = "linf"
    preset: dict[str, Any] = field(default_factory=dict)

    def load(self) -> type:
        return getattr(importlib.import_module(f"advrobust.attacks.{self.module}"), self.cls)


#: an attack as a configuration names it: a registry name, or a name and keyword options
Entry: TypeAlias = str | tuple[str, dict[str, Any]]

ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec("gradient", "FGSM", "Fast Gradient Sign Method, one step (Goodfellow et al. 2015)"),
    "i-fgsm": AttackSpec("gradient", "BIM", "Iterative FGSM / BIM, alpha = eps/n (Kurakin et al. 2017)"),
    "pgd": AttackSpec("gradient", "PGD", "Projected Gradient Descent with random start (Madry et al. 2018)"),
    "mi-fgsm": AttackSpec("gradient", "MIFGSM", "Momentum I-FGSM, mu = 1 (Dong et al. 2018)"),
    "apgd-ce": AttackSpec("apgd", "APGD", "Auto-PGD on cross-entropy (Croce & Hein 2020)", preset={"loss": "ce"}),
    "apgd-dlr": AttackSpec("apgd", "APGD", "Auto-PGD on the DLR loss (Croce & Hein 2020)", preset={"loss": "dlr"}),
    "apgd-t": AttackSpec("apgd", "APGDT", "targeted Auto-PGD on DLR over the top classes (Croce & Hein 2020)"),
    "square": AttackSpec("square", "Square", "Square Attack, score-based (Andriushchenko et al. 2020)"),
    "one-pixel": AttackSpec(
        "one_pixel", "OnePixel", "One-Pixel attack by differential evolution (Su et al. 2019)", default_norm="l0"
    ),
    "lbfgs": AttackSpec(
        "lbfgs", "LBFGS", "box-constrained L-BFGS, minimum l2 (Szegedy et al. 2014)", default_norm="l2"
    ),
    "cw": AttackSpec("cw", "CarliniWagner", "Carlini & Wagner l2 with binary search over c (2017)", default_norm="l2"),
    "deepfool": AttackSpec(
        "deepfool", "DeepFool", "DeepFool, minimum l2/linf (Moosavi-Dezfooli et al. 2016)", default_norm="l2"
    ),
    "jsma": AttackSpec(
        "jsma", "JSMA", "Jacobian-based Saliency Map Attack, l0 (Papernot et al. 2016)", default_norm="l0"
    ),
    "fmn": AttackSpec("fmn", "FMN", "Fast Minimum-Norm attack, l0/l1/l2/linf (Pintor et al. 2021)", default_norm="l2"),
    "fgsm-rs": AttackSpec("fgsm_rs", "RandomStartFGSM", "FGSM from a random start, step 1.25 eps (Wong et al. 2020)"),
    "trades-kl": AttackSpec("trades_kl", "KLAttack", "PGD on KL(f(x) || f(x')), TRADES' inner step (Zhang 2019)"),
    "roa": AttackSpec(
        "occlusion", "ROA", "rectangular occlusion, eps = its area in pixels (Wu et al. 2020)", default_norm="l0"
    ),
    "dag": AttackSpec(
        "dag", "DAG", "Dense Adversary Generation, segmentation and detection (Xie et al. 2017)"
    ),
}

ALIASES: dict[str, str] = {
    "bim": "i-fgsm",
    "ifgsm": "i-fgsm",
    "mifgsm": "mi-fgsm",
    "apgd": "apgd-ce",
    "onepixel": "one-pixel",
    "pixel": "one-pixel",
    "l-bfgs-b": "lbfgs",
    "l-bfgs": "lbfgs",
    "cw-l2": "cw",
    "carlini-wagner": "cw",
}


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in ATTACKS:
        raise InputError(f"unknown attack {name!r}: choose one of {', '.join(ATTACKS)}")
    return key


def get(name: str) -> type:
    """The attack class registered under ``name`` (or an alias)."""
    return ATTACKS[_canonical(name)].load()


def spec(name: str) -> AttackSpec:
    return ATTACKS[_canonical(name)]


def create(
    name: str,
    norm: str | None = None,
    eps: float | None = None,
    *,
    threat: Threat | None = None,
    **kwargs: Any,
) -> Any:
    """Build an attack by name: ``create("pgd", norm="linf", eps=0.3, steps=40)``.

    Give either ``threat`` or ``norm``/``eps``; the norm defaults to the attack's usual one. A preset
    variant (``"apgd-dlr"``: APGD with ``loss="dlr"``) is named by its own key, as results label it.
    An option the attack does not take is a one-line error that lists the ones it does.
    """
    key = _canonical(name)
    entry = ATTACKS[key]
    if threat is None:
        threat = threat_from_name(norm or entry.default_norm, eps)
    elif norm is not None or eps is not None:
        raise InputError("give either threat=... or norm=/eps=, not both")
    options = {**entry.preset, **kwargs}
    _check_options(key, options)
    attack = entry.load()(threat, **options)
    if entry.preset:
        attack.name = key
    return attack


def keyword_options(factory: Any) -> list[str]:
    """The keyword arguments ``factory`` (a class or a function) accepts, in order; a class constructor
    that passes ``**kwargs`` on to its base accepts the base's too. What the CLI may pass through, for
    the attacks here and the training methods (:func:`advrobust.training.methods.method_options`)."""
    constructors = [c.__init__ for c in factory.__mro__] if isinstance(factory, type) else [factory]
    names: list[str] = []
    for constructor in constructors:
        params = list(inspect.signature(constructor).parameters.values())
        names += [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.name != "self" and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def _check_options(key: str, options: dict[str, Any]) -> None:
    """A one-line error for an option the attack's constructor does not take (besides the threat)."""
    accepted = set(keyword_options(ATTACKS[key].load())) - {"threat"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise InputError(f"attack {key!r} takes no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(sorted(accepted))}")


def list_attacks(pattern: str = "*") -> list[str]:
    """Registered attack names matching a shell-style ``pattern`` (e.g. ``"*fgsm*"``)."""
    return [name for name in ATTACKS if fnmatch.fnmatch(name, pattern.lower())]


def parse_entry(text: str) -> Entry:
    """The command line's ``NAME[:OPTION=VALUE,...]``: ``"pgd"`` → ``"pgd"``, ``"pgd:steps=100"`` →
    ``("pgd", {"steps": 100})``. A value reads as an int, a float, ``true``/``false`` or ``none``
    where it can, else as a string (``"dag:targets=vanish"``). The name and the options' names are
    checked here (before a model loads); their values when the attack is built."""
    name, sep, rest = str(text).partition(":")
    key = _canonical(name)
    if not sep:
        return name.strip()
    options: dict[str, Any] = {}
    for part in rest.split(","):
        option, eq, value = part.partition("=")
        option = option.strip().replace("-", "_")
        if not eq or not option.isidentifier():
            raise InputError(f"attack options are OPTION=VALUE separated by commas, e.g. pgd:steps=100,restarts=5; "
                             f"got {part!r} in {text!r}")
        options[option] = _option_value(value.strip())
    _check_options(key, options)
    return name.strip(), options


def _option_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
