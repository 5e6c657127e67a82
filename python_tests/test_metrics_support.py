"""The study's metrics on the object support, against hand-computed cases: a constant map, a
perfectly ranked one, an inverted one, ties and an empty support; the direction scores with
their base rate; per-image pixel AUROC; image scores and placements; the Sobel control map; the
CT body support on a phantom; the interval fit's support-restricted coverage."""

import math

import numpy as np
import pytest
import torch

from inn_cuda import metrics as M
from inn_cuda.tasks.ct import body_support
from inn_cuda.tasks.deconv1d import signal_support
from inn_cuda.tasks.filters import sobel_magnitude
from inn_cuda.tasks.phantoms import shepp_logan
from inn_cuda.train.intervals import interval_loss
from inn_cuda.nn import Interval


def _maps():
    """Two 1x1x2x3 images: the error ramps 1..6; the support is the first row of image 0 and
    nothing of image 1."""
    error = torch.arange(1.0, 7.0).reshape(1, 1, 2, 3).repeat(2, 1, 1, 1)
    support = torch.zeros_like(error, dtype=torch.bool)
    support[0, 0, 0] = True
    return error, support


def test_rank_metrics_on_the_support_ranked_inverted_constant_empty():
    error, support = _maps()
    # ranked on the support (1 < 2 < 3), wildly off outside it: only the support counts
    ranked = error.clone()
    ranked[0, 0, 1] = torch.tensor([-5.0, 100.0, -7.0])
    assert M.spearman(error, ranked, support)[0] == pytest.approx(1.0)
    assert M.pearson(error, ranked, support)[0] == pytest.approx(1.0)
    assert M.spearman(error, ranked)[0] < 0.9  # over all pixels it is not
    inverted = -error
    assert M.spearman(error, inverted, support)[0] == pytest.approx(-1.0)
    assert M.pearson(error, inverted, support)[0] == pytest.approx(-1.0)
    constant = torch.ones_like(error)
    assert math.isnan(M.spearman(error, constant, support)[0])
    assert math.isnan(M.pearson(error, constant, support)[0])
    # cosine on the support: (1, 2, 3) . (1, 1, 1) / (|(1, 2, 3)| sqrt 3)
    assert M.cosine_similarity(error, constant, support)[0] == pytest.approx(6 / math.sqrt(14 * 3))
    # ties: ranks (1.5, 1.5, 3) against (1, 2, 3): Pearson of the average ranks
    tied = torch.tensor([1.0, 1.0, 3.0, 0, 0, 0]).reshape(1, 1, 2, 3).repeat(2, 1, 1, 1)
    expected = np.corrcoef([1.5, 1.5, 3.0], [1.0, 2.0, 3.0])[0, 1]
    assert M.spearman(error, tied, support)[0] == pytest.approx(expected)
    # image 1 has an empty support: every metric is undefined there
    for value in (M.spearman(error, ranked, support), M.pearson(error, ranked, support),
                  M.cosine_similarity(error, ranked, support),
                  M.sparsification(error, ranked, support=support).ause,
                  M.mean_over(error, support)):
        assert math.isnan(value[1])


def test_coverage_width_and_sparsification_on_the_support():
    error, support = _maps()
    lo, hi = torch.zeros_like(error), torch.full_like(error, 2.5)
    # targets 1..3 on the support: 1 and 2 inside [0, 2.5]; all pixels: 2 of 6
    assert M.coverage(lo, hi, error, support)[0] == pytest.approx(2 / 3)
    assert M.coverage(lo, hi, error)[0] == pytest.approx(2 / 6)
    assert M.mean_width(lo, hi, support)[0] == pytest.approx(2.5)
    # a perfectly ranked map has AUSE 0 on the support, the inverted one more
    ranked = M.sparsification(error, error, steps=3, support=support)
    inverted = M.sparsification(error, -error, steps=3, support=support)
    assert ranked.ause[0] == pytest.approx(0.0)
    assert inverted.ause[0] > 0
    # by hand: remove 0, 1, 2 of (3, 2, 1) by the inverted order -> means 2, 2.5, 3; oracle
    # 2, 1.5, 1; gap 0, 1, 2 over fractions 0, 1/3, 2/3: trapezoid = 1/3 * (0.5 + 1.5) = 2/3
    assert inverted.ause[0] == pytest.approx(2 / 3)


