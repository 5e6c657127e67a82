"""Interval BatchNorm: the eval-mode affine map ``x * s + t`` per channel, with
``s = weight / sqrt(running_var + eps)`` of either sign.

The point network of an INN is frozen, so its batch statistics are frozen too: this layer always
normalises by the running statistics (in ``train()`` mode as well) and never updates them. Each
bound is mapped by ``F.batch_norm`` itself, which is monotone per channel (increasing where
``weight >= 0``, decreasing where it is negative, where the mapped bounds swap); the point is
therefore exactly the torch layer's eval-mode output.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .interval import Interval
from .offsets import _frozen

Tensor = torch.Tensor

#: the input ranks each BatchNorm flavour accepts
_RANKS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


class IntervalBatchNorm(nn.Module):
    """Interval counterpart of ``nn.BatchNorm1d/2d/3d`` (and ``SyncBatchNorm``), running
    statistics only (see the module docstring). Build it with :meth:`from_module`."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True, *,
                 ranks=(2, 3, 4, 5), device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.num_features = num_features
        self.eps = eps
        self.ranks = tuple(ranks)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory), requires_grad=False)
            self.bias = nn.Parameter(torch.zeros(num_features, **factory), requires_grad=False)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_var", torch.ones(num_features, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long,
                                                                 device=device))

    @classmethod
    def from_module(cls, module: nn.Module, *, copy_weights: bool = False,
                    equivalent_forward: bool = False) -> "IntervalBatchNorm":
        """Share (or copy) a trained BatchNorm's affine parameters and running statistics
        (``equivalent_forward``: accept a subclass overriding ``forward``, which the caller
        vouches computes the same)."""
        kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
        if not isinstance(module, kinds) or (type(module).forward not in
                                             {k.forward for k in kinds} and
                                             not equivalent_forward):
            raise TypeError(f"IntervalBatchNorm.from_module expects an nn.BatchNorm1d/2d/3d or "
                            f"SyncBatchNorm, got {type(module).__name__}")
        if module.running_mean is None or module.running_var is None:
            raise ValueError(f"{type(module).__name__}(track_running_stats=False) normalises by "
                             f"the statistics of each batch, which has no interval counterpart; "
                             f"only BatchNorm with running statistics can be converted")
        ranks = next((r for k, r in _RANKS.items() if isinstance(module, k)), (2, 3, 4, 5))
        layer = cls(module.num_features, module.eps, module.affine, ranks=ranks)
        if module.affine:
            layer.weight = _frozen(module.weight, copy_weights)
            layer.bias = _frozen(module.bias, copy_weights)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            buffer = getattr(module, name)
            if buffer is not None:
                setattr(layer, name, buffer.detach().clone() if copy_weights else buffer.detach())
        layer.train(module.training)
        return layer

    def _point(self, x: Tensor) -> Tensor:
        if x.dim() not in self.ranks:
            raise ValueError(f"IntervalBatchNorm: expected an input of rank "
                             f"{' or '.join(map(str, self.ranks))}, got shape {tuple(x.shape)}")
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)

    def forward(self, x: Union[Interval, Tensor]) -> Union[Interval, Tensor]:
        if not isinstance(x, Interval):
            return self._point(x)
        y = x.map(self._point)
        if self.weight is None or y.hi is y.lo:
            return y
        shape = [1] * y.lo.dim()
        shape[1] = -1
        negative = (self.weight < 0).reshape(shape)
        return Interval(torch.where(negative, y.hi, y.lo), torch.where(negative, y.lo, y.hi),
                        y.point)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}, "
                f"running statistics only")
