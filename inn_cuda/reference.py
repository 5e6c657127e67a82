"""Pure-PyTorch semantics of every inn_cuda op.

This module is the oracle the kernels are tested against and the fallback that serves an op when
the compiled extension has no kernel for it (with a warning, see ``inn_cuda._backend``).

Semantics (METHOD.md section 2). A term ``w * v`` with ``w in [a, b]`` and ``v in [l, h]`` has the
exact bounds

    lo = min(l * (l >= 0 ? a : b), h * (h >= 0 ? a : b))
    hi = max(l * (l >= 0 ? b : a), h * (h >= 0 ? b : a))

and a linear or convolution layer sums these per-term bounds. With ``input_nonneg=True`` the caller
guarantees ``l >= 0`` and each bound is one product chosen by the weight's sign:
``lo = a * (a >= 0 ? l : h)``, ``hi = b * (b >= 0 ? h : l)``.

Conventions shared with the kernels (``csrc/interval_math.h``): zero counts as non-negative; at a
tie between the two candidates the one built from ``l`` is selected; a NaN candidate is always
selected, so NaN propagates. Gradients flow only through the selected candidate; ``torch.where``
implements exactly that under autograd.

Everything here is differentiable, so the reference backward of an op is autograd through its
reference forward (:func:`vjp`).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Pair = Tuple[Tensor, Tensor]

# The general (signed-input) product is elementwise over (rows, outputs, reduction): it is
# evaluated in row chunks holding at most this many elements per temporary.
_GENERAL_CHUNK_ELEMENTS = 1 << 22


def _nonneg_split(w: Tensor) -> Pair:
    """(w where w >= 0 else 0, w where w < 0 else 0); NaN lands in the negative part."""
    zero = torch.zeros((), dtype=w.dtype, device=w.device)
    nonneg = w >= 0
    return torch.where(nonneg, w, zero), torch.where(nonneg, zero, w)


def _select(take_first: Tensor, first: Tensor, second: Tensor) -> Tensor:
    return torch.where(take_first, first, second)


def term_bounds(a: Tensor, b: Tensor, l: Tensor, h: Tensor) -> Pair:
    """Exact bounds of the elementwise product of intervals ``[a, b] * [l, h]`` (broadcasting)."""
    l_nonneg, h_nonneg = l >= 0, h >= 0
    lo_l = l * _select(l_nonneg, a, b)
    lo_h = h * _select(h_nonneg, a, b)
    hi_l = l * _select(l_nonneg, b, a)
    hi_h = h * _select(h_nonneg, b, a)
    lo = _select((lo_l <= lo_h) | torch.isnan(lo_l), lo_l, lo_h)
    hi = _select((hi_l >= hi_h) | torch.isnan(hi_l), hi_l, hi_h)
    return lo, hi


def _add_bias(y_lo: Tensor, y_hi: Tensor, b_lo: Optional[Tensor], b_hi: Optional[Tensor],
              channel_dim: int) -> Pair:
    if b_lo is None:
        return y_lo, y_hi
    shape = [1] * y_lo.dim()
    shape[channel_dim] = -1
    return y_lo + b_lo.reshape(shape), y_hi + b_hi.reshape(shape)


def _general_matmul(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor) -> Pair:
    """Exact interval product of x (M, K) with w (N, K)^T, elementwise in row chunks."""
    m, k = x_lo.shape
    n = w_lo.shape[0]
    if m == 0 or n == 0 or k == 0:
        return x_lo.new_zeros(m, n), x_lo.new_zeros(m, n)
    rows = max(1, _GENERAL_CHUNK_ELEMENTS // max(1, n * k))
    outs_lo, outs_hi = [], []
    a, b = w_lo.unsqueeze(0), w_hi.unsqueeze(0)
    for start in range(0, m, rows):
        l = x_lo[start:start + rows].unsqueeze(1)
        h = x_hi[start:start + rows].unsqueeze(1)
        lo, hi = term_bounds(a, b, l, h)
        outs_lo.append(lo.sum(-1))
        outs_hi.append(hi.sum(-1))
    return torch.cat(outs_lo), torch.cat(outs_hi)


def _nonneg_matmul(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor) -> Pair:
    a_pos, a_neg = _nonneg_split(w_lo)
    b_pos, b_neg = _nonneg_split(w_hi)
    y_lo = F.linear(x_lo, a_pos) + F.linear(x_hi, a_neg)
    y_hi = F.linear(x_hi, b_pos) + F.linear(x_lo, b_neg)
    return y_lo, y_hi


def interval_linear(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                    b_lo: Optional[Tensor] = None, b_hi: Optional[Tensor] = None,
                    input_nonneg: bool = False) -> Pair:
    """Interval ``x @ w.T + b`` for x of shape (*, K), w (N, K), b (N,)."""
    batch_shape = x_lo.shape[:-1]
    k = x_lo.shape[-1]
    x_lo2, x_hi2 = x_lo.reshape(-1, k), x_hi.reshape(-1, k)
    product = _nonneg_matmul if input_nonneg else _general_matmul
    y_lo, y_hi = product(x_lo2, x_hi2, w_lo, w_hi)
    y_lo, y_hi = _add_bias(y_lo, y_hi, b_lo, b_hi, channel_dim=1)
    n = w_lo.shape[0]
    return y_lo.reshape(*batch_shape, n), y_hi.reshape(*batch_shape, n)


def _conv2d_general(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                    stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                    groups: int) -> Pair:
    """Exact interval conv2d as im2col followed by the exact interval matmul, per group."""
    batch, channels, height, width = x_lo.shape
    out_channels, channels_per_group, kh, kw = w_lo.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    unfold = dict(kernel_size=(kh, kw), dilation=tuple(dilation), padding=tuple(padding),
                  stride=tuple(stride))
    cols_lo = F.unfold(x_lo, **unfold)  # (B, C*kh*kw, L), channel-major within a group
    cols_hi = F.unfold(x_hi, **unfold)
    pixels = cols_lo.shape[-1]
    k_group = channels_per_group * kh * kw
    out_per_group = out_channels // groups
    ys_lo, ys_hi = [], []
    for g in range(groups):
        cl = cols_lo[:, g * k_group:(g + 1) * k_group].transpose(1, 2).reshape(-1, k_group)
        ch = cols_hi[:, g * k_group:(g + 1) * k_group].transpose(1, 2).reshape(-1, k_group)
        wl = w_lo[g * out_per_group:(g + 1) * out_per_group].reshape(out_per_group, k_group)
        wh = w_hi[g * out_per_group:(g + 1) * out_per_group].reshape(out_per_group, k_group)
        lo, hi = _general_matmul(cl, ch, wl, wh)
        ys_lo.append(lo.reshape(batch, pixels, out_per_group))
        ys_hi.append(hi.reshape(batch, pixels, out_per_group))
    y_lo = torch.cat(ys_lo, dim=2).transpose(1, 2).reshape(batch, out_channels, out_h, out_w)
    y_hi = torch.cat(ys_hi, dim=2).transpose(1, 2).reshape(batch, out_channels, out_h, out_w)
    return y_lo, y_hi


def interval_conv2d(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                    b_lo: Optional[Tensor], b_hi: Optional[Tensor],
                    stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                    groups: int, input_nonneg: bool = False) -> Pair:
    """Interval ``F.conv2d`` on NCHW input; stride/padding/dilation are explicit int pairs."""
    if input_nonneg:
        conv = dict(stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation),
                    groups=groups)
        a_pos, a_neg = _nonneg_split(w_lo)
        b_pos, b_neg = _nonneg_split(w_hi)
        y_lo = F.conv2d(x_lo, a_pos, **conv) + F.conv2d(x_hi, a_neg, **conv)
        y_hi = F.conv2d(x_hi, b_pos, **conv) + F.conv2d(x_lo, b_neg, **conv)
    else:
        y_lo, y_hi = _conv2d_general(x_lo, x_hi, w_lo, w_hi, stride, padding, dilation, groups)
    return _add_bias(y_lo, y_hi, b_lo, b_hi, channel_dim=1)


def _zero_insert(x: Tensor, stride: Sequence[int]) -> Tensor:
    """Insert stride-1 zeros between pixels (the input of the equivalent stride-1 convolution)."""
    batch, channels, height, width = x.shape
    out = x.new_zeros(batch, channels, (height - 1) * stride[0] + 1 if height else 0,
                      (width - 1) * stride[1] + 1 if width else 0)
    out[:, :, ::stride[0], ::stride[1]] = x
    return out


def _transpose_weight(w: Tensor, groups: int) -> Tensor:
    """(C_in, C_out/g, kh, kw) of a transposed conv -> flipped (C_out, C_in/g, kh, kw) of conv2d."""
    c_in, out_per_group, kh, kw = w.shape
    w = w.reshape(groups, c_in // groups, out_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * out_per_group, c_in // groups, kh, kw).flip(-1, -2)


def interval_conv_transpose2d(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                              b_lo: Optional[Tensor], b_hi: Optional[Tensor],
                              stride: Sequence[int], padding: Sequence[int],
                              output_padding: Sequence[int], groups: int,
                              dilation: Sequence[int], input_nonneg: bool = False) -> Pair:
    """Interval ``F.conv_transpose2d``; weight of shape (C_in, C_out/groups, kh, kw)."""
    if input_nonneg:
        conv = dict(stride=tuple(stride), padding=tuple(padding),
                    output_padding=tuple(output_padding), groups=groups, dilation=tuple(dilation))
        a_pos, a_neg = _nonneg_split(w_lo)
        b_pos, b_neg = _nonneg_split(w_hi)
        y_lo = F.conv_transpose2d(x_lo, a_pos, **conv) + F.conv_transpose2d(x_hi, a_neg, **conv)
        y_hi = F.conv_transpose2d(x_hi, b_pos, **conv) + F.conv_transpose2d(x_lo, b_neg, **conv)
        return _add_bias(y_lo, y_hi, b_lo, b_hi, channel_dim=1)
    # A transposed convolution is a stride-1 convolution of the zero-inserted input with the
    # flipped, transposed kernel; the inserted zeros are degenerate intervals and add nothing.
    kh, kw = w_lo.shape[-2:]
    pads = []
    for dim, k in ((1, kw), (0, kh)):  # F.pad order: last dim first
        edge = dilation[dim] * (k - 1) - padding[dim]
        pads += [edge, edge + output_padding[dim]]
    x_lo2 = F.pad(_zero_insert(x_lo, stride), pads)
    x_hi2 = F.pad(_zero_insert(x_hi, stride), pads)
    y_lo, y_hi = _conv2d_general(x_lo2, x_hi2, _transpose_weight(w_lo, groups),
                                 _transpose_weight(w_hi, groups), (1, 1), (0, 0), dilation, groups)
    return _add_bias(y_lo, y_hi, b_lo, b_hi, channel_dim=1)


def vjp(forward: Callable[..., Pair], args: Sequence, wrt: Sequence[int], grad_lo: Tensor,
        grad_hi: Tensor) -> Tuple[Tensor, ...]:
    """Gradients of ``sum(grad_lo * y_lo + grad_hi * y_hi)`` with respect to ``args[i]`` for ``i`` in
    ``wrt``, where ``(y_lo, y_hi) = forward(*args)``: the reference backward of every op."""
    with torch.enable_grad():
        args = list(args)
        leaves = [args[i].detach().requires_grad_(True) for i in wrt]
        for i, leaf in zip(wrt, leaves):
            args[i] = leaf
        y_lo, y_hi = forward(*args)
        grads = torch.autograd.grad((y_lo, y_hi), leaves, (grad_lo, grad_hi), allow_unused=True)
    return tuple(torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads))


def _backward_of(forward: Callable[..., Pair], wrt: Tuple[int, int]) -> Callable[..., Pair]:
    """The reference of a ``*_backward_input`` / ``*_backward_weight`` op: arguments
    ``(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, *config)``, gradients for ``wrt`` of
    ``forward(x_lo, x_hi, w_lo, w_hi, None, None, *config)``."""
    def backward(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, *config):
        return vjp(forward, (x_lo, x_hi, w_lo, w_hi, None, None, *config), wrt, grad_lo, grad_hi)
    backward.__name__ = f"{forward.__name__}_backward_{'input' if wrt[0] == 0 else 'weight'}"
    return backward


def _with_backward_ops(forwards: Sequence[Callable[..., Pair]]) -> dict:
    table = {}
    for forward in forwards:
        table[forward.__name__] = forward
        table[forward.__name__ + "_backward_input"] = _backward_of(forward, (0, 1))
        table[forward.__name__ + "_backward_weight"] = _backward_of(forward, (2, 3))
    return table


#: Every op of the ``torch.ops.inn_cuda`` namespace (by name, in schema argument order).
OPS = _with_backward_ops([interval_linear, interval_conv2d, interval_conv_transpose2d])
