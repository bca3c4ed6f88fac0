"""Which of two photos is better, from their level distributions (the hard-pair question, asked of one model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def prob_first_better(probs_a: Sequence[float], probs_b: Sequence[float]) -> float:
    """P(level of A > level of B) + ½ P(equal), the two levels drawn independently from their distributions.

    0.5 when both distributions are the same; 1.0 when every level A can take is above every level B can."""
    a, b = np.asarray(probs_a, dtype=np.float64), np.asarray(probs_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"level distributions of different shapes: {a.shape} and {b.shape}")
    a, b = a / a.sum(), b / b.sum()
    below_b = np.concatenate([[0.0], np.cumsum(b)[:-1]])  # P(B < level i)
    return float(np.sum(a * (below_b + 0.5 * b)))
