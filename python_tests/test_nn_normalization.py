"""Interval LayerNorm, GroupNorm and InstanceNorm: sound (every sampled input inside the
bounds, vertices included), equal to the torch output at zero width, NaN-free with infinite
bounds, the point never used for the bounds."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inn_cuda.nn as inn
from inn_cuda.nn import normalization as IN
from helpers import ALL_DEVICES


def _affine(module, generator):
    with torch.no_grad():
        if getattr(module, "weight", None) is not None:
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator,
                                            dtype=module.weight.dtype))  # signs of both kinds
            module.bias.copy_(torch.randn(module.bias.shape, generator=generator,
                                          dtype=module.bias.dtype))
        if getattr(module, "running_mean", None) is not None:
            module.running_mean.normal_(generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    return module


CASES = [
    (lambda: nn.LayerNorm(5), (3, 5)),
    (lambda: nn.LayerNorm((3, 4), elementwise_affine=False), (2, 3, 4)),
    (lambda: nn.LayerNorm(4, eps=0.0), (2, 3, 4)),
    (lambda: nn.GroupNorm(2, 4), (2, 4, 3)),
    (lambda: nn.GroupNorm(1, 4, affine=False), (2, 4, 2, 2)),
    (lambda: nn.InstanceNorm1d(3, affine=True), (2, 3, 5)),
    (lambda: nn.InstanceNorm1d(3), (3, 5)),  # unbatched
    (lambda: nn.InstanceNorm2d(2, affine=True), (2, 2, 3, 3)),
    (lambda: nn.InstanceNorm3d(2), (1, 2, 2, 2, 2)),
    (lambda: nn.InstanceNorm2d(2, affine=True, track_running_stats=True), (2, 2, 3, 3)),
]
CONVERT = {nn.LayerNorm: inn.IntervalLayerNorm, nn.GroupNorm: inn.IntervalGroupNorm}


def _interval_module(module):
    return CONVERT.get(type(module), inn.IntervalInstanceNorm)(module)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_contains_sampled_and_vertex_inputs(case, device):
    make, shape = CASES[case]
    generator = torch.Generator().manual_seed(case)
    module = _affine(make().double().eval(), generator).to(device)
    layer = _interval_module(module)
    x = torch.randn(shape, generator=generator, dtype=torch.float64).to(device)
    radius = 0.3 * torch.rand(shape, generator=generator, dtype=torch.float64).to(device)
    out = layer(inn.Interval(x - radius, x + radius, x))
    assert torch.equal(out.point, module(x))
    assert bool((out.lo <= out.hi).all())
    for sample in range(40):
        if sample % 2:
            u = (torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5).double()
        else:
            u = torch.rand(shape, generator=generator, dtype=torch.float64)
        y = module(x - radius + 2 * radius * u.to(device))
        assert bool(out.contains(y, 1e-12).all()), sample


@pytest.mark.parametrize("case", range(len(CASES)))
def test_zero_width_equals_the_torch_output(case):
    make, shape = CASES[case]
    module = _affine(make().double().eval(), torch.Generator().manual_seed(case))
    x = torch.randn(shape, dtype=torch.float64)
    out = _interval_module(module)(inn.Interval(x.clone(), x.clone(), x))  # not one object
    torch.testing.assert_close(out.lo, module(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.hi, module(x), atol=1e-12, rtol=0)
    same = _interval_module(module)(inn.Interval.from_point(x))
    assert torch.equal(same.lo, module(x)) and same.hi is same.lo


def test_bounds_do_not_depend_on_the_point():
    x = torch.randn(2, 6, dtype=torch.float64)
    a = IN.layer_norm(inn.Interval(x - 0.2, x + 0.2, x), (6,))
    b = IN.layer_norm(inn.Interval(x - 0.2, x + 0.2, x + 0.1), (6,))
    assert torch.equal(a.lo, b.lo) and torch.equal(a.hi, b.hi)


def test_bounds_stay_within_sqrt_n_minus_1_and_nan_free_with_infinite_bounds():
    n = 5
    x = torch.randn(1, n, dtype=torch.float64)
    lo, hi = x - 0.1, x + 0.1
    hi[0, 2] = float("inf")
    lo[0, 3] = -float("inf")
    out = IN.layer_norm(inn.Interval(lo, hi), (n,))
    assert not torch.isnan(out.lo).any() and not torch.isnan(out.hi).any()
    limit = (n - 1) ** 0.5
    assert bool((out.lo >= -limit).all()) and bool((out.hi <= limit).all())


def test_functional_forms_and_errors():
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    box = inn.Interval(x - 0.1, x + 0.1, x)
    w, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    assert torch.equal(IN.group_norm(box, 2, w, b).point, F.group_norm(x, 2, w, b))
    assert torch.equal(IN.instance_norm(box, weight=w, bias=b).point,
                       F.instance_norm(x, weight=w, bias=b))
    assert torch.equal(IN.layer_norm(x, (3,)), F.layer_norm(x, (3,)))  # no interval: torch's
    with pytest.raises(ValueError, match="divisible by num_groups=3"):
        IN.group_norm(box, 3)
    with pytest.raises(ValueError, match="trailing dims must be \\(4,\\)"):
        IN.layer_norm(box, (4,))
    with pytest.raises(TypeError, match="point tensors"):
        IN.layer_norm(box, (3,), inn.Interval.from_point(torch.ones(3, dtype=torch.float64)))
