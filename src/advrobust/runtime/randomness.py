"""Is the model randomized? Run it twice on the same inputs and compare.

A deterministic model on a CPU gives the same outputs for the same batch; a randomized defence
(input noise, random resizing, dropout at inference) differs by far more than rounding. Such a model
needs expectation over transformation and verdicts over several draws (Athalye, Carlini & Wagner
2018, §4.1.2); AutoAttack runs the same check before choosing its ``rand`` version.

To compare two ways of running a randomized model (the plain model and a faster layout of it), both
must see the same draws: :func:`replay_point` captures the random state a pass will use, and
replaying it runs the next pass on the same draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advrobust.runtime.runner import Model

#: relative and absolute tolerance under which two passes of the same inputs count as equal
SAME_OUTPUT = {"rtol": 1e-5, "atol": 1e-6}


@dataclass(frozen=True)
class Randomness:
    """The clean outputs of a first pass, and how far a second pass of the same inputs moved them."""

    logits: Tensor
    max_change: float
    randomized: bool


@torch.no_grad()
def check_randomness(model: Model, x: Tensor) -> Randomness:
    """Run ``model`` twice on ``x``; it is randomized if the outputs differ beyond rounding."""
    first = model(x)
    if not x.shape[0]:
        return Randomness(first, 0.0, False)
    second = model(x)
    change = float((second - first).abs().max())
    return Randomness(first, change, not torch.allclose(second, first, **SAME_OUTPUT))


def replay_point(model: Model) -> Callable[[], None]:
    """A function that puts every random generator ``model`` draws from back in its present state:
    torch's default generator and each :class:`torch.Generator` a submodule keeps as an attribute
    (e.g. a transformed model's own seeded generator)."""
    generators = [torch.default_generator]
    if isinstance(model, nn.Module):
        generators += [g for m in model.modules() for g in vars(m).values() if isinstance(g, torch.Generator)]
    states = [(g, g.get_state()) for g in generators]

    def replay() -> None:
        for g, state in states:
            g.set_state(state)

    return replay
