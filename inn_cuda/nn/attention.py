"""Interval attention: the product of two interval activations, exact softmax bounds, and the
attention layers built from them.

* :func:`matmul` is exact for each product (:func:`inn_cuda.interval_matmul`). In attention the
  two operands derive from the same input (``q`` and ``k`` from ``x``), which the product cannot
  see: the composition is sound, not exact, once the input has width.
* :func:`softmax_bounds` is exact per element: ``softmax(x)_i`` increases in ``x_i`` and
  decreases in every other ``x_j``, so
  ``lo_i = 1 / (1 + sum_{j != i} exp(h_j - l_i))`` and
  ``hi_i = 1 / (1 + sum_{j != i} exp(l_j - h_i))``,
  computed as ``sigmoid(l_i - logsumexp_{j != i} h_j)`` with a leave-one-out log-sum-exp that is
  shifted by the largest other element (no overflow, no cancellation).
* :func:`scaled_dot_product_attention` composes them; masks are point values.
* :class:`IntervalMultiheadAttention` has interval projection weights like every parametrised
  layer (:mod:`.offsets`): ``in_proj_weight`` (or ``q/k/v_proj_weight`` when ``kdim``/``vdim``
  differ from ``embed_dim``), ``in_proj_bias``, ``out_proj.weight`` and ``out_proj.bias``
  are widened by trainable offsets. Each projection is the exact interval linear map
  (:func:`inn_cuda.interval_linear` with ``W - offset_lo``, ``W + offset_hi``), exact per
  product; then :func:`_attend`, and the output projection. The whole layer is sound, not
  exact: ``q``, ``k`` and ``v`` share the input (and ``out_proj`` sees the attention output,
  which depends on the in-projection weights too), which each exact step cannot see. At zero
  width it reproduces the torch module up to rounding. For :func:`inn_cuda.to_interval` it is
  one parametrised layer (``last=``, ``include=``, :func:`~inn_cuda.nn.interval_layers`) that
  holds the offsets of all four projections. ``add_bias_kv`` (``bias_k``, ``bias_v``) and
  ``add_zero_attn`` are refused.
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..matmul import interval_matmul
from ..ops import interval_linear
from .functional import graph_function
from .interval import Interval
from .offsets import _IntervalWeights, _frozen

Tensor = torch.Tensor
Pair = Tuple[Optional[Tensor], Optional[Tensor]]


def _logsumexp_others(t: Tensor, dim: int) -> Tensor:
    """``log sum_{j != i} exp(t_j)`` along ``dim`` for every ``i`` (-inf for a single element)."""
    minus_inf = torch.full((), -float("inf"), dtype=t.dtype, device=t.device)
    top, where = t.max(dim, keepdim=True)
    top_safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    exp = torch.exp(t - top_safe)
    # for i that is not the argmax the sum over the others is >= 1 (it holds the argmax's 1)
    not_max = torch.log(exp.sum(dim, keepdim=True) - exp) + top_safe
    is_max = torch.zeros_like(t, dtype=torch.bool).scatter(dim, where, True)
    others = torch.where(is_max, minus_inf, t)  # the argmax's others, shifted by their maximum
    second = others.amax(dim, keepdim=True)
    second_safe = torch.where(torch.isfinite(second), second, torch.zeros_like(second))
    at_max = torch.log(torch.exp(others - second_safe).sum(dim, keepdim=True)) + second_safe
    return torch.where(is_max, at_max, not_max)


def softmax_bounds(lo: Tensor, hi: Tensor, dim: int) -> Tuple[Tensor, Tensor]:
    """Exact bounds of ``softmax(x, dim)`` over ``x in [lo, hi]`` (see the module docstring)."""
    return (torch.sigmoid(lo - _logsumexp_others(hi, dim)),
            torch.sigmoid(hi - _logsumexp_others(lo, dim)))


@graph_function
def softmax(x, dim=None, _stacklevel: int = 3, dtype=None):
    """Interval ``F.softmax`` / ``torch.softmax`` / ``Tensor.softmax`` (exact per element)."""
    if not isinstance(x, Interval):
        return F.softmax(x, dim, dtype=dtype)
    if dim is None:
        raise ValueError("softmax: pass dim explicitly")
    x = x if dtype is None else x.to(dtype)
    point = None if x.point is None else F.softmax(x.point, dim)
    if x.hi is x.lo:
        return Interval.from_point(F.softmax(x.lo, dim), keep_point=point is not None)
    return Interval(*softmax_bounds(x.lo, x.hi, dim), point)


class IntervalSoftmax(nn.Module):
    """Interval ``nn.Softmax`` (exact per element)."""

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim

    @classmethod
    def from_module(cls, module: nn.Softmax) -> "IntervalSoftmax":
        return cls(module.dim)

    def forward(self, x):
        return softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def _as_interval(x) -> Interval:
    return x if isinstance(x, Interval) else Interval.from_point(x)


def _interval_matmul(a: Interval, b: Interval, input_nonneg: bool = False) -> Interval:
    if a.hi is a.lo and b.hi is b.lo:
        product = torch.matmul(a.lo, b.lo)
        lo = hi = product
    else:
        lo, hi = interval_matmul(a.lo, a.hi, b.lo, b.hi, input_nonneg=input_nonneg)
    point = None if a.point is None or b.point is None else torch.matmul(a.point, b.point)
    return Interval(lo, hi, point)


@graph_function
def matmul(a, b):
    """Interval ``torch.matmul`` / ``@`` (exact for independent operands, any of them a
    tensor constant)."""
    if not isinstance(a, Interval) and not isinstance(b, Interval):
        return torch.matmul(a, b)
    return _interval_matmul(_as_interval(a), _as_interval(b))


def _transpose(x: Interval) -> Interval:
    return x.map(lambda t: t.transpose(-2, -1))


def _attend(q: Interval, k: Interval, v: Interval, scale: float,
            additive_mask: Optional[Tensor]) -> Tuple[Interval, Interval]:
    """softmax(q k^T * scale + mask) v, bounds only (the caller supplies the point); returns the
    output and the attention weights."""
    bare = lambda x: Interval(x.lo, x.hi)  # noqa: E731
    scores = _interval_matmul(bare(q), _transpose(bare(k))) * scale
    if additive_mask is not None:
        scores = scores + additive_mask
    weights = softmax(scores, -1)
    return _interval_matmul(weights, bare(v), input_nonneg=True), weights


def _sdpa_mask(attn_mask: Optional[Tensor], is_causal: bool, length: int, source: int,
               like: Tensor) -> Optional[Tensor]:
    """The additive mask of ``F.scaled_dot_product_attention`` (bool True = take part)."""
    minus_inf = torch.full((), -float("inf"), dtype=like.dtype, device=like.device)
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    mask = None
    if is_causal:
        keep = torch.ones(length, source, dtype=torch.bool, device=like.device).tril()
        mask = torch.where(keep, zero, minus_inf)
    if attn_mask is not None:
        extra = torch.where(attn_mask, zero, minus_inf) if attn_mask.dtype == torch.bool \
            else attn_mask.to(like.dtype)
        mask = extra if mask is None else mask + extra
    return mask


@graph_function
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """Interval ``F.scaled_dot_product_attention`` (bool or additive ``attn_mask``, ``is_causal``;
    ``dropout_p`` must be 0, since the point's dropout mask is not the bounds')."""
    fn = lambda q, k, v: F.scaled_dot_product_attention(  # noqa: E731
        q, k, v, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
    if not any(isinstance(t, Interval) for t in (query, key, value)):
        return fn(query, key, value)
    if isinstance(attn_mask, Interval):
        raise TypeError("scaled_dot_product_attention: attn_mask must be a point tensor")
    if dropout_p:
        raise ValueError(f"scaled_dot_product_attention: dropout_p={dropout_p} has no interval "
                         f"counterpart (its mask is drawn inside the op); use 0 (eval mode)")
    if enable_gqa:
        raise ValueError("scaled_dot_product_attention: enable_gqa=True is not supported")
    q, k, v = (_as_interval(t) for t in (query, key, value))
    scale = 1.0 / math.sqrt(q.lo.shape[-1]) if scale is None else scale
    mask = _sdpa_mask(attn_mask, is_causal, q.lo.shape[-2], k.lo.shape[-2], q.lo)
    out, _ = _attend(q, k, v, scale, mask)
    points = (q.point, k.point, v.point)
    point = None if any(p is None for p in points) else fn(*points)
    return Interval(out.lo, out.hi, point)


class IntervalMultiheadAttention(_IntervalWeights, nn.MultiheadAttention):
    """Interval ``nn.MultiheadAttention`` with interval projection weights (see the module
    docstring). Its parameters keep torch's names, frozen; the offsets sit next to them
    (``in_proj_weight_offset_lo``, ``out_proj.weight_offset_hi``, ...). The point output is the
    torch module's on the inputs' points (this is that module's configuration with frozen
    copies of its parameters). ``input_nonneg``: the caller's guarantee that query, key and
    value are all ``>= 0`` (the in-projections' fast path). Not supported: ``add_bias_kv``,
    ``add_zero_attn``, attention dropout in train mode."""

    def __init__(self, module: nn.MultiheadAttention, *, offsets: bool = True,  # noqa: D107
                 input_nonneg: bool = False, copy_weights: bool = False):
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"IntervalMultiheadAttention expects an nn.MultiheadAttention, got "
                            f"{type(module).__name__}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("MultiheadAttention with add_bias_kv or add_zero_attn has no "
                             "interval counterpart")
        # a copy with frozen parameters sharing (or copying) the trained storage: the offsets
        # registered on it and its out_proj leave the original module as it was
        memo = {id(p): _frozen(p, copy_weights) for p in module.parameters()}
        self.__dict__.update(copy.deepcopy(module, memo).__dict__)
        self.widened = (("in_proj_weight",) if self._qkv_same_embed_dim else
                        ("q_proj_weight", "k_proj_weight", "v_proj_weight")) + \
            ("in_proj_bias", "out_proj.weight", "out_proj.bias")
        self._register_offsets(offsets)
        self.input_nonneg = bool(input_nonneg)

    @classmethod
    def from_module(cls, module: nn.MultiheadAttention, **kwargs) -> "IntervalMultiheadAttention":
        """The same as the constructor (``offsets``, ``input_nonneg``, ``copy_weights``)."""
        return cls(module, **kwargs)

    def _in_projections(self) -> Tuple[Tuple[Pair, Pair, Pair], Tuple[Pair, Pair, Pair]]:
        """The bounds of the query, key and value projections' weights, then of their biases."""
        e = self.embed_dim

        def thirds(lo, hi):  # the packed (3E, ...) parameters, query rows first
            if lo is None:
                return ((None, None),) * 3
            return tuple((lo[i * e:(i + 1) * e], hi[i * e:(i + 1) * e]) for i in range(3))

        weights = thirds(*self.bounds("in_proj_weight")) if self._qkv_same_embed_dim else \
            tuple(self.bounds(f"{n}_proj_weight") for n in "qkv")
        return weights, thirds(*self.bounds("in_proj_bias"))

    @staticmethod
    def _project(x: Interval, weight: Pair, bias: Pair, input_nonneg: bool) -> Interval:
        """The exact interval linear map by an interval weight and bias (bounds only)."""
        return Interval(*interval_linear(x.lo, x.hi, *weight, *bias, input_nonneg=input_nonneg))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        m = self
        inputs = (query, key, value)
        options = dict(key_padding_mask=key_padding_mask, need_weights=need_weights,
                       attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                       is_causal=is_causal)
        if not m.has_offsets and not any(isinstance(t, Interval) for t in inputs):
            return super().forward(*inputs, **options)
        if m.training and m.dropout > 0:
            raise ValueError("IntervalMultiheadAttention: attention dropout in train mode has "
                             "no interval counterpart (the point's mask is drawn inside torch's "
                             "op); use eval mode or dropout=0")
        q_in, k_in, v_in = (_as_interval(t) for t in inputs)
        unbatched = q_in.lo.dim() == 2
        to_lne = (lambda t: t.unsqueeze(1)) if unbatched else \
            (lambda t: t.transpose(0, 1)) if m.batch_first else (lambda t: t)
        bare = lambda x: Interval(x.lo, x.hi).map(to_lne)  # noqa: E731  (L, N, E)
        q_in, k_in, v_in = bare(q_in), bare(k_in), bare(v_in)
        (wq, wk, wv), (bq, bk, bv) = self._in_projections()
        length, batch, _ = q_in.lo.shape
        source = k_in.lo.shape[0]
        heads, head_dim = m.num_heads, m.head_dim

        def split(x: Interval, size: int) -> Interval:  # (S, N, E) -> (N, H, S, hd)
            return x.map(lambda t: t.reshape(size, batch * heads, head_dim).transpose(0, 1)
                         .reshape(batch, heads, size, head_dim))

        q = split(self._project(q_in, wq, bq, m.input_nonneg), length)
        k = split(self._project(k_in, wk, bk, m.input_nonneg), source)
        v = split(self._project(v_in, wv, bv, m.input_nonneg), source)
        mask = self._additive_mask(attn_mask, key_padding_mask, batch, length, source, q.lo)
        out, weights = _attend(q, k, v, 1.0 / math.sqrt(head_dim), mask)
        out = out.map(lambda t: t.permute(2, 0, 1, 3).reshape(length, batch, m.embed_dim))
        out = self._project(out, self.bounds("out_proj.weight"), self.bounds("out_proj.bias"),
                            False)
        out = out.map(lambda t: t.squeeze(1)) if unbatched else \
            out.map(lambda t: t.transpose(0, 1)) if m.batch_first else out
        points = tuple(t.point if isinstance(t, Interval) else t for t in inputs)
        point_out = None
        if not any(p is None for p in points):
            point_out = super().forward(*points, **options)
        result = Interval(out.lo, out.hi, None if point_out is None else point_out[0])
        if not need_weights:
            return result, None
        if average_attn_weights:
            weights = weights.map(lambda t: t.mean(1))
        if unbatched:
            weights = weights.map(lambda t: t.squeeze(0))
        return result, Interval(weights.lo, weights.hi,
                                None if point_out is None else point_out[1])

    @staticmethod
    def _additive_mask(attn_mask, key_padding_mask, batch, length, source, like):
        minus_inf = torch.full((), -float("inf"), dtype=like.dtype, device=like.device)
        zero = torch.zeros((), dtype=like.dtype, device=like.device)

        def additive(t):  # MultiheadAttention: bool True = masked out
            return torch.where(t, minus_inf, zero) if t.dtype == torch.bool else t.to(like.dtype)

        mask = None
        if attn_mask is not None:
            if isinstance(attn_mask, Interval):
                raise TypeError("MultiheadAttention: attn_mask must be a point tensor")
            mask = additive(attn_mask)
            mask = mask.reshape(batch, -1, length, source) if mask.dim() == 3 else mask
        if key_padding_mask is not None:
            padding = additive(key_padding_mask).reshape(batch, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask

    def extra_repr(self) -> str:
        return f"offsets={self.has_offsets}, input_nonneg={self.input_nonneg}"
