"""Fitting interval offsets: coverage calibration, the beta rules, the invariants of the fit
(offsets >= 0, point inside the interval, frozen weights untouched), dropout handling and exact
resume."""

import math

import pytest
import torch
from torch import nn

import inn_cuda
import inn_cuda.nn
from inn_cuda.nn import Interval
from inn_cuda.train import BetaSchedule, CheckpointError, fit_intervals, fit_point, interval_loss
from inn_cuda.train import checkpoint as ckpt

from torch.utils.data import DataLoader

from inn_cuda.uncertainty import uncertainty_over_loader

from train_helpers import denoising_data, loaders, point_denoiser, point_mlp


@pytest.fixture(scope="module")
def trained_point_mlp():
    """A point network fitted to the synthetic task (its error is what intervals must cover)."""
    train, val = loaders(n_train=512)
    model = point_mlp()
    fit_point(model, train, val, epochs=25, lr=1e-2, seed=0, progress=False)
    return model


def _frozen_state(model):
    offsets = {id(p) for p in inn_cuda.nn.offset_parameters(model)}
    names = {n for n, p in model.named_parameters() if id(p) in offsets}
    return {k: v.clone() for k, v in model.state_dict().items() if k not in names}


def _offsets(model):
    return [p.detach().clone() for p in inn_cuda.nn.offset_parameters(model)]


# ------------------------------------------------------------------------------- objective

