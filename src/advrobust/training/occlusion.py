"""DOA: adversarial training against rectangular occlusion (Wu, Tong & Vorobeychik 2020, "Defending
against physically realizable attacks on image classification", ICLR, Section 5).

The min–max of Madry et al. (2018) with the rectangular occlusion attack as the inner maximization:
``min_θ E_{(x,y)} [ max_{R, p} L(θ, x ⊙ (1 − M_R) + p ⊙ M_R, y) ]`` over the positions ``R`` of an
``h×w`` rectangle and its contents ``p ∈ [0, 1]``, found by :class:`advrobust.attacks.occlusion.ROA`
(the gradient-guided position search and PGD inside the rectangle). Like PGD-AT, every point is
attacked and the model trains on the adversarial images only (the paper's DOA). Defaults: a 5×5
rectangle, 10 candidate positions, 10 PGD steps of 0.1 — a fast preset for 28×28 digits (the paper
uses 30 steps on 224×224 faces). Importing this module registers ``doa`` in
:data:`advrobust.training.methods.METHODS`.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.attacks.occlusion import ROA
from advrobust.training.adversarial import maximize
from advrobust.training.methods import METHODS


class DOA:
    """Cross-entropy on ROA's adversarial images (Wu et al. 2020)."""

    name = "doa"

    def __init__(
        self, size: int | tuple[int, int] = 5, *, candidates: int = 10, steps: int = 10, step_size: float = 0.1
    ) -> None:
        self.attack = ROA(size=size, candidates=candidates, steps=steps, step_size=step_size)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        logits = model(maximize(self.attack, model, x, y))
        return F.cross_entropy(logits, y), logits

    def describe(self) -> dict[str, Any]:
        a = self.attack
        return {"method": self.name, "size": [a.height, a.width], "candidates": a.candidates, "steps": a.steps,
                "step_size": a.step_size}


METHODS["doa"] = DOA
