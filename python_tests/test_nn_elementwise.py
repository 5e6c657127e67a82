"""Interval modules without weights: order-preserving maps, the exact valley activations
(GELU, SiLU, Mish, Hardswish) against dense sampling, BatchNorm of either sign, shared-mask
dropout."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inn_cuda.nn as inn
from inn_cuda.nn import elementwise
from helpers import sample_inside


def random_interval(shape, spread=3.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lo = spread * torch.randn(shape, dtype=torch.float64, generator=generator)
    hi = lo + spread * torch.rand(shape, dtype=torch.float64, generator=generator) ** 2
    return inn.Interval(lo, hi, sample_inside(lo, hi, generator))


MONOTONE = [nn.ReLU(), nn.LeakyReLU(0.2), nn.ELU(), nn.SELU(), nn.CELU(0.5), nn.Sigmoid(),
            nn.Tanh(), nn.Softplus(beta=2), nn.Hardtanh(-0.5, 2.0), nn.ReLU6(),
            nn.Hardsigmoid(), nn.LogSigmoid(), nn.Softsign(), nn.Tanhshrink(), nn.Softshrink(),
            nn.Hardshrink(), nn.Threshold(0.1, -1.0), nn.PReLU(init=0.3),
            nn.MaxPool2d(2), nn.AvgPool2d(3, stride=1, padding=1), nn.AdaptiveAvgPool2d(3),
            nn.AdaptiveMaxPool2d(2), nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
            nn.Flatten(), nn.PixelShuffle(2), nn.ReflectionPad2d(1), nn.ConstantPad2d(1, -2.0)]


@pytest.mark.parametrize("fn", MONOTONE, ids=lambda m: type(m).__name__)
def test_monotone_maps_contain_sampled_inputs_and_keep_the_point_exact(fn):
    fn = fn.double()
    x = random_interval((2, 4, 6, 6))
    out = inn.IntervalMonotone(fn)(x)
    with torch.no_grad():
        assert torch.equal(out.point, fn(x.point))
        assert bool((out.lo <= out.hi).all())
        generator = torch.Generator().manual_seed(1)
        for _ in range(3):
            assert bool(out.contains(fn(sample_inside(x.lo, x.hi, generator))).all())
        assert torch.equal(inn.IntervalMonotone(fn)(x.point), fn(x.point))  # tensor in, out


def test_monotone_checks_and_in_place_modules():
    for fn, words in [(nn.LeakyReLU(-0.1), "negative_slope"), (nn.ELU(-1.0), "alpha"),
                      (nn.Threshold(0.0, 1.0), "value 1.0 > threshold"),
                      (nn.MaxPool1d(2, return_indices=True), "return_indices"),
                      (nn.Upsample(scale_factor=2, mode="bicubic"), "bicubic")]:
        with pytest.raises(ValueError, match=words):
            inn.IntervalMonotone(fn)
    relu = nn.ReLU(inplace=True)
    wrapped = inn.IntervalMonotone(relu)
    assert relu.inplace and not wrapped.fn.inplace
    x = torch.randn(10)
    kept = x.clone()
    out = wrapped(inn.Interval.from_point(x))
    assert torch.equal(x, kept) and out.hi is out.lo and out.point is out.lo


def test_degenerate_intervals_are_mapped_once():
    calls = []

    class Counting(nn.Module):
        def forward(self, t):
            calls.append(1)
            return t * 2

    out = inn.IntervalMonotone(Counting())(inn.Interval.from_point(torch.ones(3)))
    assert len(calls) == 1 and out.lo is out.hi is out.point


VALLEYS = [(nn.GELU(), elementwise.GELU_ARGMIN), (nn.GELU("tanh"), elementwise.GELU_TANH_ARGMIN),
           (nn.SiLU(), elementwise.SILU_ARGMIN), (nn.Mish(), elementwise.MISH_ARGMIN),
           (nn.Hardswish(), elementwise.HARDSWISH_ARGMIN)]
VALLEY_IDS = ["gelu", "gelu-tanh", "silu", "mish", "hardswish"]


@pytest.mark.parametrize("fn, argmin", VALLEYS, ids=VALLEY_IDS)
def test_valley_argmin_is_the_minimum(fn, argmin):
    x = torch.tensor(argmin, dtype=torch.float64, requires_grad=True)
    fn(x).backward()
    assert abs(float(x.grad)) < 1e-12
    around = argmin + torch.linspace(-2, 2, 4001, dtype=torch.float64)
    assert float(fn(around).min()) >= float(fn(torch.tensor(argmin, dtype=torch.float64))) - 1e-15


@pytest.mark.parametrize("fn, argmin", VALLEYS, ids=VALLEY_IDS)
def test_valley_bounds_are_exact_against_dense_sampling(fn, argmin):
    generator = torch.Generator().manual_seed(0)
    lo = torch.cat([4 * torch.randn(200, dtype=torch.float64, generator=generator),
                    torch.tensor([argmin - 0.5, argmin, argmin + 1e-3, -6.0, 1.0],
                                 dtype=torch.float64)])
    width = torch.cat([2 * torch.rand(200, dtype=torch.float64, generator=generator),
                       torch.tensor([1.0, 0.0, 0.2, 3.0, 0.5], dtype=torch.float64)])
    out = inn.IntervalValley(fn)(inn.Interval(lo, lo + width, lo + width / 3))
    grid = lo[:, None] + width[:, None] * torch.linspace(0, 1, 2001, dtype=torch.float64)
    values = fn(grid)
    sampled_min, sampled_max = values.min(1).values, values.max(1).values
    assert torch.equal(out.point, fn(lo + width / 3))
    rounding = 4 * torch.finfo(torch.float64).eps * (1 + values.abs().max(1).values)
    assert bool((out.lo <= sampled_min + rounding).all())
    assert bool((out.hi >= sampled_max - rounding).all())
    # tight: the grid misses the minimum by at most half a step, and hits the maximum (an end)
    assert float((sampled_min - out.lo).max()) < 1e-6
    assert bool((out.hi - sampled_max <= rounding).all())


def test_valley_on_float32_and_degenerate_input():
    x = torch.linspace(-4, 4, 101)
    out = inn.IntervalValley(nn.GELU())(inn.Interval.from_point(x))
    assert out.lo is out.hi and torch.equal(out.lo, F.gelu(x))
    with pytest.raises(TypeError, match="supports GELU, SiLU, Mish and Hardswish"):
        inn.IntervalValley(nn.ReLU())


@pytest.mark.parametrize("bn, shape", [(nn.BatchNorm1d(3), (4, 3)), (nn.BatchNorm1d(3), (2, 3, 5)),
                                       (nn.BatchNorm2d(3), (2, 3, 4, 4)),
                                       (nn.BatchNorm3d(3), (1, 3, 2, 2, 2))])
def test_batchnorm_any_sign_scale(bn, shape):
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -2.0, 0.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 0.0]))
        bn.running_var.copy_(torch.tensor([2.0, 0.5, 1.0]))
    bn = bn.double().eval()
    layer = inn.IntervalBatchNorm.from_module(bn)
    x = random_interval(shape)
    with torch.no_grad():
        out = layer(x)
        assert torch.equal(out.point, bn(x.point))
        assert bool((out.lo <= out.hi).all())
        generator = torch.Generator().manual_seed(2)
        for _ in range(3):
            assert bool(out.contains(bn(sample_inside(x.lo, x.hi, generator))).all())
        # the bounds are attained: at lo (or hi, where the scale is negative)
        assert torch.allclose(torch.minimum(bn(x.lo), bn(x.hi)), out.lo)
        layer.train()  # running statistics in train mode too, never updated
        assert torch.equal(layer(x).lo, out.lo)
        assert torch.equal(layer.running_mean, bn.running_mean)


def test_batchnorm_errors_and_state_dict_names():
    with pytest.raises(ValueError, match="track_running_stats=False"):
        inn.IntervalBatchNorm.from_module(nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(TypeError, match="expects an nn.BatchNorm"):
        inn.IntervalBatchNorm.from_module(nn.LayerNorm(2))
    bn = nn.BatchNorm2d(2)
    layer = inn.IntervalBatchNorm.from_module(bn)
    assert set(layer.state_dict()) == set(bn.state_dict())
    assert not any(p.requires_grad for p in layer.parameters())
    with pytest.raises(ValueError, match="rank 4"):
        layer(torch.randn(2, 2))


def test_dropout_shares_one_mask_and_is_off_in_eval():
    torch.manual_seed(0)
    x = random_interval((4, 3, 5, 5))
    x = inn.Interval(x.lo.abs() + 1, x.hi.abs() + 2, x.point.abs() + 1.5)
    layer = inn.IntervalDropout.from_module(nn.Dropout(0.4))
    assert layer.training
    out = layer(x)
    zeros = out.point == 0
    assert bool(zeros.any()) and bool((~zeros).any())
    assert torch.equal(out.lo == 0, zeros) and torch.equal(out.hi == 0, zeros)
    assert torch.allclose(out.point[~zeros], x.point[~zeros] / 0.6)
    channel = inn.IntervalDropout.from_module(nn.Dropout2d(0.5))(x)
    dropped = (channel.point == 0).flatten(2)
    assert bool((dropped.all(2) | (~dropped).all(2)).all())  # whole channels
    layer.eval()
    assert layer(x) is x
    assert inn.IntervalDropout(1.0)(x).hi.abs().max() == 0
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        inn.IntervalDropout(1.5)
