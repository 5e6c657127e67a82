"""Evaluation metrics of docs/method.md section 5.4.

Conventions: maps are tensors (or arrays) whose first dimension is the image; "per image" metrics
reduce all other dimensions and return one value per image (float64 tensors), NaN where the metric
is undefined for that image (say a constant map for a correlation, or an empty support).
Uncertainty maps are non-negative scores where larger means less trusted; for the INN it is
``hi - lo``. ``support`` (a bool mask broadcastable to the maps, default: every pixel) restricts
a per-image metric to the object's pixels: the study passes the task's object support so the
background, where every method is trivially right, does not count.
"""

from __future__ import annotations

from ._extras import require_study

require_study(__name__)

import math
import time
from typing import NamedTuple, Optional

import numpy as np
import torch

DIRECTION_THRESHOLDS = (1.0, 1.25, 1.5, 1.75, 2.0)


def _flat(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim < 1:
        raise ValueError("expected a batch of maps (first dim = image), got a scalar")
    return x.detach().reshape(x.shape[0], -1).to(torch.float64)


def _eps(x) -> float:
    x = torch.as_tensor(x)
    return torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0


def _same_shape(**maps):
    shapes = {name: tuple(torch.as_tensor(m).shape) for name, m in maps.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"expected equal shapes, got {shapes}")


def _weights(support, shape) -> torch.Tensor:
    """The support as float64 0/1 weights ``(images, pixels)`` (all ones when None); a support
    broadcasts over the map's shape (e.g. one mask for every channel)."""
    if support is None:
        return torch.ones(shape[0], math.prod(shape[1:]), dtype=torch.float64)
    support = torch.as_tensor(support)
    if support.dtype != torch.bool:
        raise TypeError(f"support: expected a bool mask, got {support.dtype}")
    try:
        support = support.detach().cpu().expand(shape)
    except RuntimeError:
        raise ValueError(f"support: expected a mask broadcastable to {tuple(shape)}, got "
                         f"{tuple(support.shape)}") from None
    return support.reshape(shape[0], -1).to(torch.float64)


def _wmean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Row means of ``x`` over the support ``w``; NaN (0/0) for an empty support."""
    return (x * w).sum(1) / w.sum(1)


def cosine_similarity(error, uncertainty, support=None) -> torch.Tensor:
    """The paper's score: per image, cosine of the angle between ``|error|`` and the uncertainty
    map over the support (default: every pixel). NaN when either map is all zero there."""
    _same_shape(error=error, uncertainty=uncertainty)
    e, u = _flat(error).abs(), _flat(uncertainty)
    w = _weights(support, torch.as_tensor(error).shape)
    return (e * u * w).sum(1) / ((e * e * w).sum(1).sqrt() * (u * u * w).sum(1).sqrt())


def _pearson_flat(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    a = (a - _wmean(a, w)[:, None]) * w
    b = (b - _wmean(b, w)[:, None]) * w
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def pearson(a, b, support=None) -> torch.Tensor:
    """Per image Pearson correlation of two maps over the support (NaN when one is constant
    there or the support is empty)."""
    _same_shape(a=a, b=b)
    return _pearson_flat(_flat(a), _flat(b), _weights(support, torch.as_tensor(a).shape))


def _ranks(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Average ranks of each row among its support pixels (0 elsewhere): the pixels outside
    rank above every finite value inside (as +inf), which leaves the inside ranks as they are
    among themselves."""
    from scipy.stats import rankdata
    inside = w > 0
    values = torch.where(inside, x, torch.inf).cpu().numpy()
    return torch.from_numpy(rankdata(values, method="average", axis=1)) * inside


def spearman(a, b, support=None) -> torch.Tensor:
    """Per image Spearman rank correlation over the support (Pearson of the average ranks
    among the support pixels; NaN when one map is constant there or the support is empty)."""
    _same_shape(a=a, b=b)
    w = _weights(support, torch.as_tensor(a).shape)
    return _pearson_flat(_ranks(_flat(a), w), _ranks(_flat(b), w), w)


def coverage(lo, hi, target, support=None) -> torch.Tensor:
    """Per image fraction of support pixels with ``lo <= target <= hi`` (two-sided)."""
    _same_shape(lo=lo, hi=hi, target=target)
    lo, hi, y = _flat(lo), _flat(hi), _flat(target)
    inside = ((lo <= y) & (y <= hi)).to(torch.float64)
    return _wmean(inside, _weights(support, torch.as_tensor(target).shape))


def mean_over(values, support=None) -> torch.Tensor:
    """Per image mean of a map over the support (NaN for an empty one)."""
    return _wmean(_flat(values), _weights(support, torch.as_tensor(values).shape))


def mean_width(lo, hi, support=None) -> torch.Tensor:
    """Per image mean of ``hi - lo`` over the support."""
    _same_shape(lo=lo, hi=hi)
    return mean_over(torch.as_tensor(hi) - torch.as_tensor(lo), support)


class DirectionAccuracy(NamedTuple):
    thresholds: tuple
    accuracy: torch.Tensor  # (images, thresholds); NaN where no pixel qualifies
    fraction: torch.Tensor  # (images, thresholds): share of pixels that qualify


def _sides(rec, lo, hi):
    """``(down, up, tied)`` = ``rec - lo``, ``hi - rec`` (float64, flat) and where the two sides
    are equal up to the rounding of ``lo``, ``hi`` in their dtype: rec +- std stored in float32
    is not exactly symmetric, and must still count as symmetric."""
    eps = max(_eps(rec), _eps(lo), _eps(hi))
    rec, lo, hi = _flat(rec), _flat(lo), _flat(hi)
    magnitude = torch.maximum(torch.maximum(lo.abs(), hi.abs()), rec.abs())
    slack = 4.0 * eps * magnitude
    down, up = rec - lo, hi - rec
    return down, up, slack, (up - down).abs() <= slack


def direction_accuracy(rec, lo, hi, target, thresholds=DIRECTION_THRESHOLDS,
                       support=None) -> DirectionAccuracy:
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
    over the qualifying support pixels of each image; ``fraction`` is their share of the
    support. See :func:`direction_scores` for the base rate and threshold-free scores.
    """
    _same_shape(rec=rec, lo=lo, hi=hi, target=target)
    w = _weights(support, torch.as_tensor(rec).shape)
    down, up, slack, tied = _sides(rec, lo, hi)
    rec, y = _flat(rec), _flat(target)
    if bool((down < -slack).any() | (up < -slack).any()):
        raise ValueError("lo, hi: expected lo <= rec <= hi everywhere")
    down, up = down.clamp(min=0.0), up.clamp(min=0.0)
    up = torch.where(tied, down, up)
    longer, shorter = torch.maximum(down, up), torch.minimum(down, up)
    ratio = torch.where(shorter > 0, longer / shorter.clamp(min=torch.finfo(torch.float64).tiny),
                        torch.where(longer > 0, torch.inf, 1.0))
    score = 0.5 * (1.0 + torch.sign(up - down) * torch.sign(y - rec))
    accuracy, fraction = [], []
    for t in thresholds:
        selected = (ratio >= t).to(torch.float64) * w
        count = selected.sum(1)
        accuracy.append((score * selected).sum(1) / count)  # 0/0 = NaN: no qualifying pixel
        fraction.append(count / w.sum(1))
    return DirectionAccuracy(tuple(thresholds), torch.stack(accuracy, 1), torch.stack(fraction, 1))


class DirectionScores(NamedTuple):
    """Per image, over the qualifying pixels (support, ``target != rec``, not excluded)."""

    accuracy: torch.Tensor  # the sign of the asymmetry vs the sign of target - rec (tie = 1/2)
    base_rate: torch.Tensor  # the majority class's share: what always guessing it scores
    balanced_accuracy: torch.Tensor  # mean of the accuracies on "up" and on "down" pixels
    auroc: torch.Tensor  # of the signed asymmetry for "target above rec"
    pixels: torch.Tensor  # qualifying pixels (float64)


def direction_scores(rec, lo, hi, target, support=None, exclude=None) -> DirectionScores:
    """How well the signed asymmetry ``(hi - rec) - (rec - lo)`` predicts on which side of the
    reconstruction the target lies, per image.

    Qualifying pixels: inside ``support``, ``target != rec`` (a tie has no side), and not in
    ``exclude`` (bool, e.g. pixels where the reconstruction sits at an output clamp, where the
    side is known without any uncertainty). The asymmetry is 0 where the two sides are equal up
    to the rounding of ``lo``, ``hi``. ``accuracy`` scores 1 when its sign matches, 0 when it
    does not, 1/2 when it is 0; ``base_rate`` is what always answering the majority side
    scores, the level an accuracy must beat; ``balanced_accuracy`` averages the accuracy on
    pixels with the target above and below (chance 1/2 whatever the base rate); ``auroc`` ranks
    the asymmetry against the side (chance 1/2, ties 1/2). NaN where undefined (no qualifying
    pixel; for the balanced accuracy and AUROC also when only one side occurs). ``lo``, ``hi``
    need not contain ``rec``.
    """
    _same_shape(rec=rec, lo=lo, hi=hi, target=target)
    shape = torch.as_tensor(rec).shape
    keep = _weights(support, shape) > 0
    if exclude is not None:
        keep &= ~(_weights(exclude, shape) > 0)
    down, up, _, tied = _sides(rec, lo, hi)
    asymmetry = torch.where(tied, 0.0, up - down)
    side = torch.sign(_flat(target) - _flat(rec))
    keep &= side != 0
    score = 0.5 * (1.0 + torch.sign(asymmetry) * side)
    n = keep.sum(1).to(torch.float64)
    above = (keep & (side > 0)).to(torch.float64)
    below = (keep & (side < 0)).to(torch.float64)
    share_above = above.sum(1) / n
    balanced = 0.5 * ((score * above).sum(1) / above.sum(1) + (score * below).sum(1) /
                      below.sum(1))
    auroc = torch.full((shape[0],), math.nan, dtype=torch.float64)
    for i in range(shape[0]):
        if above[i].any() and below[i].any():
            auroc[i] = _auroc(asymmetry[i][keep[i]].numpy(), (side[i][keep[i]] > 0).numpy())
    return DirectionScores((score * keep).sum(1) / n,
                           torch.maximum(share_above, 1.0 - share_above), balanced, auroc, n)


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC as the Mann-Whitney U of the positives over the negatives, divided by their count
    of pairs (ties 1/2): equal to scikit-learn's roc_auc_score, several times faster on the
    thousands of small per-image problems of a study."""
    from scipy.stats import mannwhitneyu
    positive, negative = scores[labels], scores[~labels]
    u = mannwhitneyu(positive, negative, method="asymptotic").statistic
    return float(u) / (positive.size * negative.size)


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


def pixel_auroc_per_image(uncertainty, mask, support=None) -> torch.Tensor:
    """Per image AUROC for detecting the pixels of ``mask`` by thresholding ``uncertainty``:
    positives are the mask's pixels, negatives the support's other pixels (default: every other
    pixel), so the background outside the object cannot make detection look easy. NaN for an
    image without a positive or a negative pixel."""
    shape = torch.as_tensor(uncertainty).shape
    positive = _weights(torch.as_tensor(mask), shape) > 0
    negative = (_weights(support, shape) > 0) & ~positive
    u = _flat(uncertainty).numpy()
    out = torch.full((shape[0],), math.nan, dtype=torch.float64)
    for i in range(shape[0]):
        if positive[i].any() and negative[i].any():
            used = (positive[i] | negative[i]).numpy()
            out[i] = _auroc(u[i][used], positive[i].numpy()[used])
    return out


def pixel_aupr(uncertainty, mask) -> float:
    """Area under the precision-recall curve, as average precision (scikit-learn's
    ``average_precision_score``), pooled over all pixels; chance = the positive share."""
    from sklearn.metrics import average_precision_score
    y, s = _labels_scores(mask, uncertainty)
    return float(average_precision_score(y, s))


IMAGE_STATISTICS = ("mean", "q95", "local_max")


def image_scores(uncertainty, support=None, statistic: str = "mean",
                 window: Optional[int] = None) -> torch.Tensor:
    """One score per image from its uncertainty map over the support: ``mean``; ``q95``, the
    95 % quantile; ``local_max``, the largest mean over a ``window``-wide box (a square in 2D)
    of support pixels, counting only boxes at least half inside the support (so a few rim
    pixels cannot make a peak). The mean suits global shifts (noise), the other two localised
    ones (one changed region). NaN for an empty support."""
    if statistic not in IMAGE_STATISTICS:
        raise ValueError(f"statistic: expected one of {IMAGE_STATISTICS}, got {statistic!r}")
    u = torch.as_tensor(uncertainty).detach().cpu().to(torch.float64)
    w = _weights(support, u.shape)
    flat = u.reshape(u.shape[0], -1)
    if statistic == "mean":
        return _wmean(flat, w)
    if statistic == "q95":
        out = torch.full((u.shape[0],), math.nan, dtype=torch.float64)
        for i in range(u.shape[0]):
            if w[i].any():
                out[i] = torch.quantile(flat[i][w[i] > 0], 0.95)
        return out
    spatial = u.shape[2:]
    if len(spatial) not in (1, 2) or u.ndim < 3:
        raise ValueError(f"uncertainty: local_max expects (n, c, L) or (n, c, H, W) maps, got "
                         f"{tuple(u.shape)}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window: expected an int >= 1 for local_max, got {window!r}")
    pool = torch.nn.functional.avg_pool1d if len(spatial) == 1 else \
        torch.nn.functional.avg_pool2d
    window = min(window, *spatial)
    weights = w.reshape(u.shape)
    inside = pool(weights.reshape(-1, 1, *spatial), window, stride=1)
    total = pool((u * weights).reshape(-1, 1, *spatial), window, stride=1)
    local = torch.where(inside >= 0.5, total / inside.clamp(min=1e-30), -math.inf)
    best = local.reshape(u.shape[0], -1).amax(1)
    return torch.where(torch.isfinite(best), best, math.nan)


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


def image_placements(clean_scores, perturbed_scores) -> torch.Tensor:
    """Per perturbed image, the share of clean images it outscores (ties 1/2): the image's part
    of the AUROC, whose mean over the perturbed images is :func:`image_auroc`. As a per-image
    value it can be compared between methods image by image (a paired test)."""
    clean = torch.as_tensor(clean_scores).detach().reshape(1, -1).cpu().to(torch.float64)
    pert = torch.as_tensor(perturbed_scores).detach().reshape(-1, 1).cpu().to(torch.float64)
    if clean.numel() == 0 or pert.numel() == 0:
        raise ValueError("clean_scores, perturbed_scores: expected at least one image each")
    return ((pert > clean).to(torch.float64) + 0.5 * (pert == clean)).mean(1)


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


def sparsification(error, uncertainty, steps: int = 20, *, normalize: bool = False,
                   support=None) -> Sparsification:
    """Sparsification curves per image: remove the fraction ``k / steps`` (k = 0 .. steps - 1) of
    pixels with the largest uncertainty and average ``|error|`` over the rest; the oracle removes
    by ``|error|`` itself. ``ause`` integrates ``by_uncertainty - oracle`` over [0, (steps-1)/steps]
    (0 = uncertainty ranks pixels like the error; lower is better). Ties in uncertainty are broken
    by pixel order. ``normalize`` divides both curves by the image's mean error first. With a
    ``support`` each image's curves use its support pixels only (NaN rows for an empty one)."""
    _same_shape(error=error, uncertainty=uncertainty)
    if steps < 2:
        raise ValueError(f"steps: expected >= 2, got {steps}")
    e, u = _flat(error).abs(), _flat(uncertainty)
    fractions = torch.arange(steps, dtype=torch.float64) / steps
    if support is not None:
        w = _weights(support, torch.as_tensor(error).shape) > 0
        rows = [_sparsify(e[i:i + 1, w[i]], u[i:i + 1, w[i]], fractions, normalize)
                if w[i].any() else (torch.full((1, steps), math.nan, dtype=torch.float64),) * 2
                for i in range(e.shape[0])]
        curve, oracle = (torch.cat(parts) for parts in zip(*rows))
    else:
        curve, oracle = _sparsify(e, u, fractions, normalize)
    gap = curve - oracle
    ause = torch.trapezoid(gap, fractions, dim=1)
    return Sparsification(fractions, curve, oracle, gap, ause)


def _sparsify(e, u, fractions, normalize):
    """(curve, oracle) of :func:`sparsification` for ``|error|`` and uncertainty rows."""
    by_u = torch.gather(e, 1, torch.sort(u, dim=1, descending=True, stable=True).indices)
    by_e = torch.sort(e, dim=1, descending=True).values
    curve, oracle = _remaining_mean(by_u, fractions), _remaining_mean(by_e, fractions)
    if normalize:
        scale = e.mean(1, keepdim=True)
        curve, oracle = curve / scale, oracle / scale
    return curve, oracle


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
