"""Evaluation metrics of docs/method.md section 5.4.

Conventions: maps are tensors (or arrays) whose first dimension is the image; "per image" metrics
reduce all other dimensions and return one value per image (float64 tensors), NaN where the metric
is undefined for that image (say a constant map for a correlation). Uncertainty maps are
non-negative scores where larger means less trusted; for the INN it is ``hi - lo``.
"""

from __future__ import annotations

from ._extras import require_study

require_study(__name__)

import time
from typing import NamedTuple

import numpy as np
import torch

DIRECTION_THRESHOLDS = (1.0, 1.25, 1.5, 1.75, 2.0)


def _flat(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim < 1:
        raise ValueError(f"expected a batch of maps (first dim = image), got a scalar")
    return x.detach().reshape(x.shape[0], -1).to(torch.float64)


def _eps(x) -> float:
    x = torch.as_tensor(x)
    return torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0


def _same_shape(**maps):
    shapes = {name: tuple(torch.as_tensor(m).shape) for name, m in maps.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"expected equal shapes, got {shapes}")


def cosine_similarity(error, uncertainty) -> torch.Tensor:
    """The paper's score: per image, cosine of the angle between ``|error|`` and the uncertainty
    map (flattened). NaN when either map is all zero."""
    _same_shape(error=error, uncertainty=uncertainty)
    e, u = _flat(error).abs(), _flat(uncertainty)
    return (e * u).sum(1) / (e.norm(dim=1) * u.norm(dim=1))


def pearson(a, b) -> torch.Tensor:
    """Per image Pearson correlation of two maps (NaN when one is constant)."""
    _same_shape(a=a, b=b)
    a, b = _flat(a), _flat(b)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based, ties share the mean of their positions) along dim 1, float64;
    a row holding NaN is all NaN (scipy's ``rankdata(..., method="average")``)."""
    x = x.to(torch.float64)
    values, order = x.sort(dim=1, stable=True)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    group = starts.cumsum(1) - 1  # tie group of each sorted position
    positions = torch.arange(1, x.shape[1] + 1, dtype=torch.float64).expand_as(values)
    sums = torch.zeros_like(values).scatter_add_(1, group, positions)
    counts = torch.zeros_like(values).scatter_add_(1, group, torch.ones_like(values))
    ranks = torch.empty_like(values).scatter_(1, order, (sums / counts).gather(1, group))
    return ranks.masked_fill(x.isnan().any(1, keepdim=True), float("nan"))


def spearman(a, b) -> torch.Tensor:
    """Per image Spearman rank correlation (Pearson of average ranks; NaN when one is constant)."""
    _same_shape(a=a, b=b)
    return pearson(_ranks(_flat(a)), _ranks(_flat(b)))


def coverage(lo, hi, target) -> torch.Tensor:
    """Per image fraction of pixels with ``lo <= target <= hi`` (two-sided)."""
    _same_shape(lo=lo, hi=hi, target=target)
    lo, hi, y = _flat(lo), _flat(hi), _flat(target)
    return ((lo <= y) & (y <= hi)).to(torch.float64).mean(1)


def mean_width(lo, hi) -> torch.Tensor:
    """Per image mean of ``hi - lo``."""
    _same_shape(lo=lo, hi=hi)
    return (_flat(hi) - _flat(lo)).mean(1)


class DirectionAccuracy(NamedTuple):
    thresholds: tuple
    accuracy: torch.Tensor  # (images, thresholds); NaN where no pixel qualifies
    fraction: torch.Tensor  # (images, thresholds): share of pixels that qualify


def direction_accuracy(rec, lo, hi, target, thresholds=DIRECTION_THRESHOLDS) -> DirectionAccuracy:
    """Does the longer side of ``[lo, hi]`` around ``rec`` point at the target?

    Per pixel, with ``down = rec - lo`` and ``up = hi - rec`` (both >= 0 for an interval that
    contains ``rec``), the *asymmetry ratio* is ``max(down, up) / min(down, up)`` (``inf`` when
    exactly one side is 0; 1 when both are). A pixel qualifies at threshold ``t`` when its ratio
    is ``>= t`` (the paper's ``down/up >= t or down/up <= 1/t``). It scores 1 when the longer
    side points the way the target lies (``up > down`` and ``target > rec``, or ``down > up`` and
    ``target < rec``), 0 when it points away, and 0.5 when there is no direction to compare
    (``up == down`` up to the rounding of ``lo``, ``hi`` in their dtype, or ``target == rec``).
    So a symmetric interval (MC dropout, ProbOut: only
    ``t = 1`` admits its pixels) scores exactly the chance level 0.5. Accuracy is the mean score
    over the qualifying pixels of each image; ``fraction`` is their share of all pixels.
    """
    _same_shape(rec=rec, lo=lo, hi=hi, target=target)
    eps = max(_eps(rec), _eps(lo), _eps(hi))
    rec, lo, hi, y = _flat(rec), _flat(lo), _flat(hi), _flat(target)
    # sides equal up to the rounding of lo/hi themselves count as equal: rec +- std stored in
    # float32 is not exactly symmetric, and must still score as symmetric
    magnitude = torch.maximum(torch.maximum(lo.abs(), hi.abs()), rec.abs())
    slack = 4.0 * eps * magnitude
    down, up = rec - lo, hi - rec
    if bool((down < -slack).any() | (up < -slack).any()):
        raise ValueError("lo, hi: expected lo <= rec <= hi everywhere")
    down, up = down.clamp(min=0.0), up.clamp(min=0.0)
    tied = (up - down).abs() <= slack
    up = torch.where(tied, down, up)
    longer, shorter = torch.maximum(down, up), torch.minimum(down, up)
    ratio = torch.where(shorter > 0, longer / shorter.clamp(min=torch.finfo(torch.float64).tiny),
                        torch.where(longer > 0, torch.inf, 1.0))
    score = 0.5 * (1.0 + torch.sign(up - down) * torch.sign(y - rec))
    accuracy, fraction = [], []
    for t in thresholds:
        selected = (ratio >= t).to(torch.float64)
        count = selected.sum(1)
        accuracy.append((score * selected).sum(1) / count)  # 0/0 = NaN: no qualifying pixel
        fraction.append(count / ratio.shape[1])
    return DirectionAccuracy(tuple(thresholds), torch.stack(accuracy, 1), torch.stack(fraction, 1))


def _labels_scores(mask, scores):
    _same_shape(mask=mask, scores=scores)
    y = torch.as_tensor(mask).detach().reshape(-1).cpu().numpy().astype(bool)
    s = torch.as_tensor(scores).detach().reshape(-1).cpu().to(torch.float64).numpy()
    if y.all() or not y.any():
        raise ValueError("mask: AUROC/AUPR need both positive and negative pixels")
    return y, s


def pixel_auroc(uncertainty, mask) -> float:
    """Area under the ROC curve for detecting the pixels of ``mask`` (bool, e.g. the changed region
    of an adversarial example or an artifact's footprint) by thresholding ``uncertainty``, pooled
    over all pixels of all images (scikit-learn's ``roc_auc_score``)."""
    from sklearn.metrics import roc_auc_score
    y, s = _labels_scores(mask, uncertainty)
    return float(roc_auc_score(y, s))


def pixel_aupr(uncertainty, mask) -> float:
    """Area under the precision-recall curve, as average precision (scikit-learn's
    ``average_precision_score``), pooled over all pixels; chance = the positive share."""
    from sklearn.metrics import average_precision_score
    y, s = _labels_scores(mask, uncertainty)
    return float(average_precision_score(y, s))


def image_scores(uncertainty) -> torch.Tensor:
    """One score per image: the mean uncertainty."""
    return _flat(uncertainty).mean(1)


def image_auroc(clean_scores, perturbed_scores) -> float:
    """AUROC of telling perturbed images (positives) from clean ones by a per-image score (e.g.
    :func:`image_scores`): the probability that a random perturbed image scores higher than a
    random clean one (ties count 1/2)."""
    from sklearn.metrics import roc_auc_score
    clean = torch.as_tensor(clean_scores).detach().reshape(-1).cpu().to(torch.float64).numpy()
    pert = torch.as_tensor(perturbed_scores).detach().reshape(-1).cpu().to(torch.float64).numpy()
    if clean.size == 0 or pert.size == 0:
        raise ValueError("clean_scores, perturbed_scores: expected at least one image each")
    labels = np.r_[np.zeros(clean.size), np.ones(pert.size)]
    return float(roc_auc_score(labels, np.r_[clean, pert]))


class Sparsification(NamedTuple):
    fractions: torch.Tensor  # (steps,) share of pixels removed
    by_uncertainty: torch.Tensor  # (images, steps) mean error of the remaining pixels
    oracle: torch.Tensor  # (images, steps) the same, removing pixels by true error
    error: torch.Tensor  # (images, steps) by_uncertainty - oracle
    ause: torch.Tensor  # (images,) area under `error` over fractions (trapezoidal rule)


def _remaining_mean(values_sorted: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Mean of the last ``n - round(f n)`` entries of each row, per fraction ``f``."""
    n = values_sorted.shape[1]
    suffix = values_sorted.flip(1).cumsum(1).flip(1)  # suffix[i] = sum of entries i..n-1
    removed = torch.round(fractions * n).long().clamp(max=n - 1)
    return suffix[:, removed] / (n - removed).to(torch.float64)


def sparsification(error, uncertainty, steps: int = 20, *,
                   normalize: bool = False) -> Sparsification:
    """Sparsification curves per image: remove the fraction ``k / steps`` (k = 0 .. steps - 1) of
    pixels with the largest uncertainty and average ``|error|`` over the rest; the oracle removes
    by ``|error|`` itself. ``ause`` integrates ``by_uncertainty - oracle`` over [0, (steps-1)/steps]
    (0 = uncertainty ranks pixels like the error; lower is better). Ties in uncertainty are broken
    by pixel order. ``normalize`` divides both curves by the image's mean error first."""
    _same_shape(error=error, uncertainty=uncertainty)
    if steps < 2:
        raise ValueError(f"steps: expected >= 2, got {steps}")
    e, u = _flat(error).abs(), _flat(uncertainty)
    fractions = torch.arange(steps, dtype=torch.float64) / steps
    by_u = torch.gather(e, 1, torch.sort(u, dim=1, descending=True, stable=True).indices)
    by_e = torch.sort(e, dim=1, descending=True).values
    curve, oracle = _remaining_mean(by_u, fractions), _remaining_mean(by_e, fractions)
    if normalize:
        scale = e.mean(1, keepdim=True)
        curve, oracle = curve / scale, oracle / scale
    gap = curve - oracle
    ause = torch.trapezoid(gap, fractions, dim=1)
    return Sparsification(fractions, curve, oracle, gap, ause)


class Timing(NamedTuple):
    median_s: float
    min_s: float
    repeats: int


def time_inference(fn, *args, repeats: int = 10, warmup: int = 2) -> Timing:
    """Wall-clock time of ``fn(*args)`` under ``torch.no_grad()``: ``warmup`` untimed calls, then
    ``repeats`` timed ones; CUDA work is synchronised before each clock read."""
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() \
        else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            fn(*args)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return Timing(float(np.median(times)), float(min(times)), repeats)
