"""The study's building blocks: the per-case metrics on hand-made predictions, and each problem's
failure cases (seeded, masks where the change is)."""

import pytest
import torch

from inn_cuda.experiment import make_settings
from inn_cuda.experiment.evaluate import case_metrics
from inn_cuda.experiment.methods import Method, Prediction
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
    assert r["pixel_aupr"] == pytest.approx(1.0)
    assert r["rmse"] == pytest.approx(float(error.square().mean().sqrt()), rel=1e-6)
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
    assert r["direction_accuracy"]["2"] == pytest.approx(1.0)
    assert r["direction_fraction"]["2"] == pytest.approx(1.0)
    symmetric = Prediction(pred.rec, pred.rec - unc, pred.rec + unc, unc)
    s = case_metrics(SYMMETRIC, symmetric, targets)
    assert s["direction_accuracy"]["1"] == pytest.approx(0.5)
    assert s["direction_accuracy"]["2"] is None  # no pixel qualifies
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
