"""Calibrated bands for every method at one coverage (:mod:`inn_cuda.calibration`): each
method's band around its reconstruction (INN ``[lo, hi]``; MCDROP the point network's
reconstruction -+ the dropout std; PROBOUT ``mu -+ sigma``) is scaled by the factor that makes
it cover ``interval_coverage`` of the first ``calibration_images`` validation targets, then
scored on the clean test images by coverage, mean width and interval score, over the task's
object support when it defines one (all pixels otherwise; the report says which)."""

from __future__ import annotations

from typing import Dict

from ..calibration import band_scores, calibrate_scale, scale_band
from .methods import predict_all


def _region(problem, targets):
    support = getattr(problem, "support", None)
    return (support(targets), "support") if support is not None else (None, "all pixels")


def _band(method, p):
    """The band a method's calibration scales: an interval method's own ``[lo, hi]``; for the
    others ``rec -+ uncertainty`` (MCDROP: the dropout std; PROBOUT: sigma), which is never
    one-sided, so a finite scale can reach any coverage."""
    if method.has_interval:
        return p.lo, p.hi
    return p.rec - p.uncertainty, p.rec + p.uncertainty


def calibrated_bands(methods, problem, val, test, s, device) -> Dict[str, object]:
    n = min(s.calibration_images, len(val))
    cov = s.interval_coverage
    val_support, region = _region(problem, val.targets[:n])
    test_support, _ = _region(problem, test.targets)
    out: Dict[str, object] = {"coverage": cov, "calibration_images": n, "region": region,
                              "methods": {}}
    for method in methods:
        pv = predict_all(method, val.inputs[:n], s.eval_batch_size, device)
        k = calibrate_scale(pv.rec, *_band(method, pv), val.targets[:n], cov, val_support)
        pt = predict_all(method, test.inputs, s.eval_batch_size, device)
        raw = band_scores(*_band(method, pt), test.targets, cov, test_support)
        lo, hi = scale_band(pt.rec, *_band(method, pt), k)
        cal = band_scores(lo, hi, test.targets, cov, test_support)
        mean = lambda t: float(t.nanmean())  # noqa: E731
        out["methods"][method.name] = {
            "scale": k, "coverage": mean(cal.coverage), "width": mean(cal.width),
            "interval_score": mean(cal.interval_score), "raw_coverage": mean(raw.coverage),
            "raw_width": mean(raw.width), "raw_interval_score": mean(raw.interval_score)}
    return out
