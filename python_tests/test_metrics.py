"""Every metric on small hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from inn_cuda import metrics

T = lambda *rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731  one row = one image


def test_cosine_similarity():
    error = T([3.0, -4.0], [1.0, 0.0])
    unc = T([4.0, 3.0], [0.0, 2.0])
    # |error| = (3, 4): cos with (4, 3) = 24 / 25; (1, 0) vs (0, 2): orthogonal
    torch.testing.assert_close(metrics.cosine_similarity(error, unc), T(24 / 25, 0.0))
    assert math.isnan(float(metrics.cosine_similarity(T([0.0, 0.0]), T([1.0, 1.0]))[0]))
    with pytest.raises(ValueError, match="equal shapes"):
        metrics.cosine_similarity(torch.zeros(1, 2), torch.zeros(1, 3))


def test_pearson_and_spearman():
    a = T([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    b = T([2.0, 4.0, 6.0, 8.0], [1.0, 4.0, 9.0, 100.0])
    p = metrics.pearson(a, b)
    assert float(p[0]) == pytest.approx(1.0)
    # second image by hand: b - mean = (-27.5, -24.5, -19.5, 71.5), a - mean = (-1.5, -.5, .5, 1.5)
    cov = (-1.5 * -27.5) + (-0.5 * -24.5) + (0.5 * -19.5) + (1.5 * 71.5)
    expected = cov / (math.sqrt(5.0) * math.sqrt(27.5**2 + 24.5**2 + 19.5**2 + 71.5**2))
    assert float(p[1]) == pytest.approx(expected)
    s = metrics.spearman(a, b)
    torch.testing.assert_close(s, T(1.0, 1.0))  # monotone -> rank correlation 1
    # ties take average ranks: (1, 1, 2) -> ranks (1.5, 1.5, 3); vs (3, 2, 1) -> ranks (3, 2, 1)
    r = metrics.spearman(T([1.0, 1.0, 2.0]), T([3.0, 2.0, 1.0]))
    ra, rb = np.array([1.5, 1.5, 3.0]), np.array([3.0, 2.0, 1.0])
    assert float(r[0]) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert math.isnan(float(metrics.pearson(T([1.0, 1.0]), T([1.0, 2.0]))[0]))


def test_coverage_and_width():
    lo = T([0.0, 0.0, 0.0, 0.0])
    hi = T([1.0, 2.0, 3.0, 4.0])
    y = T([0.0, 2.5, 3.0, -1.0])  # inside (boundary), outside, inside (boundary), outside
    torch.testing.assert_close(metrics.coverage(lo, hi, y), T(0.5))
    torch.testing.assert_close(metrics.mean_width(lo, hi), T(2.5))


def test_direction_accuracy_hand_case():
    rec = T([0.0, 0.0, 0.0, 0.0, 0.0])
    lo = T([-1.0, -3.0, -1.0, -1.0, -1.0])
    hi = T([3.0, 1.0, 1.0, 1.5, 0.0])
    y = T([1.0, 1.0, 5.0, -2.0, -1.0])
    # ratios: 3, 3, 1, 1.5, inf; longer side: up, down, none, up, down;
    # target direction: up, up, up, down, down -> scores 1, 0, 0.5, 0, 1
    res = metrics.direction_accuracy(rec, lo, hi, y)
    assert res.thresholds == (1.0, 1.25, 1.5, 1.75, 2.0)
    torch.testing.assert_close(res.accuracy[0], torch.tensor(
        [2.5 / 5, 2 / 4, 2 / 4, 2 / 3, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(res.fraction[0], torch.tensor(
        [1.0, 0.8, 0.8, 0.6, 0.6], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_direction_accuracy_symmetric_is_chance_and_checks_order(dtype):
    rec = 10 * torch.randn(3, 1, 4, 4, dtype=dtype)
    std = 1e-3 * torch.rand_like(rec)  # rec +- std rounds to slightly asymmetric sides
    y = rec + torch.randn_like(rec)
    res = metrics.direction_accuracy(rec, rec - std, rec + std, y)
    torch.testing.assert_close(res.accuracy[:, 0], torch.full((3,), 0.5, dtype=torch.float64))
    assert bool(torch.isnan(res.accuracy[:, 1:]).all()) and float(res.fraction[:, 1:].max()) == 0
    with pytest.raises(ValueError, match="lo <= rec <= hi"):
        metrics.direction_accuracy(rec, rec + 1, rec + 2, y)


def test_pixel_auroc_and_aupr():
    unc = T([0.9, 0.8, 0.3, 0.1], [0.7, 0.2, 0.6, 0.0])
    mask = torch.tensor([[True, False, True, False], [True, False, False, False]])
    # pooled scores: positives 0.9, 0.3, 0.7; negatives 0.8, 0.1, 0.2, 0.6, 0.0
    # pairs won by positives: 0.9 beats 5, 0.3 beats 3, 0.7 beats 4 -> 12 / 15
    assert metrics.pixel_auroc(unc, mask) == pytest.approx(12 / 15)
    # ranking: .9(+) .8 .7(+) .6 .3(+) .2 .1 .0 -> AP = (1/1 + 2/3 + 3/5) / 3
    assert metrics.pixel_aupr(unc, mask) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    with pytest.raises(ValueError, match="both positive and negative"):
        metrics.pixel_auroc(unc, torch.ones_like(mask))


def test_image_auroc():
    clean = metrics.image_scores(T([0.1, 0.3], [0.2, 0.2], [0.5, 0.5]))  # 0.2, 0.2, 0.5
    perturbed = torch.tensor([0.4, 0.2], dtype=torch.float64)
    # pairs (pert > clean): 0.4 beats 0.2, 0.2 -> 2, loses to 0.5; 0.2 ties 0.2 twice -> 1
    assert metrics.image_auroc(clean, perturbed) == pytest.approx(3 / 6)
    assert metrics.image_auroc([0.0], [1.0]) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        metrics.image_auroc([], [1.0])


def test_sparsification_hand_case():
    error = T([4.0, 3.0, 2.0, 1.0])
    perfect = metrics.sparsification(error, T([0.9, 0.5, 0.3, 0.1]), steps=4)
    torch.testing.assert_close(perfect.fractions, torch.tensor([0.0, 0.25, 0.5, 0.75],
                                                                dtype=torch.float64))
    # remaining means after removing 0..3 largest errors: 2.5, 2, 1.5, 1
    torch.testing.assert_close(perfect.oracle[0], torch.tensor([2.5, 2.0, 1.5, 1.0],
                                                               dtype=torch.float64))
    torch.testing.assert_close(perfect.by_uncertainty, perfect.oracle)
    assert float(perfect.ause[0]) == 0.0
    reverse = metrics.sparsification(error, T([0.1, 0.3, 0.5, 0.9]), steps=4)
    # removing the smallest errors first: 2.5, 3, 3.5, 4 -> gaps 0, 1, 2, 3
    torch.testing.assert_close(reverse.error[0], torch.tensor([0.0, 1.0, 2.0, 3.0],
                                                              dtype=torch.float64))
    # trapezoid over fractions 0 .. 0.75 step 0.25: 0.25 * (0/2 + 1 + 2 + 3/2) = 1.125
    assert float(reverse.ause[0]) == pytest.approx(1.125)
    normed = metrics.sparsification(error, T([0.1, 0.3, 0.5, 0.9]), steps=4, normalize=True)
    assert float(normed.ause[0]) == pytest.approx(1.125 / 2.5)


def test_time_inference_counts_calls():
    calls = []
    timing = metrics.time_inference(lambda v: calls.append(v), 1, repeats=3, warmup=2)
    assert len(calls) == 5 and timing.repeats == 3
    assert 0 <= timing.min_s <= timing.median_s
