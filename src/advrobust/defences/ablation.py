"""Derandomized smoothing against patches: column (band) ablation, Levine & Feizi (2020),
"(De)Randomized Smoothing for Certifiable Defense against Patch Attacks", NeurIPS.

    smoothed = ColumnSmoothing(base, band=4)            # base: a classifier of 2·C-channel inputs
    cert = smoothed.certify(x, patch=5)                 # certified against any 5×5 patch, anywhere
    cert.prediction, cert.certified, cert.largest_patch

**Ablation.** For a band position ``i`` of ``W`` (one per column), only the columns
``i, i+1, …, i+b−1`` (mod ``W``, the band wraps around) are kept. Following the encoding of Levine &
Feizi (2020, "Robustness certificates for sparse adversarial attacks by randomized ablation"), a kept
pixel value ``v`` becomes two channels ``(v, 1 − v)`` and an ablated pixel ``(0, 0)``, so that the base
classifier can tell "ablated" from any pixel value: it sees ``2·C`` channels.

**Prediction.** ``n_c(x)`` counts the band positions whose ablated image the base classifier labels
``c``; the smoothed classifier returns ``argmax_c n_c(x)`` (ties to the smaller class index). All ``W``
positions are evaluated: the vote is exact, nothing is sampled.

**Certificate** (their Theorem 1 for column smoothing). An ``m``-wide patch (an ``m×m`` square, or any
shape at most ``m`` columns wide) intersects ``Δ = m + b − 1`` bands, and each of those votes can move
from ``c`` to another class ``c'``. The prediction ``c`` is certified when, for every ``c' ≠ c``,
``n_c(x) ≥ n_c'(x) + 2Δ + 1[c' < c]`` (the last term: ties go to the smaller index). We take the
base classifier's argmax (no logit threshold θ): one vote per band.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from advrobust.attacks.base import Model, evaluation_mode
from advrobust.defences.inputs import check_pixels, positive_int
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress
from advrobust.runtime import RuntimePolicy

Axis = Literal["column", "row"]


def _dim(axis: str) -> int:
    if axis not in ("column", "row"):
        raise InputError(f"axis must be 'column' or 'row', got {axis!r}")
    return 3 if axis == "column" else 2


def ablate(x: Tensor, positions: Tensor, band: int, axis: Axis = "column") -> Tensor:
    """``x`` (N×C×H×W) with only the band of ``band`` columns (rows) starting at ``positions[n]`` kept
    (wrapping around), encoded as ``2·C`` channels: ``(v, 1 − v)`` where kept, ``(0, 0)`` where ablated."""
    dim = _dim(axis)
    size = x.shape[dim]
    offsets = torch.arange(size, device=x.device)
    keep = (offsets.unsqueeze(0) - positions.to(x.device).unsqueeze(1)).remainder(size) < band  # N×size
    shape = [x.shape[0], 1, 1, 1]
    shape[dim] = size
    mask = keep.to(x.dtype).reshape(shape)
    return torch.cat([x, 1.0 - x], dim=1) * mask


def patch_reach(patch: int, band: int, size: int) -> int:
    """``Δ``: how many band positions an ``patch``-wide patch can touch, ``min(m + b − 1, W)``."""
    return min(patch + band - 1, size)


@dataclass
class PatchCertificate:
    """Per point: ``prediction`` (the vote's winner), ``counts`` (N×K votes), ``certified`` against
    the requested patch size, and ``largest_patch``: the widest patch the vote is certified against
    (0: none)."""

    prediction: Tensor
    counts: Tensor
    certified: Tensor
    largest_patch: Tensor
    patch: int
    band: int
    forwards: int
    seconds: float

    def __len__(self) -> int:
        return int(self.prediction.shape[0])

    @property
    def samples_per_second(self) -> float:
        return self.forwards / self.seconds if self.seconds > 0 else float("inf")

    def certified_accuracy(self, y: Tensor) -> float:
        """Fraction of points predicted correctly *and* certified against the patch."""
        y = torch.as_tensor(y, device=self.prediction.device)
        return float(((self.prediction == y) & self.certified).float().mean()) if len(self) else 0.0


def largest_certified_patch(counts: Tensor, band: int, size: int) -> Tensor:
    """Per point, the largest ``m`` with ``n_c ≥ n_c' + 2(m + b − 1) + 1[c' < c]`` for every
    ``c' ≠ c`` (``c`` the vote's winner); 0 if even ``m = 1`` is not certified."""
    c = counts.argmax(dim=1)
    classes = torch.arange(counts.shape[1], device=counts.device)
    top = counts.gather(1, c.unsqueeze(1))
    tie = (classes.unsqueeze(0) < c.unsqueeze(1)).long()
    slack = top - counts - tie  # n_c − n_c' − 1[c' < c], per c'
    slack = slack.masked_fill(classes.unsqueeze(0) == c.unsqueeze(1), torch.iinfo(slack.dtype).max)
    reach = slack.min(dim=1).values.div(2, rounding_mode="floor")  # the largest Δ certified
    largest = (reach - band + 1).clamp(min=0)
    return torch.where(reach >= size, torch.full_like(largest, size), largest)


class ColumnSmoothing:
    """The column- (or row-) smoothed classifier of a base classifier of ``2·C``-channel ablated
    images; see the module docstring. ``band``: the kept band's width ``b`` (Levine & Feizi use
    ``b = 4`` on CIFAR-10 columns; the widest band loses the certificate, the narrowest the accuracy)."""

    #: what ``advrobust.evaluate`` certifies for it: patches, eps = the side of an m×m square (it then
    #: reports [certified, attacked] per patch size)
    certifies = "patch"

    def __init__(self, base: Model, band: int, *, axis: Axis = "column", batch_size: int = 1024) -> None:
        if not callable(base):
            raise InputError(f"ColumnSmoothing: the base classifier must be callable, got {type(base).__name__}")
        self.base = base
        self.band = positive_int("ColumnSmoothing", "band", band)
        _dim(axis)
        self.axis: Axis = axis
        self.batch_size = positive_int("ColumnSmoothing", "batch_size", batch_size)
        self.runtime = RuntimePolicy()  # keeps the base model's frozen copy from call to call

    def __repr__(self) -> str:
        return f"ColumnSmoothing(band={self.band}, axis={self.axis!r}, base={type(self.base).__name__})"

    def size(self, x: Tensor) -> int:
        """``W`` (columns) or ``H`` (rows): the number of band positions."""
        size = x.shape[_dim(self.axis)]
        if self.band > size:
            raise InputError(f"band {self.band} is wider than the image's {size} {self.axis}s")
        return int(size)

    def counts(self, x: Tensor, progress: Progress = SILENT) -> Tensor:
        """``n_c(x)``: the base classifier's votes over every band position, N×K."""
        x = check_pixels(x)
        if x.dim() != 4:
            raise InputError(f"ColumnSmoothing needs images of shape (N, C, H, W), got {tuple(x.shape)}")
        size = self.size(x)
        points = max(1, self.batch_size // size)
        positions = torch.arange(size, device=x.device)
        parts = []
        with torch.no_grad(), evaluation_mode(self.base), progress.task("ablations", total=x.shape[0]) as task:
            run = self.runtime.runner(self.base)
            for chunk in x.split(points):
                rows = chunk.repeat_interleave(size, dim=0)
                logits = run(ablate(rows, positions.repeat(chunk.shape[0]), self.band, self.axis))
                votes = nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1])
                parts.append(votes.reshape(chunk.shape[0], size, -1).sum(dim=1))
                task.advance(chunk.shape[0])
        return torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.long, device=x.device)

    def predict(self, x: Tensor) -> Tensor:
        """The vote's winner per point (ties to the smaller class index)."""
        return self.counts(x).argmax(dim=1)

    def certify(self, x: Tensor, patch: int, progress: Progress = SILENT) -> PatchCertificate:
        """The vote and its certificate against any ``patch``-wide patch (an ``m×m`` square anywhere)."""
        patch = positive_int("certify", "patch", patch)
        start = time.perf_counter()
        counts = self.counts(x, progress)
        size = self.size(x)
        largest = largest_certified_patch(counts, self.band, size)
        return PatchCertificate(
            prediction=counts.argmax(dim=1), counts=counts, certified=largest >= patch, largest_patch=largest,
            patch=patch, band=self.band, forwards=x.shape[0] * size, seconds=time.perf_counter() - start,
        )

    def soft(self, *, vote_forward: bool = False) -> SoftVote:
        """A differentiable surrogate of the vote, for attacks: the log of the mean softmax over all
        band positions; ``vote_forward=True``: the vote itself in the forward pass, the soft vote's
        gradient in the backward pass (see :class:`SoftVote`)."""
        return SoftVote(self, vote_forward=vote_forward)


