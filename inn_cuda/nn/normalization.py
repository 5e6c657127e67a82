"""Interval LayerNorm, GroupNorm and InstanceNorm: normalisation by statistics of the input
itself. Sound, not exact.

Each group ``G`` of ``n`` elements (the trailing dims of LayerNorm, a group of channels of
GroupNorm, one channel's spatial extent of InstanceNorm) is normalised as
``y_i = (x_i - mean(x)) / sqrt(var(x) + eps)``, then scaled and shifted per element or channel.
For ``x_i`` in ``[l_i, h_i]`` (:func:`normalized_bounds`):

1. the centred value ``c_i = (1 - 1/n) x_i - (1/n) sum_{j != i} x_j`` has the exact bounds
   ``[(1 - 1/n) l_i - (1/n) sum_{j != i} h_j, (1 - 1/n) h_i - (1/n) sum_{j != i} l_j]``;
2. the variance ``mean(c^2)`` lies in the mean of the bounds of ``c_i^2`` over these intervals;
3. ``r = 1/sqrt(var + eps)`` is the positive interval
   ``[1/sqrt(var_hi + eps), 1/sqrt(var_lo + eps)]``;
4. ``y_i = c_i * r`` is their interval product, intersected with ``|y_i| <= sqrt(n - 1)`` (true for
   every vector: ``c_i^2 <= (n - 1) / n * sum_j c_j^2`` since the ``c_j`` sum to 0);
5. the affine map, with the bounds swapped where the scale is negative.

Steps 2-4 treat the ``c_i`` (which share the same ``x``) as independent, so the bounds contain
every reachable output but are not the tightest. The point is never used to normalise the bounds.
At zero width the bounds equal the torch output up to rounding (a degenerate interval that is one
tensor object maps exactly). Products follow the ``0 * inf = 0`` bound convention.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..reference import mul_bound
from .elementwise import abs_bounds
from .functional import batch_norm, graph_function
from .interval import Interval
from .offsets import _frozen

Tensor = torch.Tensor


def _sum_others(t: Tensor, dims: Tuple[int, ...]) -> Tensor:
    """``sum_{j != i} t_j`` over ``dims`` for every ``i``, with infinities handled (an infinite
    ``t_i`` is not subtracted from itself)."""
    infinite = torch.isinf(t)
    zero = torch.zeros((), dtype=t.dtype, device=t.device)
    finite = torch.where(infinite, zero, t)
    others = finite.sum(dims, keepdim=True) - finite
    up = torch.isposinf(t).sum(dims, keepdim=True) - torch.isposinf(t).to(torch.long)
    down = torch.isneginf(t).sum(dims, keepdim=True) - torch.isneginf(t).to(torch.long)
    others = torch.where(up > 0, torch.full_like(others, float("inf")), others)
    others = torch.where(down > 0, torch.full_like(others, -float("inf")), others)
    return torch.where((up > 0) & (down > 0), torch.full_like(others, float("nan")), others)


def normalized_bounds(x: Interval, dims: Sequence[int], eps: float) -> Tuple[Tensor, Tensor]:
    """Sound bounds of ``(x - mean) / sqrt(var + eps)`` with mean and (biased) variance over
    ``dims`` (see the module docstring)."""
    dims = tuple(d % x.lo.dim() for d in dims)
    n = math.prod(x.lo.shape[d] for d in dims)
    if n == 0:
        return x.lo, x.hi
    keep = 1.0 - 1.0 / n
    c_lo = keep * x.lo - _sum_others(x.hi, dims) / n
    c_hi = keep * x.hi - _sum_others(x.lo, dims) / n
    c_lo, c_hi = torch.minimum(c_lo, c_hi), torch.maximum(c_lo, c_hi)  # rounding can cross
    magnitude = abs_bounds(Interval(c_lo, c_hi))
    var_lo = (magnitude.lo * magnitude.lo).mean(dims, keepdim=True)
    var_hi = (magnitude.hi * magnitude.hi).mean(dims, keepdim=True)
    r_lo = torch.rsqrt(var_hi + eps)  # both > 0
    r_hi = torch.rsqrt(var_lo + eps)
    y_lo = torch.where(c_lo >= 0, mul_bound(c_lo, r_lo), mul_bound(c_lo, r_hi))
    y_hi = torch.where(c_hi >= 0, mul_bound(c_hi, r_hi), mul_bound(c_hi, r_lo))
    limit = math.sqrt(n - 1)
    return y_lo.clamp(-limit, limit), y_hi.clamp(-limit, limit)


def _affine(lo: Tensor, hi: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
            shape: Sequence[int], point: Optional[Tensor]) -> Interval:
    y = Interval(lo, hi)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return Interval(y.lo, y.hi, point)


def _check_points(op: str, *tensors) -> None:
    if any(isinstance(t, Interval) for t in tensors):
        raise TypeError(f"{op}: weight, bias and running statistics must be point tensors")


def _point(x: Interval, fn):
    return None if x.point is None else fn(x.point)


@graph_function
def layer_norm(x: Union[Interval, Tensor], normalized_shape: Sequence[int],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5) -> Union[Interval, Tensor]:
    """Interval ``F.layer_norm`` over the trailing ``normalized_shape`` dims (sound)."""
    fn = lambda t: F.layer_norm(t, normalized_shape, weight, bias, eps)  # noqa: E731
    if not isinstance(x, Interval):
        return fn(x)
    _check_points("layer_norm", weight, bias)
    if x.hi is x.lo:
        return x.map(fn)
    normalized_shape = tuple(normalized_shape) if not isinstance(normalized_shape, int) \
        else (normalized_shape,)
    if tuple(x.lo.shape[x.lo.dim() - len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"layer_norm: the input's trailing dims must be {normalized_shape}, "
                         f"got shape {tuple(x.lo.shape)}")
    dims = tuple(range(-len(normalized_shape), 0))
    lo, hi = normalized_bounds(x, dims, eps)
    return _affine(lo, hi, weight, bias, normalized_shape, _point(x, fn))


@graph_function
def group_norm(x: Union[Interval, Tensor], num_groups: int, weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Union[Interval, Tensor]:
    """Interval ``F.group_norm`` of an ``(N, C, *)`` input (sound)."""
    fn = lambda t: F.group_norm(t, num_groups, weight, bias, eps)  # noqa: E731
    if not isinstance(x, Interval):
        return fn(x)
    _check_points("group_norm", weight, bias)
    if x.hi is x.lo:
        return x.map(fn)
    shape = x.lo.shape
    if x.lo.dim() < 2 or shape[1] % num_groups:
        raise ValueError(f"group_norm: expected (N, C, *) with C divisible by num_groups="
                         f"{num_groups}, got shape {tuple(shape)}")
    grouped = Interval(x.lo.reshape(shape[0], num_groups, -1),
                       x.hi.reshape(shape[0], num_groups, -1))
    lo, hi = normalized_bounds(grouped, (2,), eps)
    channel = [1, -1] + [1] * (len(shape) - 2)
    return _affine(lo.reshape(shape), hi.reshape(shape), weight, bias, channel, _point(x, fn))


@graph_function
def instance_norm(x: Union[Interval, Tensor], running_mean: Optional[Tensor] = None,
                  running_var: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                  bias: Optional[Tensor] = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Union[Interval, Tensor]:
    """Interval ``F.instance_norm`` of an ``(N, C, *)`` input: by the input's own statistics
    (sound), or by running statistics (``use_input_stats=False``: an exact per-channel affine
    map). Running statistics are never updated."""
    if not use_input_stats and running_mean is None:
        raise ValueError("instance_norm: use_input_stats=False needs running statistics")
    fn = lambda t: F.instance_norm(t, running_mean, running_var, weight, bias,  # noqa: E731
                                   use_input_stats, 0.0, eps)
    if not isinstance(x, Interval):
        return fn(x)
    _check_points("instance_norm", running_mean, running_var, weight, bias)
    if not use_input_stats:
        return batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)
    if x.hi is x.lo:
        return x.map(fn)
    if x.lo.dim() < 3:
        raise ValueError(f"instance_norm: expected (N, C, *spatial), got shape "
                         f"{tuple(x.lo.shape)}")
    lo, hi = normalized_bounds(x, tuple(range(2, x.lo.dim())), eps)
    channel = [1, -1] + [1] * (x.lo.dim() - 2)
    return _affine(lo, hi, weight, bias, channel, _point(x, fn))


# ------------------------------------------------------------------------------------ modules

class _IntervalNorm(nn.Module):
    """Frozen affine parameters (and buffers) under the torch module's names."""

    _config: Tuple[str, ...] = ()

    def __init__(self, module: nn.Module):
        super().__init__()
        for name in self._config:
            setattr(self, name, getattr(module, name))
        for name in ("weight", "bias"):
            value = getattr(module, name, None)
            if value is None:
                self.register_parameter(name, None)
            else:
                setattr(self, name, _frozen(value, False))
        self.train(module.training)

    @classmethod
    def from_module(cls, module: nn.Module) -> "_IntervalNorm":
        return cls(module)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self._config)


