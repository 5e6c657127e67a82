"""The value that flows through interval layers."""

from __future__ import annotations

from numbers import Real
from typing import Callable, NamedTuple, Optional

import torch

Tensor = torch.Tensor


class Interval(NamedTuple):
    """Elementwise bounds ``lo <= hi`` of a tensor, optionally with the point prediction carried
    alongside (the original INN code's "both" mode).

    A ``NamedTuple``, so ``torch.compile``, ``DistributedDataParallel`` and other pytree-aware code
    see its tensors. The arithmetic operators are exact interval arithmetic; ``len()`` and
    unpacking are those of the underlying tuple ``(lo, hi, point)``.
    """

    lo: Tensor
    hi: Tensor
    point: Optional[Tensor] = None

    @classmethod
    def from_point(cls, x: Tensor, *, keep_point: bool = True) -> "Interval":
        """The degenerate interval ``[x, x]`` (carrying ``x`` as the point when asked)."""
        return cls(x, x, x if keep_point else None)

    # ------------------------------------------------------------------ properties

    @property
    def width(self) -> Tensor:
        return self.hi - self.lo

    @property
    def mid(self) -> Tensor:
        return self.lo + 0.5 * (self.hi - self.lo)

    @property
    def shape(self) -> torch.Size:
        return self.lo.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.lo.dtype

    @property
    def device(self) -> torch.device:
        return self.lo.device

    def contains(self, x: Tensor, tol: float = 0.0) -> Tensor:
        """Elementwise ``lo - tol <= x <= hi + tol``."""
        return (x >= self.lo - tol) & (x <= self.hi + tol)

    # ------------------------------------------------------------------ maps

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Interval":
        """Apply a monotone non-decreasing elementwise map (or any bound-wise op such as a
        reshape) to each bound and to the point."""
        return Interval(fn(self.lo), fn(self.hi), None if self.point is None else fn(self.point))

    def to(self, *args, **kwargs) -> "Interval":
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Interval":
        return self.map(Tensor.detach)

    def without_point(self) -> "Interval":
        return Interval(self.lo, self.hi)

    # ------------------------------------------------------------------ exact arithmetic

    def __add__(self, other) -> "Interval":
        if isinstance(other, Interval):
            point = None if self.point is None or other.point is None else self.point + other.point
            return Interval(self.lo + other.lo, self.hi + other.hi, point)
        if isinstance(other, (Tensor, Real)):
            return self.map(lambda t: t + other)
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> "Interval":
        return Interval(-self.hi, -self.lo, None if self.point is None else -self.point)

    def __sub__(self, other) -> "Interval":
        if isinstance(other, (Interval, Tensor, Real)):
            return self + (-other)
        return NotImplemented

    def __rsub__(self, other) -> "Interval":
        if isinstance(other, (Tensor, Real)):
            return (-self) + other
        return NotImplemented

    def __mul__(self, other) -> "Interval":
        """Multiplication by a scalar or a tensor of constants (bounds swap where negative)."""
        if isinstance(other, Interval):
            raise TypeError("Interval * Interval is not supported; multiply by constants only")
        if not isinstance(other, (Tensor, Real)):
            return NotImplemented
        a, b = self.lo * other, self.hi * other
        point = None if self.point is None else self.point * other
        if isinstance(other, Real):
            return Interval(a, b, point) if other >= 0 else Interval(b, a, point)
        nonneg = other >= 0
        return Interval(torch.where(nonneg, a, b), torch.where(nonneg, b, a), point)

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return (f"Interval(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device}, "
                f"mean width={float(self.width.float().mean()) if self.lo.numel() else 0.0:.4g}, "
                f"point={'yes' if self.point is not None else 'no'})")
