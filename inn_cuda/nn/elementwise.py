"""Interval counterparts of modules without weights.

* :class:`IntervalMonotone` wraps any order-preserving map (monotone non-decreasing activations,
  max/avg pooling, nearest/bilinear upsampling, flatten, padding, ...): the bounds of the output
  are the map of the bounds, so it applies the torch module itself to ``lo``, ``hi`` and the
  point (which therefore equals the torch module's output exactly).
* :class:`IntervalValley` gives exact bounds for the non-monotone GELU, SiLU, Mish and Hardswish,
  each of which falls to its single minimum at a known ``argmin`` and rises after it.
* :class:`IntervalPReLU` is exact for slopes of either sign (a negative slope makes PReLU a
  valley with its minimum 0 at 0).
* :func:`abs_bounds` is the exact absolute value.
* :func:`interpolate_bound` maps a bound by a linear interpolation without the NaN that
  ``0 * inf`` would give where a grid-aligned sample puts weight 0 on an infinite neighbour.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, Union

import torch
import torch.nn as nn

from .interval import Interval

Tensor = torch.Tensor

#: argmin of each valley-shaped activation (float64-exact roots of the derivative)
GELU_ARGMIN = -0.75179152469356445746
GELU_TANH_ARGMIN = -0.75246142207101626049
SILU_ARGMIN = -1.2784645427610737951
MISH_ARGMIN = -1.1924312145154952121
HARDSWISH_ARGMIN = -1.5


def monotonicity_problem(module: nn.Module) -> Optional[str]:
    """Why a module that is monotone for its usual settings is not with these, else None."""
    if isinstance(module, nn.LeakyReLU) and module.negative_slope < 0:
        return f"LeakyReLU with negative_slope {module.negative_slope} < 0 is not monotone"
    if isinstance(module, nn.ELU) and module.alpha < 0:
        return f"ELU with alpha {module.alpha} < 0 is not monotone"
    if isinstance(module, nn.Threshold) and module.value > module.threshold:
        return (f"Threshold with value {module.value} > threshold {module.threshold} is not "
                f"monotone")
    if isinstance(module, nn.PReLU) and bool((module.weight < 0).any()):
        return "PReLU with a negative learned slope is not monotone (IntervalPReLU handles it)"
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
                           nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)) and module.return_indices:
        return f"{type(module).__name__} with return_indices=True returns indices"
    if isinstance(module, nn.Upsample) and module.mode not in MONOTONE_INTERPOLATION:
        return (f"Upsample mode {module.mode!r} has negative weights; supported modes: "
                f"{', '.join(MONOTONE_INTERPOLATION)}")
    return None


#: interpolation modes whose weights are non-negative (so the map is order preserving)
MONOTONE_INTERPOLATION = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "area")


def _out_of_place(module: nn.Module) -> nn.Module:
    """A shallow copy with ``inplace=False``: a degenerate interval holds one tensor three times,
    so an in-place map would be applied to it three times."""
    if getattr(module, "inplace", False):
        module = copy.copy(module)
        module.inplace = False
    return module


def interpolate_bound(fn: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
    """``fn(t)`` for an interpolation ``fn`` with non-negative weights. Without infinities this
    is ``fn(t)``; otherwise the finite part is interpolated with the infinities set to 0, and an
    output is +inf (-inf) where a +inf (-inf) neighbour has a positive weight, NaN where both
    do (a bound is never both, so only NaN inputs make that happen)."""
    infinite = torch.isinf(t)
    if not bool(infinite.any()):
        return fn(t)
    finite = fn(torch.where(infinite, torch.zeros((), dtype=t.dtype, device=t.device), t))
    up = fn(torch.isposinf(t).to(t.dtype)) > 0
    down = fn(torch.isneginf(t).to(t.dtype)) > 0
    out = torch.where(up, torch.full_like(finite, float("inf")), finite)
    out = torch.where(down, torch.full_like(finite, -float("inf")), out)
    return torch.where(up & down, torch.full_like(finite, float("nan")), out)


def _linear_interpolation(module: nn.Module) -> bool:
    return isinstance(module, nn.Upsample) and module.mode in ("linear", "bilinear", "trilinear")


class IntervalMonotone(nn.Module):
    """Applies an order-preserving map ``fn`` (a torch module) to each bound and to the point.

    Maps known to be monotone only for some settings are checked (a negative LeakyReLU slope is
    rejected); for any other module, wrapping it is the caller's promise that it is monotone
    non-decreasing in every input element. A plain tensor input is mapped as by ``fn``.
    """

    def __init__(self, fn: nn.Module):
        super().__init__()
        problem = monotonicity_problem(fn)
        if problem:
            raise ValueError(f"IntervalMonotone: {problem}")
        self.fn = _out_of_place(fn)

    def forward(self, x: Union[Interval, Tensor]) -> Union[Interval, Tensor]:
        if isinstance(x, Interval):
            if _linear_interpolation(self.fn):
                return x.map(lambda t: interpolate_bound(self.fn, t))
            return x.map(self.fn)
        return self.fn(x)


def prelu_bounds(fn: Callable[[Tensor], Tensor], x: Interval) -> Interval:
    """Exact bounds of a PReLU ``fn`` (per-channel slopes of either sign) over ``[lo, hi]``:
    where the slope is >= 0 it is monotone (``[fn(lo), fn(hi)]``); where it is negative it falls
    to its minimum 0 at 0 and rises after, so the lower bound is 0 when ``lo < 0 < hi``."""
    f_lo = fn(x.lo)
    f_hi = f_lo if x.hi is x.lo else fn(x.hi)
    point = None if x.point is None else (f_lo if x.point is x.lo else fn(x.point))
    if x.hi is x.lo:
        return Interval(f_lo, f_hi, point)
    negative_slope = fn(-torch.ones_like(x.lo)) > 0  # fn(-1) = -slope
    valley = negative_slope & (x.lo < 0) & (x.hi > 0)
    lo = torch.where(valley, torch.zeros_like(f_lo), torch.minimum(f_lo, f_hi))
    return Interval(lo, torch.maximum(f_lo, f_hi), point)


class IntervalPReLU(nn.Module):
    """Exact interval ``nn.PReLU`` for learned slopes of either sign (:func:`prelu_bounds`); the
    slope is the torch module's frozen ``weight`` (same state_dict key)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = nn.Parameter(torch.full((num_parameters,), init), requires_grad=False)

    @classmethod
    def from_module(cls, module: nn.PReLU) -> "IntervalPReLU":
        if not isinstance(module, nn.PReLU):
            raise TypeError(f"IntervalPReLU.from_module expects an nn.PReLU, got "
                            f"{type(module).__name__}")
        layer = cls(module.num_parameters)
        layer.weight = nn.Parameter(module.weight.detach(), requires_grad=False)
        layer.train(module.training)
        return layer

    def _fn(self, t: Tensor) -> Tensor:
        return torch.nn.functional.prelu(t, self.weight)

    def forward(self, x: Union[Interval, Tensor]) -> Union[Interval, Tensor]:
        return prelu_bounds(self._fn, x) if isinstance(x, Interval) else self._fn(x)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


