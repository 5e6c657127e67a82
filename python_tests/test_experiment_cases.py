"""The study's building blocks: the per-case metrics on hand-made predictions, and each problem's
failure cases (seeded, masks where the change is)."""

import pytest
import torch

from inn_cuda.experiment import make_settings
from inn_cuda.experiment.evaluate import case_metrics, image_detection
from inn_cuda.experiment.methods import Method, Prediction, control_methods
from inn_cuda.experiment.problems import NonNegativeOutput, make_problem

INTERVAL = Method("INN", None, symmetric=False, has_interval=True)
SYMMETRIC = Method("MCDROP", None, symmetric=True, has_interval=False)


def _prediction(error_scale, uncertainty, offset=0.0):
    torch.manual_seed(0)
    targets = torch.rand(3, 1, 8, 8)
    rec = targets + error_scale
    return targets, Prediction(rec, rec - offset - uncertainty, rec + uncertainty, uncertainty)


def test_uncertainty_equal_to_the_error_scores_perfectly():
    torch.manual_seed(1)
    error = torch.rand(3, 1, 8, 8) + 0.01
    targets, pred = _prediction(error, error, offset=1e-3)
    mask = error > error.median()
    r = case_metrics(INTERVAL, pred, targets, mask)
    assert r["spearman"] == pytest.approx(1.0)
    assert r["pearson"] == pytest.approx(1.0)
    assert r["cosine"] == pytest.approx(1.0)
    assert r["ause"] == pytest.approx(0.0, abs=1e-12)
    assert r["pixel_auroc"] == pytest.approx(1.0)
    assert r["all_pixels"]["pixel_aupr_pooled"] == pytest.approx(1.0)
    assert len(r["per_image"]["spearman"]) == 3  # every per-image value is kept
    # the mean over images of each image's RMSE
    assert r["rmse"] == pytest.approx(float(error.square().mean((1, 2, 3)).sqrt().mean()),
                                      rel=1e-6)
    # rec = target + error, lo = rec - error - 1e-3: the target lies inside [lo, hi]
    assert r["coverage"] == pytest.approx(1.0)
    assert r["mean_width"] == pytest.approx(float(2 * error.mean()) + 1e-3, rel=1e-5)


def test_direction_and_interval_metrics_by_method_kind():
    torch.manual_seed(2)
    unc = torch.rand(3, 1, 8, 8) + 0.1
    # rec above the target by 0.05; the interval reaches 3x further down than up: it points at
    # the target everywhere
    targets, pred = _prediction(0.05, unc, offset=2 * unc)
    r = case_metrics(INTERVAL, pred, targets)
    assert r["direction_accuracy_by_ratio"]["2"] == pytest.approx(1.0)
    assert r["direction_fraction_by_ratio"]["2"] == pytest.approx(1.0)
    assert r["direction_accuracy"] == pytest.approx(1.0)
    assert r["direction_base_rate"] == pytest.approx(1.0)  # the target is always below
    assert r["direction_balanced_accuracy"] is None and r["direction_auroc"] is None
    symmetric = Prediction(pred.rec, pred.rec - unc, pred.rec + unc, unc)
    s = case_metrics(SYMMETRIC, symmetric, targets)
    assert s["direction_accuracy_by_ratio"]["1"] == pytest.approx(0.5)
    assert s["direction_accuracy_by_ratio"]["2"] is None  # no pixel qualifies
    assert s["direction_accuracy"] == pytest.approx(0.5)
    assert s["coverage"] is None and s["mean_width"] is None
    assert "pixel_auroc" not in s  # no mask, no detection metrics


@pytest.mark.parametrize("task", ["ct", "deconv1d"])
def test_failure_cases_are_seeded_and_masked(task):
    problem = make_problem(make_settings(task, "tiny"))
    train, val, test = problem.splits()
    assert len(train) == problem.settings.n_train and len(test) == problem.settings.n_test
    assert test.inputs.shape == test.targets.shape
    assert test.inputs.ndim == 2 + problem.spatial_dims

    first = problem.noisy_inputs(test, 0.05, seed=3)
    assert torch.equal(first, problem.noisy_inputs(test, 0.05, seed=3))
    assert not torch.equal(first, problem.noisy_inputs(test, 0.05, seed=4))
    quiet = problem.noisy_inputs(test, 1e-3, seed=3)
    loud = problem.noisy_inputs(test, 1e-1, seed=3)
    assert (loud - test.inputs).abs().mean() > (quiet - test.inputs).abs().mean()

    rec = test.targets.clone()
    adv = problem.adversarial_target(rec, seed=5)
    assert adv.mask.shape == (len(test), 1, *rec.shape[2:])
    change = (adv.target - rec).abs()
    inside = adv.mask.expand_as(rec)
    assert bool(inside.any()) and not bool(inside.all())
    # outside the mask the target differs from rec by at most 1% of the blob's depth
    assert float(change[~inside].max()) <= 0.01 * float(change.max()) + 1e-6

    case = problem.artifact_case(test, seed=7)
    again = problem.artifact_case(test, seed=7)
    assert torch.equal(case.mask, again.mask) and torch.equal(case.input, again.input)
    assert not torch.equal(case.mask, problem.artifact_case(test, seed=8).mask)
    assert bool(case.mask.any())
    truth_changed = (case.ground_truth - test.truth).abs() > 1e-6
    if task == "ct":  # noiseless: the ground truth changes only under the footprint
        assert not bool((truth_changed & ~case.mask).any())