def test_interval_loss_matches_the_formula():
    lo = torch.tensor([[0.0, 1.0, -1.0, 2.0]])
    hi = torch.tensor([[1.0, 3.0, 0.5, 2.5]])
    y = torch.tensor([[0.5, 0.0, 1.5, 2.0]])
    loss, parts = interval_loss(Interval(lo, hi), y, beta=0.5)
    hinge = (0 + 1.0 ** 2 + 1.0 ** 2 + 0) / 4  # y below lo by 1; y above hi by 1
    width = (1 + 2 + 1.5 + 0.5) / 4
    assert parts["hinge"].item() == pytest.approx(hinge)
    assert parts["width"].item() == pytest.approx(width)
    assert parts["coverage"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(hinge + 0.5 * width)
    assert loss.dtype == torch.float32
    half, _ = interval_loss(Interval(lo.half(), hi.bfloat16()), y.half(), beta=0.5)
    assert half.dtype == torch.float32 and half.item() == pytest.approx(loss.item())
    loss64, _ = interval_loss(Interval(lo.double(), hi.double()), y.double(), beta=0.5)
    assert loss64.dtype == torch.float64
    with pytest.raises(ValueError, match="shape"):
        interval_loss(Interval(lo, hi), y[:, :2], beta=0.5)
    with pytest.raises(TypeError, match="Interval"):
        interval_loss(lo, y, beta=0.5)


def test_calibration_rule_is_a_bisection_on_log_beta():
    schedule = BetaSchedule(1.0, 0.9, factor=4.0, tolerance=0.01)
    values = []
    for coverage in [0.99, 0.95, 0.8, 0.85, 0.84, 0.95, 0.905]:
        schedule.update(coverage)
        values.append(schedule.value)
    # too wide: x4; closing in fast (0.09 -> 0.05 off): hold; crossed: the log step halves, /2;
    # closing in: hold; no longer closing in: /2; crossed: x sqrt(2); within tolerance: hold.
    expected = [4.0, 4.0, 2.0, 2.0, 1.0, math.sqrt(2), math.sqrt(2)]
    assert values == pytest.approx(expected)
    fixed = BetaSchedule(0.3, None, factor=4.0, tolerance=0.01)
    fixed.update(0.1)
    assert fixed.value == 0.3


@pytest.mark.parametrize("bad, match", [
    (dict(beta=-1.0), "beta"), (dict(beta="auto"), "beta"), (dict(target_coverage=1.5), "target"),
    (dict(calibration_factor=1.0), "calibration_factor"),
])
def test_bad_beta_settings_are_named(bad, match, trained_point_mlp):
    train, val = loaders()
    with pytest.raises(ValueError, match=match):
        fit_intervals(inn_cuda.to_interval(trained_point_mlp), train, val, epochs=1,
                      progress=False, **bad)


def test_calibration_needs_validation_data(trained_point_mlp):
    train, _ = loaders()
    with pytest.raises(ValueError, match="val_loader"):
        fit_intervals(inn_cuda.to_interval(trained_point_mlp), train, target_coverage=0.9,
                      progress=False)


def test_model_without_offsets_is_refused():
    train, _ = loaders()
    with pytest.raises(ValueError, match="no interval offsets"):
        fit_intervals(point_mlp(), train, beta=0.1, progress=False)


# ------------------------------------------------------------------------- fitting behaviour

@pytest.mark.slow
@pytest.mark.parametrize("target", [0.8, 0.95])
def test_calibration_reaches_the_target_coverage(target, trained_point_mlp):
    train, val = loaders(n_train=512)
    model = inn_cuda.to_interval(trained_point_mlp)
    frozen = _frozen_state(model)
    result = fit_intervals(model, train, val, target_coverage=target, epochs=12, seed=0,
                           progress=False)
    assert abs(result.coverage - target) <= 0.03, result.history
    assert result.coverage == result.history[-1]["val_coverage"]
    assert result.coverage_on == "val" and result.target_coverage == target
    assert result.beta == result.history[-1]["beta"]
    assert len({round(r["beta"], 12) for r in result.history}) > 1, "beta never moved"

    for offset in inn_cuda.nn.offset_parameters(model):
        assert bool((offset >= 0).all())
    after = model.state_dict()
    for key, value in frozen.items():
        assert torch.equal(after[key], value), f"frozen {key} changed"

    x, y = val.dataset.tensors
    with torch.no_grad():
        out = model(x)
    tol = 1e-5 * (1 + out.point.abs())
    assert bool(((out.point >= out.lo - tol) & (out.point <= out.hi + tol)).all())
    measured = ((y >= out.lo) & (y <= out.hi)).float().mean().item()
    assert measured == pytest.approx(result.coverage, abs=1e-6)


@pytest.mark.slow
def test_larger_beta_gives_narrower_intervals(trained_point_mlp):
    train, val = loaders()
    widths, coverages = [], []
    for beta in [1e-3, 4e-3, 1.6e-2, 6.4e-2]:
        result = fit_intervals(inn_cuda.to_interval(trained_point_mlp), train, val, beta=beta,
                               epochs=6, seed=0, progress=False)
        widths.append(result.width)
        coverages.append(result.coverage)
        assert all(r["beta"] == beta for r in result.history)
    assert all(a > b for a, b in zip(widths, widths[1:])), widths
    assert all(a >= b for a, b in zip(coverages, coverages[1:])), coverages


def test_adaptive_beta_is_a_tenth_of_the_point_error(trained_point_mlp):
    train, val = loaders()
    x, y = val.dataset.tensors
    with torch.no_grad():
        mae = (trained_point_mlp(x) - y).abs().mean().item()
    result = fit_intervals(inn_cuda.to_interval(trained_point_mlp), train, val, epochs=1,
                           progress=False)
    start = result.history[0]
    assert start["epoch"] == 0 and start["val_point_mae"] == pytest.approx(mae, rel=1e-5)
    assert start["val_width"] == 0.0
    assert result.beta == pytest.approx(0.1 * mae, rel=1e-5)
    # without validation data the rule measures on the training data
    no_val = fit_intervals(inn_cuda.to_interval(trained_point_mlp), train, epochs=1,
                           progress=False)
    assert no_val.coverage_on == "train" and "train_point_mae" in no_val.history[0]


@pytest.mark.slow
def test_conv_denoiser_with_intervals_in_its_last_layers():
    """The paper's setting in small: a trained conv net, intervals in the last 2 of its 3
    convolutions (the first runs once in point mode), calibrated to 90 % pixel coverage."""
    train = DataLoader(denoising_data(128, seed=0, size=8), batch_size=8, shuffle=True)
    val = DataLoader(denoising_data(64, seed=1, size=8), batch_size=32)
    point = point_denoiser(channels=4)
    fit_point(point, train, val, epochs=5, lr=3e-3, seed=0, progress=False)
    model = inn_cuda.to_interval(point, last=2)
    assert len(list(inn_cuda.nn.offset_parameters(model))) == 2 * 4  # weight, bias x lo, hi
    frozen = _frozen_state(model)
    result = fit_intervals(model, train, val, target_coverage=0.9, epochs=10, seed=0,
                           progress=False)
    assert abs(result.coverage - 0.9) <= 0.05, result.history
    after = model.state_dict()
    for key, value in frozen.items():
        assert torch.equal(after[key], value), f"frozen {key} changed"
    assert all(bool((p >= 0).all()) for p in inn_cuda.nn.offset_parameters(model))

    maps = uncertainty_over_loader(model, val, keep_maps=True, progress=False).maps
    x, y = val.dataset.tensors
    with torch.no_grad():
        out = model(x)
    assert maps.width.shape == y.shape and bool((maps.width > 0).any())
    tol = 1e-5 * (1 + out.point.abs())
    assert bool((maps.below >= -tol).all()) and bool((maps.above >= -tol).all())
    with torch.no_grad():
        torch.testing.assert_close(out.point, point(x))


class _TokenAttention(nn.Module):
    """The regression features as 4 tokens through one MultiheadAttention."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(1, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h = self.embed(x.unsqueeze(-1))
        return self.head(self.attn(h, h, h, need_weights=False)[0].mean(1))


def test_attention_projection_offsets_are_fitted_like_any_layers():
    model = inn_cuda.to_interval(_TokenAttention())
    attention = list(model.attn.offsets())
    assert len(attention) == 8 and all(float(p.detach().abs().max()) == 0 for p in attention)
    frozen = _frozen_state(model)
    train, _ = loaders(n_train=64)
    fit_intervals(model, train, beta=0.01, epochs=1, seed=0, progress=False)
    assert all(float(p.detach().min()) >= 0 for p in attention)
    assert all(float(p.detach().max()) > 0 for p in attention), "an offset never moved"
    after = model.state_dict()
    for key, value in frozen.items():
        assert torch.equal(after[key], value), f"frozen {key} changed"


def _record_dropout_modes(model):
    modes = []
    for module in model.modules():
        if "dropout" in type(module).__name__.lower():
            module.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    return modes


@pytest.mark.parametrize("dropout", [False, True])
def test_dropout_is_off_while_fitting_unless_asked(dropout):
    torch.manual_seed(0)
    point = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    # checked now, not by an extra (eval-mode) pass on the first call that would be recorded
    model = inn_cuda.to_interval(point, example_inputs=torch.randn(2, 4))
    model.train()
    modes = _record_dropout_modes(model)
    train, _ = loaders(n_train=64)
    fit_intervals(model, train, beta=0.01, epochs=1, dropout=dropout, progress=False)
    assert len(modes) == 2 and set(modes) == {dropout}  # 2 steps, no evaluation pass
    assert all(m.training for m in model.modules()), "the caller's train mode was not restored"


def test_resume_equals_uninterrupted_calibrated_fit(tmp_path, trained_point_mlp):
    """Offsets, beta state and history after 'stop after epoch 2, resume to 4' equal those of a
    4-epoch run, with shuffling by a loader generator and the calibration moving beta."""
    def fit(epochs, run_dir, resume=False, model=None):
        train, val = loaders(generator=torch.Generator().manual_seed(3))
        model = model or inn_cuda.to_interval(trained_point_mlp)
        return model, fit_intervals(model, train, val, target_coverage=0.9, epochs=epochs,
                                    run_dir=run_dir, resume=resume, seed=1, progress=False)

    whole, expected = fit(4, tmp_path / "whole")
    fit(2, tmp_path / "split")
    resumed, result = fit(4, tmp_path / "split", resume=True)
    for a, b in zip(_offsets(whole), _offsets(resumed)):
        assert torch.equal(a, b)
    drop_time = [{k: v for k, v in r.items() if k != "time_s"} for r in expected.history]
    assert [{k: v for k, v in r.items() if k != "time_s"} for r in result.history] == drop_time
    assert (result.beta, result.coverage) == (expected.beta, expected.coverage)
    saved = [ckpt.read_checkpoint(tmp_path / d / "checkpoint.pt")["state"]
             for d in ("whole", "split")]
    assert saved[0] == saved[1]


def test_resume_with_other_beta_settings_is_refused(tmp_path, trained_point_mlp):
    train, val = loaders()
    fit_intervals(inn_cuda.to_interval(trained_point_mlp), train, val, beta=0.01, epochs=1,
                  run_dir=tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    model = inn_cuda.to_interval(trained_point_mlp)
    with pytest.raises(CheckpointError, match="beta settings"):
        fit_intervals(model, train, val, beta=0.02, epochs=2, run_dir=tmp_path, resume=True,
                      progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert all(float(p.abs().max()) == 0 for p in _offsets(model))
    with pytest.raises(CheckpointError, match="kind: checkpoint has 'intervals'"):
        fit_point(trained_point_mlp, train, epochs=2, run_dir=tmp_path, resume=True,
                  progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible")
@pytest.mark.parametrize("autocast", [None, "bf16", "fp16"])
def test_interval_fit_on_cuda(autocast, trained_point_mlp):
    train, val = loaders()
    model = inn_cuda.to_interval(trained_point_mlp)
    result = fit_intervals(model, train, val, beta=0.01, epochs=3, device="cuda",
                           autocast=autocast, seed=0, progress=False)
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(bool((p >= 0).all()) for p in inn_cuda.nn.offset_parameters(model))
    assert result.width > 0 and math.isfinite(result.history[-1]["train_loss"])
