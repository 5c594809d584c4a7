"""Randomized smoothing: a classifier with a certified l2 radius (Cohen, Rosenfeld & Kolter 2019).

    smoothed = GaussianSmoothing(model, sigma=0.25)
    labels = smoothed.predict(x, n=1000, alpha=0.001)            # ABSTAIN (-1) where unsure
    cert = smoothed.certify(x, n0=100, n=1000, alpha=0.001)      # cert.prediction, cert.radius
    certified_accuracy(cert, y, radii=[0.5, 1.0])

The smoothed classifier is ``g(x) = argmax_c P(f(x + δ) = c)``, ``δ ~ N(0, σ² I)`` (their eq. 1). If
the top class ``c_A`` has probability at least ``p_A > 1/2``, then ``g(x + r) = c_A`` for every
``‖r‖_2 < σ·Φ⁻¹(p_A)`` (their Theorem 1, with ``p_B = 1 − p_A``). ``g`` cannot be computed exactly;
its two Monte-Carlo procedures are implemented as in the paper's pseudocode:

* ``PREDICT``: ``n`` noisy copies; the two most frequent classes ``c_A``, ``c_B`` with counts
  ``n_A``, ``n_B``; return ``c_A`` if the binomial test ``BinomPValue(n_A, n_A + n_B, 0.5) ≤ α``
  rejects a tie, else abstain. It returns a wrong class with probability at most ``α``.
* ``CERTIFY``: ``n0`` noisy copies select ``ĉ_A``; ``n`` fresh copies estimate
  ``p̲_A = LowerConfBound(n_A, n, 1 − α)`` (Clopper–Pearson); if ``p̲_A > 1/2`` return ``ĉ_A`` and
  the radius ``σ·Φ⁻¹(p̲_A)``, else abstain. With probability at least ``1 − α`` the returned class is
  ``g(x)`` and ``g`` is constant on the l2 ball of that radius.

The noise is drawn per point from its own seeded stream (the seed, the point's index and the stage),
so a point's outcome depends neither on the batch it is certified in nor on ``batch_size``. Noise is
not clipped to the pixel box, as in the paper. The base classifier runs forward only, on the
runner :class:`~advrobust.runtime.RuntimePolicy` picks (on a CPU: channels-last, then a frozen copy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import norm as normal
from torch import Tensor, nn

from advrobust.attacks.base import Model, evaluation_mode
from advrobust.defences.bounds import check_alpha, clopper_pearson_lower, tie_rejected
from advrobust.defences.inputs import check_pixels, positive_int
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress
from advrobust.runtime import Runner, RuntimePolicy

#: the label ``predict`` and ``certify`` return where the smoothed classifier abstains
ABSTAIN = -1

# independent noise streams: per point, selection (n0) and estimation (n) in CERTIFY, PREDICT's; the attack's
_SELECT, _ESTIMATE, _PREDICT, _ATTACK = 0, 1, 2, 3


def point_generator(seed: int, index: int, stream: int, device: torch.device) -> torch.Generator:
    """The generator of point ``index``'s noise in ``stream``: a seed derived from all three by
    NumPy's ``SeedSequence`` (statistically independent streams)."""
    state = np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & (2**63 - 1))


@dataclass
class Certificate:
    """What :meth:`GaussianSmoothing.certify` returns, one entry per point.

    ``prediction``: ``ĉ_A`` or :data:`ABSTAIN`; ``radius``: the certified l2 radius
    ``σ·Φ⁻¹(p̲_A)`` (0 where abstaining); ``p_lower``: ``p̲_A``; ``samples``: noisy forward passes
    spent (``n0 + n`` per point); ``seconds``: wall-clock time of the call.
    """

    prediction: Tensor
    radius: Tensor
    p_lower: Tensor
    sigma: float
    alpha: float
    n0: int
    n: int
    samples: int
    seconds: float

    def __len__(self) -> int:
        return int(self.prediction.shape[0])

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else math.inf

    @property
    def seconds_per_point(self) -> float:
        return self.seconds / len(self) if len(self) else 0.0


def certified_accuracy(cert: Certificate, y: Tensor, radii: Sequence[float]) -> list[float]:
    """The certified accuracy at each radius ``r``: the fraction of points whose certified class is
    their label with a certified radius ``≥ r`` (Cohen et al. 2019, Section 4; abstentions count as
    errors)."""
    y = torch.as_tensor(y).to(cert.prediction.device)
    if y.shape != cert.prediction.shape:
        raise InputError(f"certified_accuracy: y has shape {tuple(y.shape)}, the certificate {len(cert)} points")
    correct = cert.prediction == y
    n = max(len(cert), 1)
    return [float((correct & (cert.radius >= float(r))).sum()) / n for r in radii]


