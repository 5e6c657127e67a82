"""Every metric of :mod:`inn_cuda.metrics` for one method on one case, reduced to numbers.

Per-image metrics (cosine, Pearson, Spearman, AUSE, coverage, width, direction accuracy) are
averaged over the images where they are defined (NaN-aware; NaN when none is); pixel AUROC/AUPR
pool every pixel of the case; image-level AUROC compares the per-image mean uncertainty of the
perturbed images with that of the clean ones. Everything is float or None (undefined), ready for
JSON.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from .. import metrics as M
from .methods import Method, Prediction

AUSE_STEPS = 20


def _mean(values: torch.Tensor) -> Optional[float]:
    """NaN-aware mean as a float, None when no value is defined."""
    values = values.to(torch.float64)
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else None


def _threshold_key(t: float) -> str:
    return f"{t:g}"


def case_metrics(method: Method, pred: Prediction, targets: torch.Tensor,
                 mask: Optional[torch.Tensor] = None) -> Dict[str, object]:
    """The metrics of one method's prediction against the targets of one case; ``mask`` (bool,
    the changed region or the artifact footprint) adds pixel AUROC/AUPR."""
    error = pred.rec - targets
    unc = pred.uncertainty
    out: Dict[str, object] = {
        "rmse": math.sqrt(float(error.double().square().mean())),
        "mean_uncertainty": float(unc.double().mean()),
        "cosine": _mean(M.cosine_similarity(error, unc)),
        "pearson": _mean(M.pearson(error.abs(), unc)),
        "spearman": _mean(M.spearman(error.abs(), unc)),
        "ause": _mean(M.sparsification(error, unc, AUSE_STEPS, normalize=True).ause),
        "coverage": _mean(M.coverage(pred.lo, pred.hi, targets)) if method.has_interval
        else None,
        "mean_width": _mean(M.mean_width(pred.lo, pred.hi)) if method.has_interval else None,
    }
    direction = M.direction_accuracy(pred.rec, pred.lo, pred.hi, targets)
    out["direction_accuracy"] = {_threshold_key(t): _mean(direction.accuracy[:, k])
                                 for k, t in enumerate(direction.thresholds)}
    out["direction_fraction"] = {_threshold_key(t): _mean(direction.fraction[:, k])
                                 for k, t in enumerate(direction.thresholds)}
    if mask is not None:
        mask = mask.expand_as(unc)
        if bool(mask.any()) and not bool(mask.all()):
            out["pixel_auroc"] = M.pixel_auroc(unc, mask)
            out["pixel_aupr"] = M.pixel_aupr(unc, mask)
            out["pixel_positive_share"] = float(mask.double().mean())
    return out


def inference_time(predict, batch: torch.Tensor, repeats: int) -> Dict[str, float]:
    """Median wall time of ``predict(batch)`` (``batch`` already on the device)."""
    timing = M.time_inference(predict, batch, repeats=repeats, warmup=1)
    return {"per_batch_s": timing.median_s, "per_image_s": timing.median_s / batch.shape[0],
            "batch": int(batch.shape[0]), "repeats": timing.repeats}
