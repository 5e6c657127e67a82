"""Interval weights: frozen trained parameters widened by trainable non-negative offsets.

For a point parameter ``p`` of a module (docs/method.md section 1)::

    p_lo = p - p_offset_lo,   p_hi = p + p_offset_hi     (offsets >= 0, start at 0)

The offsets are registered next to the parameter they widen, under its name plus
``_offset_lo`` / ``_offset_hi``: ``weight`` has ``weight_offset_lo``, a MultiheadAttention's
``in_proj_weight`` has ``in_proj_weight_offset_lo`` and its ``out_proj.weight`` has
``out_proj.weight_offset_lo``. :class:`_IntervalWeights` is the one implementation of this for
every interval layer with interval weights (the Linear/Conv layers of :mod:`.layers` and
:class:`~inn_cuda.nn.IntervalMultiheadAttention`); :mod:`.parameters` finds them by it.
"""

from __future__ import annotations

import copy
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn

Tensor = torch.Tensor
Pair = Tuple[Optional[Tensor], Optional[Tensor]]


def _frozen(t: Tensor, copy: bool) -> nn.Parameter:
    """A trained tensor as a Parameter that never trains (``requires_grad=False``, so
    ``DistributedDataParallel`` neither reduces nor re-broadcasts it); ``copy=False`` shares its
    storage."""
    data = t.detach().clone() if copy else t.detach()  # detach() shares the storage
    return nn.Parameter(data, requires_grad=False)


class _IntervalWeights(nn.Module):
    """A module whose point parameters named in ``widened`` (qualified names, the main weight
    first; a missing bias is ``None``) carry offsets. Subclasses set ``widened`` and call
    :meth:`_register_offsets` once those parameters exist."""

    widened: Tuple[str, ...] = ()

    def _register_offsets(self, offsets: bool) -> None:
        """Zero offsets for every widened parameter (``None`` with ``offsets=False``: the
        degenerate weight interval ``[p, p]``)."""
        for name in self.widened:
            owner, leaf, point = self._owner(name)
            for side in ("lo", "hi"):
                offset = None if point is None or not offsets else \
                    nn.Parameter(torch.zeros_like(point))
                owner.register_parameter(f"{leaf}_offset_{side}", offset)

    def _owner(self, name: str) -> Tuple[nn.Module, str, Optional[Tensor]]:
        path, _, leaf = name.rpartition(".")
        owner = self.get_submodule(path)
        return owner, leaf, getattr(owner, leaf)

    def _parts(self, name: str) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
        """The point parameter and its two offsets (``None`` where absent)."""
        owner, leaf, point = self._owner(name)
        return point, getattr(owner, f"{leaf}_offset_lo"), getattr(owner, f"{leaf}_offset_hi")

    # ---------------------------------------------------------------------------------- bounds

    @property
    def has_offsets(self) -> bool:
        return self._parts(self.widened[0])[1] is not None

    def bounds(self, name: str) -> Pair:
        """``(p - p_offset_lo, p + p_offset_hi)`` of the widened parameter ``name``; ``(p, p)``
        without offsets, ``(None, None)`` for a missing bias."""
        point, offset_lo, offset_hi = self._parts(name)
        if point is None or offset_lo is None:
            return point, point
        return self._bounds(name, point, offset_lo, offset_hi)

    def named_bounds(self) -> Iterator[Tuple[str, Pair]]:
        """``(name, (lo, hi))`` for every widened parameter that exists."""
        for name in self.widened:
            if self._parts(name)[0] is not None:
                yield name, self.bounds(name)

    def _bounds(self, name: str, point: Tensor, offset_lo: Tensor, offset_hi: Tensor) -> Pair:
        """``(point - offset_lo, point + offset_hi)``, reused between calls while none of the
        three tensors changed: the same objects with the same storage, dtype and device (a
        ``.to()`` or assignment changes them) at the same version counters (an optimiser step,
        :meth:`project_`, ``load_state_dict`` and any other in-place write bump them). Only
        where no autograd graph is being recorded for them (inference under ``no_grad``, or
        frozen offsets): a cached result must not carry an old graph. Not kept in pickles,
        copies or the state_dict."""
        tensors = (point, offset_lo, offset_hi)
        recording = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        if recording or torch.compiler.is_compiling():
            return point - offset_lo, point + offset_hi
        key = tuple((t, t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)
        cache = self.__dict__.setdefault("_bounds_cache", {})
        entry = cache.get(name)
        if entry is not None and all(a[0] is b[0] and a[1:] == b[1:]
                                     for a, b in zip(entry[0], key)):
            return entry[1]
        bounds = (point - offset_lo, point + offset_hi)
        cache[name] = (key, bounds)
        return bounds

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state.pop("_bounds_cache", None)
        return state

    def __deepcopy__(self, memo):
        cache = self.__dict__.pop("_bounds_cache", None)
        try:
            cls = type(self)
            copied = cls.__new__(cls)
            memo[id(self)] = copied
            for key, value in self.__dict__.items():
                copied.__dict__[key] = copy.deepcopy(value, memo)
            return copied
        finally:
            if cache is not None:
                self.__dict__["_bounds_cache"] = cache

    def offsets(self) -> Iterator[nn.Parameter]:
        """The offset Parameters of this layer, lo then hi per widened parameter (none with
        ``offsets=False``)."""
        for name in self.widened:
            _, offset_lo, offset_hi = self._parts(name)
            if offset_lo is not None:
                yield offset_lo
                yield offset_hi

    @torch.no_grad()
    def project_(self) -> "_IntervalWeights":
        """Clamp every offset back to >= 0 (call after each optimiser step)."""
        for offset in self.offsets():
            offset.clamp_(min=0)
        return self