def test_direction_scores_by_hand():
    rec = torch.zeros(1, 1, 6)
    target = torch.tensor([1.0, 1.0, 1.0, -1.0, 0.0, 1.0]).reshape(1, 1, 6)
    # asymmetry (hi - rec) - (rec - lo): +1, +1, -1, -1, +1 (a tie of target: left out), 0
    lo = torch.tensor([-1.0, -1.0, -2.0, -2.0, -1.0, -1.0]).reshape(1, 1, 6)
    hi = torch.tensor([2.0, 2.0, 1.0, 1.0, 2.0, 1.0]).reshape(1, 1, 6)
    d = M.direction_scores(rec, lo, hi, target)
    # qualifying: pixels 0, 1, 2, 3, 5 (4 is a tie); up: 0, 1, 2, 5; down: 3
    assert d.pixels[0] == 5
    assert d.accuracy[0] == pytest.approx((1 + 1 + 0 + 1 + 0.5) / 5)
    assert d.base_rate[0] == pytest.approx(4 / 5)
    assert d.balanced_accuracy[0] == pytest.approx(0.5 * ((1 + 1 + 0 + 0.5) / 4 + 1.0))
    # AUROC of the asymmetry (+1, +1, -1, 0 for "up"; -1 for "down"): pairs up > down:
    # 1, 1, 0.5 (tie), 1 -> 3.5 / 4
    assert d.auroc[0] == pytest.approx(3.5 / 4)
    # excluding the clamped pixels 0 and 1 leaves one class per side: base rate 2/3
    clamped = torch.zeros(1, 1, 6, dtype=torch.bool)
    clamped[..., :2] = True
    e = M.direction_scores(rec, lo, hi, target, exclude=clamped)
    assert e.pixels[0] == 3 and e.base_rate[0] == pytest.approx(2 / 3)
    # a symmetric interval is at chance on every score
    s = M.direction_scores(rec, rec - 1, rec + 1, target)
    assert s.accuracy[0] == pytest.approx(0.5) and s.balanced_accuracy[0] == pytest.approx(0.5)
    assert s.auroc[0] == pytest.approx(0.5)
    # one side only: balanced accuracy and AUROC undefined; an empty support: all undefined
    one = M.direction_scores(rec, lo, hi, target.abs() + 1)
    assert math.isnan(one.auroc[0]) and math.isnan(one.balanced_accuracy[0])
    none = M.direction_scores(rec, lo, hi, target, support=torch.zeros(1, 1, 6, dtype=torch.bool))
    assert none.pixels[0] == 0 and math.isnan(none.accuracy[0])


def test_pixel_auroc_per_image_negatives_from_the_support():
    u = torch.tensor([[0.0, 1.0, 2.0, 3.0, 9.0, 9.0]]).reshape(1, 1, 6)
    mask = torch.tensor([[False, False, True, True, False, False]]).reshape(1, 1, 6)
    support = torch.tensor([[True, True, True, True, False, False]]).reshape(1, 1, 6)
    assert M.pixel_auroc_per_image(u, mask, support)[0] == pytest.approx(1.0)  # ranked
    assert M.pixel_auroc_per_image(-u, mask, support)[0] == pytest.approx(0.0)  # inverted
    assert M.pixel_auroc_per_image(torch.ones_like(u), mask, support)[0] == pytest.approx(0.5)
    # over all pixels the bright background (9) outranks the region
    assert M.pixel_auroc_per_image(u, mask)[0] == pytest.approx(0.5)
    assert math.isnan(M.pixel_auroc_per_image(u, torch.zeros_like(mask), support)[0])


