"""FGSM from the epoch prior: single-step adversarial training whose start is remembered per example.

Jia, Zhang, Wei, Wu, Ma, Wang & Cao (2022), "Prior-guided adversarial initialization for fast
adversarial training" (ECCV): FGSM-RS (Wong, Rice & Kolter 2020, Algorithm 3) starts every step from
a fresh uniform point of the ball; with the *epoch prior* (their FGSM-EP) training example ``i``
starts where its own perturbation ended in the previous epoch, and a regularizer keeps the model's
output at the adversarial point close to its output at that start:

    x_0 = Π_{x,ε}(x + δ_{e−1}(i)),   x_adv = Π_{x,ε}(x_0 + α·sign(∇_x CE(θ, x_0, y))),
    δ_e(i) = x_adv − x,
    loss = CE(f(x_adv), y) + β·MSE(f(x_adv), f(x_0))      (the paper's λ; MSE of the logits,
                                                           averaged over batch and classes)

with ``α = 1.25·ε`` as in FGSM-RS and ``β = 10`` (the value of the paper's code). An example's first
visit (no prior yet) starts at a uniform random point of the ball, as FGSM-RS. Each example thus
accumulates one ascent step per epoch (ATTA, Zheng et al. 2020, carries perturbations across epochs
the same way), for one input gradient per example and step like FGSM-RS; the regularizer adds a
forward pass of ``x_0`` and its backward (about 1.5× FGSM-RS's step here).

On mnist-5k at l∞ ε = 0.3, APGD-CE + APGD-T on 200 test points (benchmarks/results/recipe_trials.json,
the same SGD recipe, 20 epochs): FGSM-RS 62.5 % (its PGD-10 validation says ~79 %: gradient
masking), the epoch prior alone 75.5 %, with the regularizer at β = 10: 86.5 %; what the default
command reaches is in :data:`advrobust.training.recipes.MEASURED`.

The priors are per-example state: ``N_train × C×H×W`` in half precision (a perturbation of at most ε;
16-bit floats keep it to ~1e-4 at ε = 0.3), on the batches' device, saved in the training
checkpoint (``state_dict``) so that a resumed run continues from them. The engine passes each
batch's rows of the training set (``index``, see :mod:`advrobust.training.methods`); called without
them, :meth:`FGSMEP.loss` starts every example at random. Under DistributedDataParallel each process
keeps the priors of the rows it trained (a row trained by another process last epoch starts from
this process's older prior), and the checkpoint holds the main process's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.iterative import steepest_step
from advrobust.errors import InputError
from advrobust.threat import Threat
from advrobust.training.adversarial import FGSMRS, _unwrap
from advrobust.training.methods import METHODS

#: storage dtype of the priors (a perturbation of at most ε per pixel: half precision is plenty)
PRIOR_DTYPE = torch.float16


class FGSMEP(FGSMRS):
    """FGSM-RS started from each example's perturbation of the previous epoch, with the prior-guided
    regularizer (Jia et al. 2022's FGSM-EP; see the module docstring). ``beta``: the regularizer's
    weight (the paper's λ, default 10; 0 leaves the epoch prior alone). The other parameters, and the
    catastrophic-overfitting guard, are :class:`~advrobust.training.adversarial.FGSMRS`'s."""

    name = "fgsm-ep"
    #: the engine passes ``index=`` (the batch's rows of the training set) to :meth:`loss`
    wants_index = True

    def __init__(self, eps: float | None = None, *, beta: float = 10.0, **kwargs: Any) -> None:
        super().__init__(eps, **kwargs)
        if not float(beta) >= 0:
            raise InputError(f"FGSM-EP: beta (the regularizer's weight) must be >= 0, got {beta!r}")
        self.beta = float(beta)
        self._prior: Tensor | None = None  # rows × C×H×W, PRIOR_DTYPE
        self._seen: Tensor | None = None  # rows, bool: has a prior

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float, *, index: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        self._watch(model, x, y, progress)
        attack = self.attack_at(progress)
        threat = attack.threat
        if threat.eps == 0:
            logits = model(x)
            return F.cross_entropy(logits, y), logits
        seed = int(torch.randint(0, 2**62, (1,)))
        start = threat.random_start(x, torch.Generator(device=x.device).manual_seed(seed))
        rows = None if index is None else index.to(x.device)
        if rows is not None:
            prior, seen = self._rows(rows, x)
            start = torch.where(seen.view(-1, *[1] * (x.dim() - 1)), threat.project(x + prior, x), start)
        x_adv = self._fgsm_step(_unwrap(model), threat, x, start, y, attack.alpha())
        if rows is not None:
            self._store(rows, x_adv - x)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        if self.beta:
            loss = loss + self.beta * F.mse_loss(logits, model(start))
        return loss, logits

    def describe(self) -> dict[str, Any]:
        """FGSM-RS's description (the step, its α) with the start it takes from the epoch prior, and β."""
        described = super().describe()
        return {**described, "attack": {**described["attack"], "start": "epoch prior"}, "beta": self.beta}

    @staticmethod
    def _fgsm_step(model: nn.Module, threat: Threat, x: Tensor, start: Tensor, y: Tensor, alpha: float) -> Tensor:
        """``Π_{x,ε}(start + α·d(∇ CE))``, the model in eval mode (the attack contract of every
        method here), input gradients only."""
        with evaluation_mode(model):
            z = start.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(z), y, reduction="sum"), z)
        return steepest_step(threat, x, start.detach(), grad, alpha).detach()

    def _rows(self, rows: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """The priors and seen flags of ``rows`` (the store grown to hold them, on ``like``'s device)."""
        need = int(rows.max()) + 1
        if self._prior is None or self._prior.shape[0] < need or self._prior.shape[1:] != like.shape[1:]:
            prior = torch.zeros((need, *like.shape[1:]), dtype=PRIOR_DTYPE, device=like.device)
            seen = torch.zeros(need, dtype=torch.bool, device=like.device)
            if self._prior is not None and self._prior.shape[1:] == like.shape[1:]:
                kept = self._prior.shape[0]
                prior[:kept], seen[:kept] = self._prior.to(like.device), self._seen.to(like.device)
            self._prior, self._seen = prior, seen
        elif self._prior.device != like.device:
            self._prior, self._seen = self._prior.to(like.device), self._seen.to(like.device)
        return self._prior[rows].to(like.dtype), self._seen[rows]

    def _store(self, rows: Tensor, delta: Tensor) -> None:
        assert self._prior is not None and self._seen is not None
        self._prior[rows] = delta.to(PRIOR_DTYPE)
        self._seen[rows] = True

    def state_dict(self) -> dict[str, Any]:
        """The guard's watch and the priors (see ``fit``'s resume)."""
        return {**super().state_dict(), "prior": self._prior, "seen": self._seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._prior, self._seen = state.get("prior"), state.get("seen")


METHODS["fgsm-ep"] = FGSMEP