class GaussianSmoothing:
    """The smoothed classifier ``g`` of a base classifier ``f`` under Gaussian noise of std ``sigma``
    (pixel units, inputs in ``[0, 1]``); see the module docstring for the two procedures.

    ``n0``, ``n``, ``alpha``: the Monte-Carlo settings :meth:`predict` and :meth:`certify` use unless
    told otherwise (the paper: ``n0 = 100``, ``n = 100 000``, ``alpha = 0.001``; ``n = 1000`` is our
    fast default: the largest certifiable radius is then ``σ·Φ⁻¹(alpha^(1/n))`` ≈ 2.4σ instead of
    ≈ 3.8σ). ``batch_size``: noisy copies per forward call (the base model's own passes are further
    cut into cache-sized chunks on a CPU).
    """

    #: what ``advrobust.evaluate`` certifies for it: l2 radii (it then reports [certified, attacked])
    certifies = "l2"

    def __init__(
        self, base: Model, sigma: float, *, n0: int = 100, n: int = 1000, alpha: float = 0.001, batch_size: int = 1000
    ) -> None:
        if not callable(base):
            raise InputError(f"GaussianSmoothing: the base classifier must be callable, got {type(base).__name__}")
        if isinstance(sigma, bool) or not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise InputError(f"GaussianSmoothing: sigma must be a positive number (e.g. 0.25), got {sigma!r}")
        self.base = base
        self.sigma = float(sigma)
        self.n0 = positive_int("GaussianSmoothing", "n0", n0)
        self.n = positive_int("GaussianSmoothing", "n", n)
        self.alpha = check_alpha(alpha)
        self.batch_size = positive_int("GaussianSmoothing", "batch_size", batch_size)
        self.runtime = RuntimePolicy()  # keeps the base model's frozen copy from call to call

    def __repr__(self) -> str:
        return (f"GaussianSmoothing(sigma={self.sigma}, n0={self.n0}, n={self.n}, alpha={self.alpha}, "
                f"base={type(self.base).__name__})")

    def describe(self) -> dict[str, Any]:
        """The smoothing's settings: ``sigma``, ``n0``, ``n``, ``alpha``."""
        return {"sigma": self.sigma, "n0": self.n0, "n": self.n, "alpha": self.alpha}

    # --- Monte-Carlo counts ------------------------------------------------------------------------
    def _counts(self, run: Runner, x: Tensor, n: int, seed: int, index: int, stream: int) -> Tensor:
        """``counts[c]``: how many of ``n`` noisy copies of the point ``x`` (C×H×W) ``f`` labels ``c``."""
        generator = point_generator(seed, index, stream, x.device)
        counts: Tensor | None = None
        remaining = n
        while remaining:
            rows = min(remaining, self.batch_size)
            noise = torch.randn((rows, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
            logits = run(x.unsqueeze(0) + self.sigma * noise)
            if logits.dim() != 2 or logits.shape[0] != rows:
                raise InputError(f"the base classifier must return (N, classes) scores, got {tuple(logits.shape)}")
            votes = torch.bincount(logits.argmax(dim=1), minlength=logits.shape[1])
            counts = votes if counts is None else counts + votes
            remaining -= rows
        assert counts is not None
        return counts

    def sample_counts(self, x: Tensor, n: int, *, seed: int = 0, stream: int = _PREDICT) -> Tensor:
        """Class counts of ``f`` over ``n`` noisy copies of each point: an ``N×K`` integer tensor."""
        x = check_pixels(x)
        n = positive_int("sample_counts", "n", n)
        with torch.no_grad(), evaluation_mode(self.base):
            run = self.runtime.runner(self.base)
            return torch.stack([self._counts(run, x[i], n, seed, i, stream) for i in range(x.shape[0])])

    # --- PREDICT and CERTIFY ---------------------------------------------------------------------
    def predict(
        self, x: Tensor, *, n: int | None = None, alpha: float | None = None, seed: int = 0,
        progress: Progress = SILENT,
    ) -> Tensor:
        """``PREDICT`` (Cohen et al. 2019): ``g(x)`` per point, or :data:`ABSTAIN`; wrong with
        probability at most ``alpha`` per point (``n``, ``alpha``: the instance's unless given)."""
        x = check_pixels(x)
        n = positive_int("predict", "n", self.n if n is None else n)
        alpha = check_alpha(self.alpha if alpha is None else alpha)
        labels = torch.full((x.shape[0],), ABSTAIN, dtype=torch.long, device=x.device)
        with torch.no_grad(), evaluation_mode(self.base), progress.task("predict (smoothed)", total=x.shape[0]) as t:
            run = self.runtime.runner(self.base)
            for i in range(x.shape[0]):
                counts = self._counts(run, x[i], n, seed, i, _PREDICT)
                top2 = counts.topk(min(2, counts.numel()))
                n_a, n_b = int(top2.values[0]), int(top2.values[1]) if counts.numel() > 1 else 0
                if tie_rejected(n_a, n_b, alpha):
                    labels[i] = int(top2.indices[0])
                t.advance(1)
        return labels

    def certify(
        self,
        x: Tensor,
        *,
        n0: int | None = None,
        n: int | None = None,
        alpha: float | None = None,
        seed: int = 0,
        progress: Progress = SILENT,
    ) -> Certificate:
        """``CERTIFY`` (Cohen et al. 2019): per point, ``ĉ_A`` from ``n0`` noisy copies, ``p̲_A`` the
        Clopper–Pearson ``1 − alpha`` lower bound from ``n`` fresh ones, radius ``σ·Φ⁻¹(p̲_A)`` if
        ``p̲_A > 1/2``, else :data:`ABSTAIN` (``n0``, ``n``, ``alpha``: the instance's unless given)."""
        x = check_pixels(x)
        n0 = positive_int("certify", "n0", self.n0 if n0 is None else n0)
        n = positive_int("certify", "n", self.n if n is None else n)
        alpha = check_alpha(self.alpha if alpha is None else alpha)
        m = x.shape[0]
        prediction = torch.full((m,), ABSTAIN, dtype=torch.long, device=x.device)
        radius = torch.zeros(m, dtype=torch.float64, device=x.device)
        p_lower = torch.zeros(m, dtype=torch.float64, device=x.device)
        start = time.perf_counter()
        with torch.no_grad(), evaluation_mode(self.base), progress.task("certify (smoothed)", total=m) as t:
            run = self.runtime.runner(self.base)
            for i in range(m):
                c_a = int(self._counts(run, x[i], n0, seed, i, _SELECT).argmax())
                n_a = int(self._counts(run, x[i], n, seed, i, _ESTIMATE)[c_a])
                p = float(clopper_pearson_lower(n_a, n, alpha))
                p_lower[i] = p
                if p > 0.5:
                    prediction[i] = c_a
                    radius[i] = self.sigma * float(normal.ppf(p))
                elapsed = time.perf_counter() - start
                t.advance(1, samples_per_s=round((i + 1) * (n0 + n) / max(elapsed, 1e-9)))
        return Certificate(
            prediction=prediction, radius=radius, p_lower=p_lower, sigma=self.sigma, alpha=alpha, n0=n0, n=n,
            samples=m * (n0 + n), seconds=time.perf_counter() - start,
        )

    # --- a differentiable surrogate, for attacks ---------------------------------------------------
    def soft(self, draws: int = 8, seed: int = 0) -> SoftSmoothed:
        """A differentiable Monte-Carlo estimate of the *soft* smoothed classifier, for attacking
        ``g`` (Salman et al. 2019, "Provably robust deep learning via adversarially trained smoothed
        classifiers", eq. 4): ``log((1/m)·Σ_j softmax(f(x + δ_j)))`` over ``m = draws`` noise draws,
        drawn afresh on every call (a randomized model: attack it with an attack's ``eot`` count)."""
        return SoftSmoothed(self.base, self.sigma, draws, seed)


class SoftSmoothed(nn.Module):
    """``x ↦ log((1/m)·Σ_j softmax(f(x + δ_j)))`` with ``m`` fresh draws ``δ_j ~ N(0, σ² I)`` per point
    and call, from the module's own seeded generator (``reseed()`` restarts it): a randomized model.

    Salman et al. (2019, §3.1) attack ``g`` through the cross-entropy of this soft classifier, the
    expectation *inside* the log: ``∇ −log E_δ[softmax_y(f(x + δ))]``. An attack's ``eot = k``
    (:mod:`advrobust.runtime.eot`) averages ``k`` such gradients, each from ``m`` fresh draws: their
    estimator with ``m·k`` samples per step. ``m = 1`` leaves only the outer average, the plain EOT
    objective ``E_δ[CE(f(x + δ), y)]`` (expectation outside the log), which Salman et al. found weaker
    against smoothed classifiers. What an attack finds is judged on ``g`` itself, with fresh noise
    (:meth:`GaussianSmoothing.predict`).
    """

    def __init__(self, base: Model, sigma: float, draws: int = 8, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(base, nn.Module):
            raise InputError("attacking a smoothed classifier needs gradients: its base must be a torch nn.Module")
        self.base = base
        self.sigma = float(sigma)
        self.draws = positive_int("SoftSmoothed", "draws", draws)
        self.seed = int(seed)
        self.generator = point_generator(self.seed, 0, _ATTACK, torch.device("cpu"))

    def reseed(self) -> None:
        """Restart the noise stream: the same calls then see the same draws."""
        self.generator = point_generator(self.seed, 0, _ATTACK, self.generator.device)

    def noise(self, x: Tensor) -> Tensor:
        """``m`` fresh draws per point of ``x``: ``N×m×C×H×W``."""
        if self.generator.device != x.device:
            self.generator = point_generator(self.seed, 0, _ATTACK, x.device)
        draws = torch.randn((x.shape[0], self.draws, *x.shape[1:]), generator=self.generator, device=x.device,
                            dtype=x.dtype)
        return self.sigma * draws

    def forward(self, x: Tensor) -> Tensor:
        noisy = (x.unsqueeze(1) + self.noise(x)).flatten(0, 1)
        probs = torch.softmax(self.base(noisy), dim=1).unflatten(0, (x.shape[0], self.draws)).mean(dim=1)
        return probs.clamp_min(1e-12).log()
