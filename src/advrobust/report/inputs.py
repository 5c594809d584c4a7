"""Turn attack results that lack what a figure shows into the report's inputs, with the model.

An attack returns adversarial inputs and successes (the attack contract); the seed's One-Pixel
figure also shows the clean image and the confidence each target class reached, which only the
model can give. These helpers run the model once on the results and return plain dictionaries
that :func:`advrobust.report.write_report` takes (and that its JSON keeps).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.runtime.runner import Model


@torch.no_grad()
def _probabilities(model: Model, x: Tensor) -> Tensor:
    with evaluation_mode(model):
        scores = torch.as_tensor(model(x))
    return scores.float().softmax(dim=1)


def one_pixel_inputs(model: Model, x: Tensor, y: Tensor, result: Any) -> list[dict[str, Any]]:
    """The ``one_pixel`` argument of ``write_report`` for a result of
    :func:`advrobust.attacks.one_pixel.one_pixel_all_targets` on ``(x, y)``: per image, the clean
    image, its label, the ``K−1`` target classes, the attacked images, the successes and the
    softmax probability of each target on its attacked image (the model's scores are logits, as
    the attack contract says)."""
    targets: Tensor = result.targets
    n, per_image = targets.shape
    x_adv = result.result.x_adv
    probs = _probabilities(model, x_adv.to(x.device))
    confidence = probs.gather(1, targets.reshape(-1, 1).to(probs.device)).view(n, per_image)
    x_adv = x_adv.view(n, per_image, *x.shape[1:])
    success = result.success
    return [
        {
            "x": x[i].cpu(),
            "label": int(y[i]),
            "targets": targets[i].cpu(),
            "x_adv": x_adv[i].cpu(),
            "success": success[i].cpu(),
            "confidence": confidence[i].cpu(),
        }
        for i in range(n)
    ]