class IntervalLayerNorm(_IntervalNorm):
    """Interval ``nn.LayerNorm`` (sound, see the module docstring)."""

    _config = ("normalized_shape", "eps")

    def forward(self, x):
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class IntervalGroupNorm(_IntervalNorm):
    """Interval ``nn.GroupNorm`` (sound)."""

    _config = ("num_groups", "num_channels", "eps")

    def forward(self, x):
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class IntervalInstanceNorm(_IntervalNorm):
    """Interval ``nn.InstanceNorm1d/2d/3d``: by the input's statistics (sound), or, with
    ``track_running_stats=True``, always by the frozen running statistics (exact), as
    :class:`~inn_cuda.nn.IntervalBatchNorm` does. Unbatched inputs are accepted like torch's."""

    _config = ("num_features", "eps", "track_running_stats")

    def __init__(self, module: nn.Module):
        super().__init__(module)
        self.spatial_dims = {nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2,
                             nn.InstanceNorm3d: 3}[next(t for t in (nn.InstanceNorm1d,
                                                                    nn.InstanceNorm2d,
                                                                    nn.InstanceNorm3d)
                                                        if isinstance(module, t))]
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            buffer = getattr(module, name, None)
            self.register_buffer(name, None if buffer is None else buffer.detach())

    def forward(self, x):
        rank = (x.lo if isinstance(x, Interval) else x).dim()
        unbatched = rank == self.spatial_dims + 1
        if unbatched:
            x = x.map(lambda t: t.unsqueeze(0)) if isinstance(x, Interval) else x.unsqueeze(0)
        elif rank != self.spatial_dims + 2:
            raise ValueError(f"IntervalInstanceNorm: expected {self.spatial_dims + 1}- or "
                             f"{self.spatial_dims + 2}-dim input, got {rank} dims")
        y = instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          not self.track_running_stats, 0.0, self.eps)
        if unbatched:
            y = y.map(lambda t: t.squeeze(0)) if isinstance(y, Interval) else y.squeeze(0)
        return y
