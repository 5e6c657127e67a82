"""The value that flows through interval layers."""

from __future__ import annotations

import math
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

    A degenerate interval made by :meth:`from_point` holds one tensor object three times; every
    map keeps that sharing (``hi is lo``) and computes once, so a point that enters an interval
    network costs one evaluation until the first interval weight widens it.
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

    @property
    def ndim(self) -> int:
        return self.lo.dim()

    def size(self, *dim) -> torch.Size:
        return self.lo.size(*dim)

    def dim(self) -> int:
        return self.lo.dim()

    def contains(self, x: Tensor, tol: float = 0.0) -> Tensor:
        """Elementwise ``lo - tol <= x <= hi + tol``."""
        return (x >= self.lo - tol) & (x <= self.hi + tol)

    # ------------------------------------------------------------------ maps

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Interval":
        """Apply a monotone non-decreasing elementwise map (or any bound-wise op such as a
        reshape) to each bound and to the point. Shared tensors are mapped once."""
        lo = fn(self.lo)
        hi = lo if self.hi is self.lo else fn(self.hi)
        if self.point is None:
            point = None
        elif self.point is self.lo:
            point = lo
        elif self.point is self.hi:
            point = hi
        else:
            point = fn(self.point)
        return Interval(lo, hi, point)

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
        # a - b is rounded exactly like a + (-b), so the point matches the point network's.
        if isinstance(other, (Interval, Tensor, Real)):
            return self + (-other)
        return NotImplemented

    def __rsub__(self, other) -> "Interval":
        if isinstance(other, (Tensor, Real)):
            return (-self) + other
        return NotImplemented

    def __mul__(self, other) -> "Interval":
        """Multiplication by a scalar or a tensor of constants (bounds swap where negative), or
        the exact elementwise product of two intervals (min and max of the four endpoint
        products; NaN propagates)."""
        if isinstance(other, Interval):
            return _interval_product(self, other)
        if not isinstance(other, (Tensor, Real)):
            return NotImplemented
        a = self.lo * other
        b = a if self.hi is self.lo else self.hi * other
        point = None if self.point is None else (
            a if self.point is self.lo else self.point * other)
        if isinstance(other, Real):
            return Interval(a, b, point) if other >= 0 else Interval(b, a, point)
        nonneg = other >= 0
        return Interval(torch.where(nonneg, a, b), torch.where(nonneg, b, a), point)

    __rmul__ = __mul__

    def __truediv__(self, other) -> "Interval":
        """Division by a scalar or a tensor of constants (bounds swap where the divisor's sign
        bit is set, so that division by -0.0 still gives an ordered pair)."""
        if isinstance(other, Interval):
            raise TypeError("Interval / Interval is not supported; divide by constants only")
        if not isinstance(other, (Tensor, Real)):
            return NotImplemented
        a = self.lo / other
        b = a if self.hi is self.lo else self.hi / other
        point = None if self.point is None else (
            a if self.point is self.lo else self.point / other)
        if isinstance(other, Real):
            negative = math.copysign(1.0, other) < 0
            return Interval(b, a, point) if negative else Interval(a, b, point)
        negative = torch.signbit(other) if other.is_floating_point() else other < 0
        return Interval(torch.where(negative, b, a), torch.where(negative, a, b), point)

    def __rtruediv__(self, other):
        raise TypeError("dividing by an Interval is not supported (the reciprocal of an interval "
                        "that contains 0 is unbounded); divide an Interval by constants only")

    def __repr__(self) -> str:
        return (f"Interval(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device}, "
                f"mean width={float(self.width.float().mean()) if self.lo.numel() else 0.0:.4g}, "
                f"point={'yes' if self.point is not None else 'no'})")


def _interval_product(x: Interval, y: Interval) -> Interval:
    products = [x.lo * y.lo, x.lo * y.hi, x.hi * y.lo, x.hi * y.hi]
    lo, hi = products[0], products[0]
    for p in products[1:]:
        lo, hi = torch.minimum(lo, p), torch.maximum(hi, p)
    point = None if x.point is None or y.point is None else x.point * y.point
    return Interval(lo, hi, point)
