"""Interval dropout: one random mask shared by the point and both bounds (scaling by a
non-negative mask keeps ``lo <= hi``), identity in eval mode."""

from __future__ import annotations

from typing import Union

import torch
import torch.nn as nn

from .interval import Interval

Tensor = torch.Tensor

#: torch dropout module -> number of trailing spatial dims one mask entry covers
_CHANNEL_DIMS = {nn.Dropout: 0, nn.Dropout1d: 1, nn.Dropout2d: 2, nn.Dropout3d: 3}


def dropout_mask(like: Tensor, p: float, spatial_dims: int = 0) -> Tensor:
    """A mask of zeros and ``1 / (1 - p)`` (keep probability ``1 - p``) broadcasting over
    ``like``; with ``spatial_dims = k`` one entry covers the last k dims (channel dropout)."""
    shape = list(like.shape)
    if spatial_dims:
        if like.dim() < spatial_dims + 1:
            raise ValueError(f"channel dropout over {spatial_dims} spatial dims needs an input "
                             f"of rank >= {spatial_dims + 1}, got shape {tuple(like.shape)}")
        shape[like.dim() - spatial_dims:] = [1] * spatial_dims
    if p >= 1:
        return like.new_zeros(shape)
    keep = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p)
    return keep.div_(1 - p)


def interval_dropout(x: Union[Interval, Tensor], p: float = 0.5, training: bool = True,
                     spatial_dims: int = 0) -> Union[Interval, Tensor]:
    """Dropout of an interval with one mask for the point and both bounds."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if not isinstance(x, Interval):
        return x * dropout_mask(x, p, spatial_dims)
    mask = dropout_mask(x.lo, p, spatial_dims)
    return x.map(lambda t: t * mask)


def interval_stochastic_depth(input, p: float, mode: str, training: bool = True):
    """``torchvision.ops.stochastic_depth`` of an interval: identity in eval mode (or ``p = 0``),
    else one mask shared by the point and both bounds, per sample (``mode="row"``) or for the
    whole batch (``"batch"``), scaled by ``1 / (1 - p)`` as torchvision does."""
    if not 0 <= p <= 1:
        raise ValueError(f"stochastic_depth: p must be in [0, 1], got {p}")
    if mode not in ("row", "batch"):
        raise ValueError(f"stochastic_depth: mode must be 'row' or 'batch', got {mode!r}")
    if not training or p == 0:
        return input
    like = input.lo if isinstance(input, Interval) else input
    shape = [like.shape[0]] + [1] * (like.dim() - 1) if mode == "row" else [1] * like.dim()
    keep = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p)
    if p < 1:
        keep.div_(1 - p)
    return input.map(lambda t: t * keep) if isinstance(input, Interval) else input * keep


class IntervalDropout(nn.Module):
    """Interval ``nn.Dropout`` (``spatial_dims=0``) or ``nn.Dropout1d/2d/3d`` (1, 2, 3): active
    in ``train()`` mode only, one mask shared by point, ``lo`` and ``hi``."""

    def __init__(self, p: float = 0.5, spatial_dims: int = 0):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"IntervalDropout: p must be in [0, 1], got {p}")
        self.p = p
        self.spatial_dims = spatial_dims

    @classmethod
    def from_module(cls, module: nn.Module) -> "IntervalDropout":
        dims = _CHANNEL_DIMS.get(type(module))
        if dims is None:
            raise TypeError(f"IntervalDropout.from_module supports "
                            f"{', '.join(k.__name__ for k in _CHANNEL_DIMS)}, got "
                            f"{type(module).__name__}")
        layer = cls(module.p, dims)
        layer.train(module.training)
        return layer

    def forward(self, x: Union[Interval, Tensor]) -> Union[Interval, Tensor]:
        return interval_dropout(x, self.p, self.training, self.spatial_dims)

    def extra_repr(self) -> str:
        return f"p={self.p}, spatial_dims={self.spatial_dims}"
