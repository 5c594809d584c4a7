"""The statistics behind a Monte-Carlo certificate: exact binomial bounds and tests.

Cohen, Rosenfeld & Kolter (2019), "Certified Adversarial Robustness via Randomized Smoothing",
Section 3.2: ``CERTIFY`` bounds the top class's probability from below with the one-sided
Clopper–Pearson interval, ``PREDICT`` abstains unless a two-sided binomial test rejects a tie between
the two most frequent classes.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta, binomtest

from advrobust.errors import InputError


def check_alpha(alpha: float) -> float:
    if not 0.0 < float(alpha) < 1.0:
        raise InputError(f"alpha must be a probability in (0, 1), e.g. 0.001; got {alpha!r}")
    return float(alpha)


def clopper_pearson_lower(successes: np.ndarray | int, trials: np.ndarray | int, alpha: float) -> np.ndarray:
    """The one-sided ``1 − alpha`` lower confidence bound on a binomial proportion (Clopper & Pearson
    1934): the ``alpha`` quantile of ``Beta(k, n − k + 1)``, and 0 for ``k = 0``.

    Whatever the true proportion ``p``, ``P(bound ≤ p) ≥ 1 − alpha`` (Cohen et al. 2019, the
    ``LowerConfBound`` of ``CERTIFY``).
    """
    alpha = check_alpha(alpha)
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise InputError("clopper_pearson_lower: successes must lie in [0, trials]")
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(alpha, k, n - k + 1)
    return np.where(k > 0, np.nan_to_num(bound, nan=0.0), 0.0)


def tie_rejected(top: int, runner_up: int, alpha: float) -> bool:
    """Whether the two-sided binomial test rejects ``P(top) = P(runner-up)`` at level ``alpha``,
    given their counts (Cohen et al. 2019, ``PREDICT``: ``BinomPValue(n_A, n_A + n_B, 0.5) ≤ α``)."""
    alpha = check_alpha(alpha)
    total = int(top) + int(runner_up)
    if total == 0:
        return False
    return bool(binomtest(int(top), total, 0.5).pvalue <= alpha)