class SoftVote(nn.Module):
    """``x ↦ log((1/W)·Σ_i softmax(f(ablate(x, i))))``: what a gradient attack on a column-smoothed
    classifier differentiates. Its inputs are judged on the vote itself
    (:meth:`ColumnSmoothing.predict`).

    ``vote_forward=True`` returns instead the vote's shares ``n_c(x)/W`` plus ``1/(2W)`` times the
    soft vote's probabilities, the latter carrying the gradient: a straight-through estimate (BPDA,
    Athalye, Carlini & Wagner 2018, §4.1, with the soft vote as the differentiable approximation). The
    soft term is below one vote's share, so the scores rank the classes as the vote does, ties broken
    by the soft vote: an attack's success check and early stop then see the vote, not its surrogate.
    """

    def __init__(self, smoothed: ColumnSmoothing, *, vote_forward: bool = False) -> None:
        super().__init__()
        if not isinstance(smoothed.base, nn.Module):
            raise InputError("attacking a smoothed classifier needs gradients: its base must be a torch nn.Module")
        self.base = smoothed.base
        self.band = smoothed.band
        self.axis: Axis = smoothed.axis
        self.vote_forward = bool(vote_forward)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[_dim(self.axis)]
        positions = torch.arange(size, device=x.device).repeat(x.shape[0])
        logits = self.base(ablate(x.repeat_interleave(size, dim=0), positions, self.band, self.axis))
        probs = torch.softmax(logits, dim=1).unflatten(0, (x.shape[0], size)).mean(dim=1)
        if not self.vote_forward:
            return probs.clamp_min(1e-12).log()
        votes = nn.functional.one_hot(logits.detach().argmax(dim=1), logits.shape[1]).to(probs.dtype)
        shares = votes.unflatten(0, (x.shape[0], size)).mean(dim=1)
        return shares + probs / (2 * size)