def test_nonnegative_output_clamps_in_eval_mode_only_and_converts():
    import inn_cuda
    from inn_cuda.baselines import ProbOut
    from inn_cuda.tasks import UNet

    torch.manual_seed(0)
    net = UNet(width=2, depth=1, dropout=0.1)
    with torch.no_grad():
        net.head.bias.fill_(-0.05)  # some outputs negative
    model = NonNegativeOutput(net)
    x = torch.rand(2, 1, 8, 8)
    torch.manual_seed(1)
    raw = net(x)
    assert bool((raw < 0).any())
    model.train()
    torch.manual_seed(1)  # the same dropout masks
    assert torch.equal(model(x), raw)  # training sees the raw output
    model.eval()
    net.eval()
    assert torch.equal(model(x), net(x).clamp(min=0))
    assert model.head is net.head
    mu = ProbOut(model).eval()(x)[:, :1]
    assert torch.equal(mu, model(x))
    inn = inn_cuda.to_interval(model, last=2)
    out = inn(x)
    assert torch.equal(out.point, model(x)) and bool((out.lo >= 0).all())


def test_support_controls_and_image_detection():
    """Metrics on the support only; the clean-image control and the change map beside the pixel
    AUROC; image-level placements and rises from the per-image scores."""
    torch.manual_seed(3)
    targets = torch.rand(4, 1, 8, 8)
    support = torch.zeros_like(targets, dtype=torch.bool)
    support[..., 2:6, 2:6] = True
    mask = torch.zeros_like(support)
    mask[..., 3:5, 3:5] = True
    clean_unc = mask.double().float()  # the clean map already marks the region ...
    unc = clean_unc + 2.0 * mask  # ... and the perturbed one rises there
    unc[..., 0, 0] = 10.0  # outside the support: must not count
    pred = Prediction(targets, targets - unc, targets + unc, unc)
    clean = case_metrics(INTERVAL, Prediction(targets, targets - clean_unc, targets + clean_unc,
                                              clean_unc), targets, support=support)
    r = case_metrics(INTERVAL, pred, targets, mask, support=support, clean_uncertainty=clean_unc)
    assert r["pixel_auroc"] == pytest.approx(1.0)
    assert r["pixel_auroc_clean_control"] == pytest.approx(1.0)  # the control is as good
    assert r["pixel_auroc_change"] == pytest.approx(1.0)
    assert r["all_pixels"]["pixel_auroc"] < 1.0  # the corner outscores the region off-support
    assert r["coverage"] == pytest.approx(1.0)
    assert r["mean_uncertainty"] == pytest.approx(float(unc[support].mean()))
    detection = image_detection(clean, r)
    assert detection["mean"]["auroc"] == pytest.approx(1.0)
    assert detection["mean"]["rise_share"] == pytest.approx(1.0)
    assert r["per_image"]["placement_local_max"] == [1.0] * 4


def test_control_maps_are_the_reconstruction_and_its_edges():
    net = torch.nn.Conv2d(1, 1, 1, bias=False)
    torch.nn.init.ones_(net.weight)
    edge, intensity = control_methods(net)
    x = torch.zeros(1, 1, 6, 6)
    x[..., 3:] = 1.0
    e, i = edge.predict(x), intensity.predict(x)
    assert edge.control and intensity.control and not edge.has_interval
    assert torch.equal(i.uncertainty, x) and torch.equal(i.lo, i.rec) and torch.equal(i.hi, i.rec)
    assert float(e.uncertainty[0, 0, 0, 0]) == 0.0 and float(e.uncertainty[0, 0, 0, 3]) > 0
