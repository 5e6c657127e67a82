"""Sign tracking of clamp/clip/hardtanh (every branch of the rule: non-negative iff max is absent
or >= 0, and min >= 0 or the input is non-negative) and PReLU of any slope (exact valley rule)."""

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inn_cuda
import inn_cuda.nn as inn
from inn_cuda.convert import describe, to_interval
from inn_cuda.nn import functional as IF


class Clamped(nn.Module):
    def __init__(self, fn, nonneg_input):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.out = nn.Linear(3, 2)
        self.fn, self.nonneg_input = fn, nonneg_input

    def forward(self, x):
        h = self.fc(x)
        if self.nonneg_input:
            h = torch.relu(h)
        return self.out(self.fn(h))


BOUNDS = [None, -1.0, 0.0, 2.0]
CLAMPS = {
    "torch.clamp": lambda lo, hi: (lambda h: torch.clamp(h, lo, hi)),
    "Tensor.clamp": lambda lo, hi: (lambda h: h.clamp(min=lo, max=hi)),
    "torch.clip": lambda lo, hi: (lambda h: torch.clip(h, lo, hi)),
}


def _expected(low, high, nonneg_input):
    return (high is None or high >= 0) and ((low is not None and low >= 0) or nonneg_input)


@pytest.mark.parametrize("name", list(CLAMPS))
@pytest.mark.parametrize("low, high, nonneg_input", [
    (low, high, s) for low, high, s in itertools.product(BOUNDS, BOUNDS, [False, True])
    if low is not None or high is not None])
def test_clamp_sign_rule_every_branch(name, low, high, nonneg_input):
    torch.manual_seed(0)
    model = Clamped(CLAMPS[name](low, high), nonneg_input).double().eval()
    x = torch.randn(64, 3, dtype=torch.float64)
    interval_model = to_interval(model, example_inputs=x)
    expected = _expected(low, high, nonneg_input)
    assert interval_model.out.input_nonneg is expected
    if not expected:
        return
    with torch.no_grad():  # the claim holds: bounds of the clamp are >= 0
        for layer in inn.interval_layers(interval_model):
            layer.weight_offset_lo.fill_(0.3)
            layer.weight_offset_hi.fill_(0.3)
        interval_model(x)  # input_nonneg=True checks x_lo >= 0 at the fast path


@pytest.mark.parametrize("low, high, nonneg_input", [
    (-1.0, 1.0, False), (0.0, 6.0, False), (-1.0, -0.5, True), (-1.0, 2.0, True),
    (0.5, 2.0, False)])
def test_hardtanh_sign_rule(low, high, nonneg_input):
    for fn in (nn.Hardtanh(low, high), lambda h: F.hardtanh(h, low, high)):
        model = Clamped(fn, nonneg_input).double().eval()
        interval_model = to_interval(model)
        assert interval_model.out.input_nonneg is _expected(low, high, nonneg_input)


def test_clamp_with_max_below_zero_is_not_claimed_nonneg_and_stays_ordered():
    """The reported defect: clamp(relu(h), max=-1) is <= -1, never >= 0."""
    model = Clamped(lambda h: torch.clamp(h, max=-1.0), True).double().eval()
    interval_model = to_interval(model)
    report = {r.name: r.nonneg for r in describe(interval_model)}
    assert report["clamp"] is False and interval_model.out.input_nonneg is False
    with inn_cuda.check_bounds(False), torch.no_grad():
        for layer in inn.interval_layers(interval_model):
            layer.weight_offset_lo.fill_(0.2)
        out = interval_model(torch.randn(8, 3, dtype=torch.float64))
    assert bool((out.lo <= out.hi).all())


@pytest.mark.parametrize("slopes", [[-0.5], [0.25], [-0.3, 0.2, 0.0]])
def test_prelu_exact_for_any_slope(slopes):
    weight = torch.tensor(slopes, dtype=torch.float64)
    channels = 3
    x = torch.randn(4, channels, 5, dtype=torch.float64)
    lo, hi = x - 0.7, x + 0.7
    out = IF.prelu(inn.Interval(lo, hi, x), weight)
    # exact: a piecewise-linear function's extremes lie at the ends or the kink at 0
    candidates = torch.stack([F.prelu(t, weight) for t in
                              (lo, hi, torch.minimum(torch.maximum(lo, torch.zeros_like(lo)),
                                                     hi))])
    assert torch.equal(out.lo, candidates.amin(0)) and torch.equal(out.hi, candidates.amax(0))
    grid = torch.linspace(0, 1, 101, dtype=torch.float64).reshape(-1, 1, 1, 1)
    values = F.prelu((lo + (hi - lo) * grid).reshape(-1, channels, 5), weight).reshape(
        101, *x.shape)
    assert bool((values >= out.lo - 1e-12).all()) and bool((values <= out.hi + 1e-12).all())
    assert torch.equal(out.point, F.prelu(x, weight))
    module = nn.PReLU(len(slopes)).double()
    with torch.no_grad():
        module.weight.copy_(weight)
    converted = to_interval(nn.Sequential(nn.Conv1d(channels, channels, 1), module).double(),
                            example_inputs=x)
    assert isinstance(converted.get_submodule("1"), inn.IntervalPReLU)
    assert "1.weight" in converted.state_dict()  # the original key
