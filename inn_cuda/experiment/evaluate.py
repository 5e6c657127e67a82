"""Every metric of :mod:`inn_cuda.metrics` for one method on one case: per-image values (kept in
``metrics.json``, so every statistic of the report can be recomputed) and their means.

Pixel-level metrics use the task's object support (the body in CT); the same metrics over all
pixels sit under ``all_pixels``, for comparison only. Where the case has a mask (the changed
region or the artifact footprint) the pixel AUROC is computed per image with negatives from the
support, next to two controls evaluated the same way: the method's uncertainty on the clean,
unperturbed image (``pixel_auroc_clean_control``) and the change of its uncertainty
(``pixel_auroc_change``, u(x') - u(x)). Image-level scores (mean, 95 % quantile, largest local
mean of the uncertainty over the support) are kept per image; :func:`image_detection` compares a
case's scores with the clean ones. Means are NaN-aware (None when no image has a value).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch

from .. import metrics as M
from .methods import Method, Prediction

AUSE_STEPS = 20
WINDOW_FRACTION = 8  # local_max's window: 1/8 of the image side or signal length


def _mean(values: torch.Tensor) -> Optional[float]:
    """NaN-aware mean as a float, None when no value is defined."""
    values = values.to(torch.float64)
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else None


def _list(values: torch.Tensor) -> List[Optional[float]]:
    """Per-image values for JSON: NaN (undefined) becomes None."""
    return [float(v) if math.isfinite(v) else None for v in values.to(torch.float64).tolist()]


def _threshold_key(t: float) -> str:
    return f"{t:g}"


def window_of(shape) -> int:
    """The local_max window of maps shaped ``(n, c, *spatial)``."""
    return max(3, min(shape[2:]) // WINDOW_FRACTION)


def _map_metrics(pred: Prediction, targets, support, has_interval: bool) -> Dict[str, torch.Tensor]:
    """Per-image error-vs-uncertainty metrics over ``support`` (None: every pixel)."""
    error = pred.rec - targets
    unc = pred.uncertainty
    out = {
        "rmse": M.mean_over(error.square(), support).sqrt(),
        "mean_uncertainty": M.mean_over(unc, support),
        "cosine": M.cosine_similarity(error, unc, support),
        "pearson": M.pearson(error.abs(), unc, support),
        "spearman": M.spearman(error.abs(), unc, support),
        "ause": M.sparsification(error, unc, AUSE_STEPS, normalize=True, support=support).ause,
    }
    if has_interval:
        out["coverage"] = M.coverage(pred.lo, pred.hi, targets, support)
        out["mean_width"] = M.mean_width(pred.lo, pred.hi, support)
    return out


def case_metrics(method: Method, pred: Prediction, targets: torch.Tensor,
                 mask: Optional[torch.Tensor] = None, *, support: Optional[torch.Tensor] = None,
                 clamped: Optional[torch.Tensor] = None,
                 clean_uncertainty: Optional[torch.Tensor] = None) -> Dict[str, object]:
    """The metrics of one method's prediction against the targets of one case.

    ``support``: the object support (bool, shaped like the targets; None = every pixel);
    ``clamped``: pixels the direction metrics leave out (the reconstruction at an output clamp);
    ``mask`` (bool, the changed region or the artifact footprint) adds the pixel AUROC, with the
    clean-image control and the change map when ``clean_uncertainty`` (the method's map on the
    unperturbed images) is given.
    """
    unc = pred.uncertainty
    per_image = _map_metrics(pred, targets, support, method.has_interval)
    everywhere = _map_metrics(pred, targets, None, method.has_interval) \
        if support is not None else per_image
    direction = M.direction_scores(pred.rec, pred.lo, pred.hi, targets, support, clamped)
    per_image.update(direction_accuracy=direction.accuracy,
                     direction_base_rate=direction.base_rate,
                     direction_balanced_accuracy=direction.balanced_accuracy,
                     direction_auroc=direction.auroc)
    window = window_of(unc.shape)
    for statistic in M.IMAGE_STATISTICS:
        per_image[f"score_{statistic}"] = M.image_scores(unc, support, statistic, window)
    all_pixels = {k: _mean(v) for k, v in everywhere.items()}
    if mask is not None:
        mask = mask.expand_as(unc)
        per_image["pixel_auroc"] = M.pixel_auroc_per_image(unc, mask, support)
        all_pixels["pixel_auroc"] = _mean(M.pixel_auroc_per_image(unc, mask))
        if bool(mask.any()) and not bool(mask.all()):
            all_pixels["pixel_auroc_pooled"] = M.pixel_auroc(unc, mask)
            all_pixels["pixel_aupr_pooled"] = M.pixel_aupr(unc, mask)
        if clean_uncertainty is not None:
            per_image["pixel_auroc_clean_control"] = M.pixel_auroc_per_image(
                clean_uncertainty, mask, support)
            per_image["pixel_auroc_change"] = M.pixel_auroc_per_image(
                unc - clean_uncertainty, mask, support)
    out: Dict[str, object] = {"coverage": None, "mean_width": None}  # None: no trained interval
    out.update({k: _mean(v) for k, v in per_image.items()})
    thresholds = M.direction_accuracy(pred.rec, pred.lo, pred.hi, targets, support=support)
    out["direction_accuracy_by_ratio"] = {_threshold_key(t): _mean(thresholds.accuracy[:, k])
                                          for k, t in enumerate(thresholds.thresholds)}
    out["direction_fraction_by_ratio"] = {_threshold_key(t): _mean(thresholds.fraction[:, k])
                                          for k, t in enumerate(thresholds.thresholds)}
    if mask is not None:
        out["pixel_positive_share"] = float(mask.double().mean())
    out["all_pixels"] = all_pixels
    out["per_image"] = {k: _list(v) for k, v in per_image.items()}
    return out


def image_detection(clean: Dict[str, object], case: Dict[str, object]) -> Dict[str, object]:
    """Image-level detection of a case's images among the clean ones from their per-image scores
    (the ``score_*`` lists of :func:`case_metrics` on both): per statistic, the unpaired AUROC
    and, per image, its placement among the clean images (the AUROC's per-image part) and
    whether its score rose over the same image's clean score (paired)."""
    out: Dict[str, object] = {}
    per_image = case["per_image"]
    for statistic in M.IMAGE_STATISTICS:
        key = f"score_{statistic}"
        before = torch.tensor([math.nan if v is None else v for v in clean["per_image"][key]],
                              dtype=torch.float64)
        after = torch.tensor([math.nan if v is None else v for v in per_image[key]],
                             dtype=torch.float64)
        defined = torch.isfinite(before) & torch.isfinite(after)
        placement = torch.full_like(after, math.nan)
        if bool(defined.any()):
            placement[defined] = M.image_placements(before[defined], after[defined])
        rise = torch.where(defined, (after > before).to(torch.float64), math.nan)
        per_image[f"placement_{statistic}"] = _list(placement)
        per_image[f"rise_{statistic}"] = _list(rise)
        out[statistic] = {"auroc": _mean(placement), "rise_share": _mean(rise)}
    return out


def inference_time(predict, batch: torch.Tensor, repeats: int) -> Dict[str, float]:
    """Median wall time of ``predict(batch)`` (``batch`` already on the device)."""
    timing = M.time_inference(predict, batch, repeats=repeats, warmup=1)
    return {"per_batch_s": timing.median_s, "per_image_s": timing.median_s / batch.shape[0],
            "batch": int(batch.shape[0]), "repeats": timing.repeats}
