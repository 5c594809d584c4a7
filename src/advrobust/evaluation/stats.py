"""Confidence intervals for accuracies measured on a finite sample of points.

Robust accuracy on ``n`` test points is a binomial proportion; its interval is the score interval of
Wilson (1927, "Probable inference, the law of succession, and statistical inference", JASA 22):

    center = (p̂ + z²/2n) / (1 + z²/n),   half = z / (1 + z²/n) · sqrt(p̂(1 − p̂)/n + z²/4n²),

with ``z = 1.96`` for 95% (the default). Unlike the normal (Wald) interval it stays inside
``[0, 1]`` and is not degenerate at ``p̂ = 0`` or ``1``, which is where robust accuracies often are.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` of ``successes / n``; ``(0, 1)`` when ``n = 0``."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)
