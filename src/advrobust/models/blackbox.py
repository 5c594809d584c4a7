"""Black-box models: what a query attack sees of a model it cannot differentiate.

    net = ScoreModel(lambda x: service.predict(x), numpy=True, probabilities=True, num_classes=10)
    Square(Linf(eps=0.3))(net, x, y)          # a query attack works
    PGD(Linf(eps=0.3))(net, x, y)             # raises ModelAccessError: no gradients

* :class:`ScoreModel` wraps any callable from ``[0, 1]`` images to scores (logits or probabilities),
  torch or numpy in and out, and declares ``access = "scores"``: the attack base
  (:class:`advrobust.attacks.base.Attack`) refuses gradient attacks on it. Probabilities are turned
  into log-probabilities, which rank the classes the same and differ from logits by a constant per
  row, so score-based losses (margin, cross-entropy, softmax) mean what they mean on logits.
* :class:`LabelModel` declares ``access = "labels"``: the callable's top-1 decision only, returned
  as one-hot scores.

Both run the callable without autograd (a black box gives no gradients even when it wraps a torch
module), in chunks of ``batch_size`` rows, and count the rows they evaluated in ``queries`` (the
attacks count queries per point themselves through their ``Oracle``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from advrobust.errors import InputError, ModelAccessError

#: floor of a probability before its log (float32's smallest normal number): log 0 would be -inf
_TINY = float(torch.finfo(torch.float32).tiny)


class _BlackBox(nn.Module):
    """Shared plumbing: numpy/torch conversion, chunking, no autograd, output checks."""

    access: ClassVar[str] = "scores"

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        num_classes: int | None = None,
        numpy: bool = False,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if not callable(fn):
            raise InputError(f"{type(self).__name__} wraps a callable (images -> scores), got {type(fn).__name__}")
        if batch_size is not None and int(batch_size) < 1:
            raise InputError(f"batch_size must be a positive number of rows or None, got {batch_size}")
        if num_classes is not None and int(num_classes) < 2:
            raise InputError(f"num_classes must be at least 2, got {num_classes}")
        self.fn = fn  # an nn.Module is registered as a submodule: .eval()/.to() reach it
        self.num_classes = None if num_classes is None else int(num_classes)
        self.numpy = bool(numpy)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.queries = 0

    def _call(self, x: Tensor) -> Tensor:
        """``fn`` on one chunk, as a float tensor on ``x``'s device."""
        arg = x.detach().cpu().numpy().astype(np.float32, copy=False) if self.numpy else x.detach()
        out = self.fn(arg)
        if isinstance(out, (list, tuple)) and len(out) == 1:
            out = out[0]  # e.g. onnxruntime returns a list of outputs
        try:
            out = torch.as_tensor(np.asarray(out) if not isinstance(out, Tensor) else out)
        except (TypeError, ValueError, RuntimeError):
            raise ModelAccessError(
                f"the wrapped model returned {type(out).__name__}; it must return an array of scores (N, classes)"
            ) from None
        return out.detach().to(x.device)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        step = self.batch_size or max(x.shape[0], 1)
        parts = [self._call(x[i : i + step]) for i in range(0, x.shape[0], step)]
        self.queries += x.shape[0]
        out = torch.cat(parts) if parts else torch.zeros(0, self.num_classes or 0, device=x.device)
        return self._scores(out, x.shape[0])

    def _scores(self, out: Tensor, n: int) -> Tensor:
        raise NotImplementedError

    def _check_width(self, k: int) -> None:
        if self.num_classes is not None and k != self.num_classes:
            raise ModelAccessError(
                f"the wrapped model returned {k} scores per input but num_classes={self.num_classes}: "
                "fix num_classes or the model's output"
            )


class ScoreModel(_BlackBox):
    """Score-only access to any callable ``x -> scores`` (Oracle access of the seed's black-box setting).

    Parameters
    ----------
    fn:
        Maps a batch ``N×C×H×W`` of ``[0, 1]`` pixels to scores ``N×K`` (torch tensors, or numpy
        arrays with ``numpy=True``; numpy inputs are ``float32``).
    num_classes:
        ``K``, checked against every output; ``None`` (default) accepts any width ≥ 2.
    probabilities:
        ``True`` when ``fn`` returns probabilities: they are returned as ``log(max(p, tiny))``.
        Default ``False`` (logits, returned as they are).
    numpy:
        Pass ``fn`` numpy arrays instead of tensors (default ``False``).
    batch_size:
        The most rows sent to ``fn`` at once (``None``, the default: the whole batch).
    """

    access = "scores"

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        num_classes: int | None = None,
        probabilities: bool = False,
        numpy: bool = False,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(fn, num_classes=num_classes, numpy=numpy, batch_size=batch_size)
        self.probabilities = bool(probabilities)

    def _scores(self, out: Tensor, n: int) -> Tensor:
        if out.dim() != 2 or out.shape[0] != n:
            raise ModelAccessError(
                f"the wrapped model must return scores of shape ({n}, classes), got {tuple(out.shape)}"
            )
        self._check_width(out.shape[1])
        out = out.float()
        if self.probabilities:
            if bool((out < 0).any()):
                raise ModelAccessError("probabilities=True but the model returned negative scores: pass logits "
                                       "with probabilities=False")
            out = out.clamp_min(_TINY).log()
        return out


class LabelModel(_BlackBox):
    """Decision-only access: the top-1 label of ``fn``, returned as one-hot scores ``N×K``.

    ``fn`` returns either labels (shape ``(N,)``, then ``num_classes`` is required) or scores
    ``N×K`` of which only the arg-max is kept. Other parameters as :class:`ScoreModel`.
    """

    access = "labels"

    def _scores(self, out: Tensor, n: int) -> Tensor:
        if out.dim() == 2 and out.shape[0] == n:
            self._check_width(out.shape[1])
            k, labels = out.shape[1], out.argmax(dim=1)
        elif out.dim() == 1 and out.shape[0] == n and not out.dtype.is_floating_point:
            if self.num_classes is None:
                raise InputError("LabelModel: the model returns labels, so give num_classes")
            k, labels = self.num_classes, out.long()
            if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
                raise ModelAccessError(f"the wrapped model returned labels outside [0, {k - 1}]")
        else:
            raise ModelAccessError(
                f"the wrapped model must return ({n},) integer labels or ({n}, classes) scores, "
                f"got {tuple(out.shape)} of {out.dtype}"
            )
        return nn.functional.one_hot(labels, k).float()
