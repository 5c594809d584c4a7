"""Per-image masked attacks with a different mask per image (one eyeglass frame per face).

:class:`~advrobust.masked.Masked` holds one support for a whole batch, because an attack shrinks
its batch as points succeed and the threat model never learns which rows remain. For one mask per
image, :func:`attack_per_mask` groups the images by mask and runs the attack once per distinct mask,
with the same hyper-parameters, and puts the results back in the original order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advrobust.attacks.base import Attack
from advrobust.attacks.result import AttackResult
from advrobust.errors import InputError
from advrobust.masked import Masked
from advrobust.masks import check_mask
from advrobust.runtime.runner import Model


def attack_per_mask(
    attack: Attack,
    model: Model,
    x: Tensor,
    y: Tensor,
    masks: Tensor,
    target: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """``attack`` under ``Masked(masks[i], attack.threat)`` for each image ``i`` (``masks``:
    ``N×c×H×W``, or ``1×c×H×W`` for all). ``attack.threat`` is the bound inside the masks (an
    existing ``Masked`` threat's inner bound is used)."""
    if not isinstance(attack, Attack):
        raise InputError(f"attack_per_mask takes an advrobust attack, got {type(attack).__name__}")
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise InputError("attack_per_mask needs images of shape (N, C, H, W)")
    m = check_mask(masks, tuple(x.shape), owner="masks")
    m = m.expand(x.shape[0], *m.shape[1:])
    inner = attack.threat.inner if isinstance(attack.threat, Masked) else attack.threat
    flat = m.flatten(1)
    distinct, group = torch.unique(flat, dim=0, return_inverse=True)
    parts: list[tuple[Tensor, AttackResult]] = []
    for g in range(distinct.shape[0]):
        rows = (group == g).nonzero().squeeze(1)
        threat = Masked(distinct[g].reshape(1, *m.shape[1:]), inner)
        sub_target = None if target is None else target[rows]
        parts.append((rows, attack.with_threat(threat)(model, x[rows], y[rows], sub_target, generator=generator)))
    x_adv = x.clone()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    norm = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    queries = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for rows, res in parts:
        x_adv[rows], success[rows], norm[rows], queries[rows] = res.x_adv, res.success, res.norm, res.queries
    return AttackResult(x_adv=x_adv, success=success, norm=norm, queries=queries, target=target)