def valley_bounds(fn: Callable[[Tensor], Tensor], argmin: float, x: Interval) -> Interval:
    """Exact bounds of ``fn`` over ``[lo, hi]`` for ``fn`` non-increasing up to ``argmin`` and
    non-decreasing after it: the maximum is at an end, the minimum at ``argmin`` if it lies
    inside, else at the nearer end."""
    f_lo = fn(x.lo)
    f_hi = f_lo if x.hi is x.lo else fn(x.hi)
    point = None if x.point is None else (f_lo if x.point is x.lo else fn(x.point))
    if x.hi is x.lo:
        return Interval(f_lo, f_hi, point)
    f_min = fn(torch.full((), argmin, dtype=x.lo.dtype, device=x.lo.device))
    inside = (x.lo <= argmin) & (x.hi >= argmin)
    lo = torch.where(inside, f_min, torch.minimum(f_lo, f_hi))
    return Interval(lo, torch.maximum(f_lo, f_hi), point)


def valley_argmin(module: nn.Module) -> Optional[float]:
    """The argmin of a valley-shaped activation module, None for any other module."""
    if isinstance(module, nn.GELU):
        return GELU_TANH_ARGMIN if module.approximate == "tanh" else GELU_ARGMIN
    if isinstance(module, nn.SiLU):
        return SILU_ARGMIN
    if isinstance(module, nn.Mish):
        return MISH_ARGMIN
    if isinstance(module, nn.Hardswish):
        return HARDSWISH_ARGMIN
    return None


class IntervalValley(nn.Module):
    """Exact interval GELU, SiLU, Mish or Hardswish (``fn`` is the torch module)."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        argmin = valley_argmin(fn)
        if argmin is None:
            raise TypeError(f"IntervalValley supports GELU, SiLU, Mish and Hardswish, got "
                            f"{type(fn).__name__}")
        self.fn = _out_of_place(fn)
        self.argmin = argmin

    def forward(self, x: Union[Interval, Tensor]) -> Union[Interval, Tensor]:
        if isinstance(x, Interval):
            return valley_bounds(self.fn, self.argmin, x)
        return self.fn(x)


def abs_bounds(x: Interval) -> Interval:
    """Exact ``|x|``: ``[lo, hi]`` where ``lo >= 0``, ``[-hi, -lo]`` where ``hi <= 0``, else
    ``[0, max(-lo, hi)]``."""
    a_lo = torch.abs(x.lo)
    a_hi = a_lo if x.hi is x.lo else torch.abs(x.hi)
    point = None if x.point is None else (a_lo if x.point is x.lo else torch.abs(x.point))
    if x.hi is x.lo:
        return Interval(a_lo, a_hi, point)
    straddles = (x.lo < 0) & (x.hi > 0)
    lo = torch.where(straddles, torch.zeros_like(a_lo), torch.minimum(a_lo, a_hi))
    return Interval(lo, torch.maximum(a_lo, a_hi), point)
