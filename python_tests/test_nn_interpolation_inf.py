"""Linear interpolation of infinite bounds: no NaN where a grid-aligned sample puts weight 0 on
an infinite neighbour; an infinity with positive weight dominates; finite entries are as before."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inn_cuda.nn as inn
from inn_cuda.nn import functional as IF


def _bounds():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    lo, hi = x - 0.1, x + 0.1
    lo[0, 0, 1, 2] = -float("inf")
    hi[0, 1, 3, 0] = float("inf")
    return lo, hi


def _limit(fn, t):
    """The interpolation with each infinity replaced by +-1e300 (the same weights)."""
    big = torch.where(torch.isinf(t), torch.sign(t) * 1e300, t)
    out = fn(big)
    return torch.where(out.abs() > 1e290, torch.sign(out) * float("inf"), out)


@pytest.mark.parametrize("kwargs", [dict(scale_factor=2, mode="bilinear"),
                                    dict(scale_factor=2, mode="bilinear", align_corners=True),
                                    dict(size=(7, 5), mode="bilinear", align_corners=False)])
def test_interpolate_of_infinite_bounds_is_nan_free_and_matches_the_limit(kwargs):
    lo, hi = _bounds()
    fn = lambda t: F.interpolate(t, **kwargs)  # noqa: E731
    for out in (IF.interpolate(inn.Interval(lo, hi), **kwargs),
                inn.IntervalMonotone(nn.Upsample(**kwargs))(inn.Interval(lo, hi))):
        assert not torch.isnan(out.lo).any() and not torch.isnan(out.hi).any()
        torch.testing.assert_close(out.lo, _limit(fn, lo))
        torch.testing.assert_close(out.hi, _limit(fn, hi))


def test_torch_itself_gives_nan_here():
    """The case the rule exists for: weight 0 on an infinite neighbour."""
    lo, _ = _bounds()
    assert torch.isnan(F.interpolate(lo, scale_factor=2, mode="bilinear",
                                     align_corners=True)).any()