def test_image_scores_and_placements():
    u = torch.zeros(2, 1, 8, 8)
    u[0, 0, 2:4, 2:4] = 4.0  # a 2x2 hot spot of mean 4 in image 0
    support = torch.ones_like(u, dtype=torch.bool)
    assert M.image_scores(u, support)[0] == pytest.approx(16 / 64)
    assert M.image_scores(u, support, "q95")[0] == pytest.approx(
        float(torch.quantile(u[0].flatten(), 0.95)))
    assert M.image_scores(u, support, "local_max", window=2)[0] == pytest.approx(4.0)
    assert M.image_scores(u, support, "local_max", window=4)[0] == pytest.approx(1.0)
    assert M.image_scores(u, support, "local_max", window=2)[1] == 0.0  # constant
    empty = torch.zeros_like(support)
    for statistic in M.IMAGE_STATISTICS:
        assert math.isnan(M.image_scores(u, empty, statistic, window=2)[0])
    with pytest.raises(ValueError, match="statistic"):
        M.image_scores(u, support, "median")
    # placements: each perturbed score's share of clean scores below it (ties 1/2)
    clean = torch.tensor([1.0, 2.0, 3.0, 4.0])
    perturbed = torch.tensor([0.0, 2.0, 5.0, 5.0])
    placements = M.image_placements(clean, perturbed)
    assert placements.tolist() == [0.0, 0.375, 1.0, 1.0]
    assert float(placements.mean()) == pytest.approx(M.image_auroc(clean, perturbed))


def test_sobel_magnitude_matches_scikit_image_up_to_scale():
    skimage = pytest.importorskip("skimage.filters")
    torch.manual_seed(0)
    image = torch.rand(1, 1, 9, 9, dtype=torch.float64)
    ours = sobel_magnitude(image)[0, 0, 1:-1, 1:-1].numpy()  # borders: different conventions
    theirs = skimage.sobel(image[0, 0].numpy())[1:-1, 1:-1]
    np.testing.assert_allclose(ours, 4 * math.sqrt(2) * theirs, rtol=1e-10)
    step = torch.zeros(1, 1, 8)
    step[..., 4:] = 1.0
    assert sobel_magnitude(step)[0, 0].tolist() == [0, 0, 1, 3, 3, 1, 0, 0]
    assert float(sobel_magnitude(torch.ones(1, 1, 5, 5)).abs().max()) == 0.0


def test_body_support_on_a_phantom():
    phantom = shepp_logan(64)[None, None].float()
    support = body_support(phantom)
    inside = phantom > 0.01
    assert bool(support[inside].all())  # every object pixel ...
    assert bool((support & ~inside).any())  # ... plus a rim
    cols = torch.nonzero(support[0, 0].any(0)).flatten()
    object_cols = torch.nonzero(inside[0, 0].any(0)).flatten()
    assert int(cols.min()) == int(object_cols.min()) - 3
    assert int(cols.max()) == int(object_cols.max()) + 3
    assert not bool(support[0, 0, 0, 0])  # the corners are air
    square = torch.zeros(1, 1, 16, 16)
    square[..., 6:10, 6:10] = 0.5  # a 4x4 object grows to 10x10
    grown = body_support(square)
    assert int(grown.sum()) == 100 and bool(grown[..., 3:13, 3:13].all())
    assert int(body_support(square, dilation=0).sum()) == 16
    assert not bool(body_support(torch.zeros(1, 1, 16, 16)).any())
    assert bool(signal_support(torch.randn(2, 1, 10)).all())


def test_interval_loss_reports_coverage_on_the_support():
    lo, hi = torch.zeros(1, 4), torch.ones(1, 4)
    y = torch.tensor([[0.5, 2.0, 0.0, 0.0]])
    support = torch.tensor([[True, True, False, False]])
    loss, parts = interval_loss(Interval(lo, hi), y, 0.1)
    loss_s, parts_s = interval_loss(Interval(lo, hi), y, 0.1, support)
    assert float(parts["coverage"]) == pytest.approx(0.75)
    assert float(parts_s["coverage"]) == pytest.approx(0.5)
    assert float(loss_s) == float(loss)  # the objective itself is unchanged
    with pytest.raises(ValueError, match="support: expected a bool mask"):
        interval_loss(Interval(lo, hi), y, 0.1, support.float())


def test_per_image_auroc_equals_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    u = torch.from_numpy(scores).reshape(1, 1, 200)
    mask = torch.from_numpy(labels).reshape(1, 1, 200)
    assert M.pixel_auroc_per_image(u, mask)[0] == pytest.approx(roc_auc_score(labels, scores))
