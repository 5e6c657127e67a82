"""The study's statistics over images: bootstrap confidence intervals of a mean, paired tests
(Wilcoxon signed-rank and the sign test, from scipy.stats) and Holm's correction for testing many
comparisons at once.

Values come as per-image lists (None or NaN = undefined for that image, as ``metrics.json``
stores them); a paired test uses the images where both values are defined.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

ALPHA = 0.05  # family-wise error rate of the report's table (after Holm's correction)
LEVEL = 0.95  # confidence level of the intervals
RESAMPLES = 2000  # bootstrap resamples
SEED = 0  # the bootstrap's random stream: the same numbers give the same intervals


def as_array(values) -> np.ndarray:
    """Per-image values as float64, None -> NaN."""
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def mean(values) -> Optional[float]:
    """Mean over the defined values, None when there is none."""
    x = as_array(values)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def bootstrap_ci(values, *, level: float = LEVEL, resamples: int = RESAMPLES,
                 seed: int = SEED) -> Tuple[Optional[float], Optional[float]]:
    """Percentile bootstrap interval of the mean over images (scipy.stats.bootstrap), over the
    defined values; ``(None, None)`` with fewer than two. Percentile rather than BCa: BCa is
    undefined for the constant samples a chance-level map produces (every image at 0.5)."""
    from scipy.stats import bootstrap
    x = as_array(values)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return None, None
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    result = bootstrap((x,), np.mean, confidence_level=level, n_resamples=resamples,
                       method="percentile", vectorized=True, random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_test(a, b) -> Dict[str, object]:
    """``a`` against ``b`` image by image: ``n`` images with both values, the mean difference
    ``a - b``, how many images have ``a > b`` / ``a < b``, the two-sided Wilcoxon signed-rank
    p-value (zero differences dropped, scipy's default) and the two-sided sign test (a binomial
    test of the ``a > b`` count among the non-zero differences). p = 1 when every difference is
    0; None when no image has both values."""
    from scipy.stats import binomtest, wilcoxon
    x, y = as_array(a), as_array(b)
    if x.shape != y.shape:
        raise ValueError(f"a, b: expected values for the same images, got {x.size} and "
                         f"{y.size}")
    both = np.isfinite(x) & np.isfinite(y)
    d = x[both] - y[both]
    out: Dict[str, object] = {"n": int(d.size), "mean_difference": None, "greater": 0,
                              "less": 0, "wilcoxon_p": None, "sign_p": None}
    if not d.size:
        return out
    greater, less = int((d > 0).sum()), int((d < 0).sum())
    out.update(mean_difference=float(d.mean()), greater=greater, less=less)
    if greater + less == 0:
        out.update(wilcoxon_p=1.0, sign_p=1.0)
        return out
    out["wilcoxon_p"] = float(wilcoxon(d, zero_method="wilcox").pvalue)
    out["sign_p"] = float(binomtest(greater, greater + less, 0.5).pvalue)
    return out


def holm(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjustment of a family of p-values (None entries are skipped and stay
    None): the k-th smallest of m is multiplied by ``m - k + 1``, made monotone, capped at 1.
    Rejecting where the adjusted p < alpha keeps the family-wise error rate at alpha. (Not in
    scipy, whose ``false_discovery_control`` controls the false discovery rate instead.)"""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    out: List[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out
