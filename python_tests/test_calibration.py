"""Calibrated bands and the interval score on synthetic cases with known answers."""

import math

import pytest
import torch

from inn_cuda.calibration import band_scores, calibrate_scale, required_scale, scale_band


def test_calibration_reaches_the_target_on_gaussian_errors():
    """rec = 0, target ~ N(0, s^2) with s varying per pixel, band = rec -+ s (a correctly shaped
    std): the calibrated k is the normal quantile, coverage on fresh data hits the target."""
    gen = torch.Generator().manual_seed(0)
    s = 0.1 + torch.rand(4, 1, 64, 64, generator=gen, dtype=torch.float64)
    rec = torch.zeros_like(s)
    calib = s * torch.randn(s.shape, generator=gen, dtype=torch.float64)
    k = calibrate_scale(rec, rec - s, rec + s, calib, 0.9)
    assert k == pytest.approx(1.6449, abs=0.03)  # the two-sided 90 % normal quantile
    fresh = s * torch.randn(s.shape, generator=gen, dtype=torch.float64)
    lo, hi = scale_band(rec, rec - s, rec + s, k)
    scores = band_scores(lo, hi, fresh, 0.9)
    assert float(scores.coverage.mean()) == pytest.approx(0.9, abs=0.01)
    # exact on the calibration data itself
    assert float(band_scores(lo, hi, calib, 0.9).coverage.mean()) >= 0.9


def test_an_uninformative_band_scores_worse_than_a_shaped_one():
    gen = torch.Generator().manual_seed(1)
    s = 0.05 + torch.rand(2, 1, 32, 32, generator=gen, dtype=torch.float64)
    rec = torch.zeros_like(s)
    y_cal, y_test = (s * torch.randn(s.shape, generator=gen, dtype=torch.float64)
                     for _ in range(2))
    flat = torch.ones_like(s)
    results = {}
    for name, u in (("shaped", s), ("flat", flat)):
        k = calibrate_scale(rec, rec - u, rec + u, y_cal, 0.9)
        lo, hi = scale_band(rec, rec - u, rec + u, k)
        results[name] = band_scores(lo, hi, y_test, 0.9)
    assert float(results["shaped"].interval_score.mean()) < \
        float(results["flat"].interval_score.mean())
    assert float(results["shaped"].width.mean()) < float(results["flat"].width.mean())


def test_required_scale_and_interval_score_by_hand():
    rec = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    lo = torch.tensor([[-1.0, -1.0, 0.0, 1.0]])
    hi = torch.tensor([[2.0, 2.0, 0.0, 1.0]])
    y = torch.tensor([[1.0, -3.0, 0.0, 2.0]])
    need = required_scale(rec, lo, hi, y)
    assert need.tolist() == [[0.5, 3.0, 0.0, math.inf]]
    # support restricts: the last element is left out
    support = torch.tensor([[True, True, True, False]])
    assert calibrate_scale(rec, lo, hi, y, 0.6, support) == 0.5  # 2nd of [0, 0.5, 3]
    assert calibrate_scale(rec, lo, hi, y, 0.9, support) == 3.0
    assert calibrate_scale(rec, lo, hi, y, 0.9) == math.inf  # a zero-length side misses
    # Winkler by hand, alpha = 0.1: width 1; outside by 1 -> 1 + 20 * 1
    scores = band_scores(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]),
                         torch.tensor([[0.5, 2.0]]), 0.9)
    assert scores.interval_score.tolist() == [pytest.approx(11.0)]
    assert scores.coverage.tolist() == [0.5] and scores.width.tolist() == [1.0]
    with pytest.raises(ValueError, match="coverage"):
        band_scores(lo, hi, y, 1.0)
    with pytest.raises(ValueError, match="lo <= rec"):
        required_scale(rec, hi, lo, y)
