"""Pure-PyTorch semantics of every inn_cuda op.

This module is the oracle the kernels are tested against and the fallback that serves an op when
the compiled extension has no kernel for it (with a warning, see ``inn_cuda._backend``).

Semantics (docs/method.md section 2). A term ``w * v`` with ``w in [a, b]`` and ``v in [l, h]``
has the exact bounds

    lo = min(l * (l >= 0 ? a : b), h * (h >= 0 ? a : b))
    hi = max(l * (l >= 0 ? b : a), h * (h >= 0 ? b : a))

and a linear or convolution layer sums these per-term bounds. With ``input_nonneg=True`` the caller
guarantees ``l >= 0`` and each bound is one product chosen by the weight's sign:
``lo = a * (a >= 0 ? l : h)``, ``hi = b * (b >= 0 ? h : l)``.

Conventions shared with the kernels (``csrc/interval_math.h``): zero counts as non-negative; at a
tie between the two candidates the one built from ``l`` is selected; a NaN candidate is always
selected, so NaN propagates; a bound product of an exact zero and an infinity is 0 (``mul_bound``:
a zero weight or input bound contributes nothing, however unbounded the other factor), NaN operands
still give NaN. Gradients flow only through the selected candidate; ``torch.where`` implements
exactly that under autograd.

Everything here is differentiable, so the reference backward of an op is autograd through its
reference forward (:func:`vjp`).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ._shapes import conv2d_output_shape, conv_transpose2d_output_shape

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


def mul_bound(x: Tensor, y: Tensor) -> Tensor:
    """``x * y`` with ``0 * inf = 0`` (``inn::mul_bound``); NaN operands still give NaN."""
    product = x * y
    zero_times_inf = torch.isnan(product) & ~torch.isnan(x) & ~torch.isnan(y)
    return torch.where(zero_times_inf, torch.zeros((), dtype=product.dtype,
                                                    device=product.device), product)


def bilinear_bound(op: Callable[[Tensor, Tensor], Tensor], x: Tensor, w: Tensor) -> Tensor:
    """A bilinear map (``F.linear``, ``F.conv2d``, ...) whose products follow :func:`mul_bound`.
    Without infinities this is ``op(x, w)``. Otherwise the finite parts are mapped as usual and
    each infinite term (an infinite factor times a non-zero one) is counted by sign with ``op``
    on indicator tensors: +inf, -inf, or NaN where both signs meet."""
    x_inf, w_inf = torch.isinf(x), torch.isinf(w)
    if not bool(x_inf.any()) and not bool(w_inf.any()):
        return op(x, w)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    finite = op(torch.where(x_inf, zero, x), torch.where(w_inf, zero, w))

    def count(x_sign: Tensor, w_sign: Tensor) -> Tensor:
        # terms with this sign pair that are infinite: (x inf or w inf), both non-zero
        xi, wi = (x_sign & x_inf).to(x.dtype), (w_sign & w_inf).to(x.dtype)
        xs, ws = x_sign.to(x.dtype), w_sign.to(x.dtype)
        return op(xi, ws) + op(xs, wi) - op(xi, wi)

    positive = count(x > 0, w > 0) + count(x < 0, w < 0)
    negative = count(x > 0, w < 0) + count(x < 0, w > 0)
    inf = torch.full((), float("inf"), dtype=x.dtype, device=x.device)
    out = torch.where(negative > 0, -inf, finite)
    out = torch.where(positive > 0, inf, out)
    return torch.where((positive > 0) & (negative > 0), torch.full_like(out, float("nan")), out)


def term_bounds(a: Tensor, b: Tensor, l: Tensor, h: Tensor) -> Pair:
    """Exact bounds of the elementwise product of intervals ``[a, b] * [l, h]`` (broadcasting)."""
    l_nonneg, h_nonneg = l >= 0, h >= 0
    lo_l = mul_bound(l, _select(l_nonneg, a, b))
    lo_h = mul_bound(h, _select(h_nonneg, a, b))
    hi_l = mul_bound(l, _select(l_nonneg, b, a))
    hi_h = mul_bound(h, _select(h_nonneg, b, a))
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
    rows = max(1, _GENERAL_CHUNK_ELEMENTS // max(1, n * k))
    outs_lo, outs_hi = [], []
    a, b = w_lo.unsqueeze(0), w_hi.unsqueeze(0)
    # One pass even when m == 0, so empty outputs stay connected to the autograd graph.
    for start in range(0, max(m, 1), rows):
        l = x_lo[start:start + rows].unsqueeze(1)
        h = x_hi[start:start + rows].unsqueeze(1)
        lo, hi = term_bounds(a, b, l, h)
        outs_lo.append(lo.sum(-1))
        outs_hi.append(hi.sum(-1))
    return torch.cat(outs_lo), torch.cat(outs_hi)


def _nonneg_matmul(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor) -> Pair:
    a_pos, a_neg = _nonneg_split(w_lo)
    b_pos, b_neg = _nonneg_split(w_hi)
    y_lo = bilinear_bound(F.linear, x_lo, a_pos) + bilinear_bound(F.linear, x_hi, a_neg)
    y_hi = bilinear_bound(F.linear, x_hi, b_pos) + bilinear_bound(F.linear, x_lo, b_neg)
    return y_lo, y_hi


def interval_linear(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                    b_lo: Optional[Tensor] = None, b_hi: Optional[Tensor] = None,
                    input_nonneg: bool = False) -> Pair:
    """Interval ``x @ w.T + b`` for x of shape (*, K), w (N, K), b (N,)."""
    batch_shape = x_lo.shape[:-1]
    k = x_lo.shape[-1]
    rows = batch_shape.numel()  # explicit: reshape cannot infer rows when k == 0
    x_lo2, x_hi2 = x_lo.reshape(rows, k), x_hi.reshape(rows, k)
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
    _, _, out_h, out_w = conv2d_output_shape("interval_conv2d", x_lo.shape, w_lo.shape, stride,
                                             padding, dilation)
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
        op = lambda x, w: F.conv2d(x, w, **conv)  # noqa: E731
        y_lo = bilinear_bound(op, x_lo, a_pos) + bilinear_bound(op, x_hi, a_neg)
        y_hi = bilinear_bound(op, x_hi, b_pos) + bilinear_bound(op, x_lo, b_neg)
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


def _transpose_pads(kernel, padding, output_padding, dilation) -> list:
    """``F.pad`` amounts (last dim first; negative crops) that turn the zero-inserted input of a
    transposed convolution into the input of the equivalent stride-1 convolution."""
    pads = []
    for dim in (1, 0):
        edge = dilation[dim] * (kernel[dim] - 1) - padding[dim]
        pads += [edge, edge + output_padding[dim]]
    return pads


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
        op = lambda x, w: F.conv_transpose2d(x, w, **conv)  # noqa: E731
        y_lo = bilinear_bound(op, x_lo, a_pos) + bilinear_bound(op, x_hi, a_neg)
        y_hi = bilinear_bound(op, x_hi, b_pos) + bilinear_bound(op, x_lo, b_neg)
        return _add_bias(y_lo, y_hi, b_lo, b_hi, channel_dim=1)
    # Each input pixel's terms (one per output channel and tap, summed over the group's input
    # channels) are scattered into the output (F.fold, the adjoint of unfold). Scattering, not a
    # convolution of a zero-inserted input: an inserted zero times an infinite weight would make
    # NaN where there is no term at all.
    batch, in_channels, height, width = x_lo.shape
    _, out_per_group, kh, kw = w_lo.shape
    in_per_group, taps = in_channels // groups, out_per_group * kh * kw
    cols_lo, cols_hi = [], []
    for g in range(groups):
        def rows(x):  # group g of x as (B * H * W, C_in / groups)
            return x[:, g * in_per_group:(g + 1) * in_per_group].flatten(2).transpose(1, 2) \
                .reshape(-1, in_per_group)

        wg = slice(g * in_per_group, (g + 1) * in_per_group)
        lo, hi = _general_matmul(rows(x_lo), rows(x_hi), w_lo[wg].reshape(in_per_group, taps).T,
                                 w_hi[wg].reshape(in_per_group, taps).T)
        cols_lo.append(lo.reshape(batch, height * width, taps).transpose(1, 2))
        cols_hi.append(hi.reshape(batch, height * width, taps).transpose(1, 2))
    # Fold onto the uncropped output, then crop the padding (and pad output_padding beyond it).
    full = conv_transpose2d_output_shape("interval_conv_transpose2d", x_lo.shape, w_lo.shape,
                                         stride, (0, 0), (0, 0), groups, dilation)[2:]
    fold = dict(output_size=full, kernel_size=(kh, kw), dilation=tuple(dilation),
                stride=tuple(stride))
    pads = []
    for dim in (1, 0):  # F.pad lists the last dim first; negative amounts crop
        pads += [-padding[dim], output_padding[dim] - padding[dim]]
    y_lo = F.pad(F.fold(torch.cat(cols_lo, 1), **fold), pads)
    y_hi = F.pad(F.fold(torch.cat(cols_hi, 1), **fold), pads)
    return _add_bias(y_lo, y_hi, b_lo, b_hi, channel_dim=1)


def vjp(forward: Callable[..., Pair], args: Sequence, wrt: Sequence[int], grad_lo: Tensor,
        grad_hi: Tensor) -> Tuple[Tensor, ...]:
    """Gradients of ``sum(grad_lo * y_lo + grad_hi * y_hi)`` with respect to ``args[i]`` for ``i`` in
    ``wrt``, where ``(y_lo, y_hi) = forward(*args)``, by autograd through the reference forward:
    the test oracle for every backward (the explicit formulas below included)."""
    with torch.enable_grad():
        args = list(args)
        leaves = [args[i].detach().requires_grad_(True) for i in wrt]
        for i, leaf in zip(wrt, leaves):
            args[i] = leaf
        y_lo, y_hi = forward(*args)
        grads = torch.autograd.grad((y_lo, y_hi), leaves, (grad_lo, grad_hi), allow_unused=True)
    return tuple(torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads))


# ------------------------------------------------------------------------------------- backward
# Explicit backward formulas (no autograd: they run as dispatcher kernels, where autograd is
# already below the current dispatch key). They follow the selection conventions above.

def _general_matmul_backward(x_lo, x_hi, w_lo, w_hi, g_lo, g_hi) -> Tuple[Tensor, ...]:
    m, k = x_lo.shape
    n = w_lo.shape[0]
    dx_lo, dx_hi = torch.zeros_like(x_lo), torch.zeros_like(x_hi)
    dw_lo, dw_hi = torch.zeros_like(w_lo), torch.zeros_like(w_hi)
    rows = max(1, _GENERAL_CHUNK_ELEMENTS // max(1, n * k))
    a, b = w_lo.unsqueeze(0), w_hi.unsqueeze(0)
    zero = torch.zeros((), dtype=x_lo.dtype, device=x_lo.device)
    for start in range(0, m, rows):
        chunk = slice(start, start + rows)
        l, h = x_lo[chunk].unsqueeze(1), x_hi[chunk].unsqueeze(1)
        l_nonneg, h_nonneg = l >= 0, h >= 0
        for g, lower in ((g_lo[chunk].unsqueeze(2), True), (g_hi[chunk].unsqueeze(2), False)):
            # the weight bound each input bound's candidate multiplies
            w_l = _select(l_nonneg, a, b) if lower else _select(l_nonneg, b, a)
            w_h = _select(h_nonneg, a, b) if lower else _select(h_nonneg, b, a)
            p_l, p_h = l * w_l, h * w_h
            take_l = ((p_l <= p_h) if lower else (p_l >= p_h)) | torch.isnan(p_l)
            dx_lo[chunk] += (g * _select(take_l, w_l, zero)).sum(1)
            dx_hi[chunk] += (g * _select(take_l, zero, w_h)).sum(1)
            factor = g * _select(take_l, l, h)
            # whether the selected candidate's weight bound is w_lo
            uses_a = _select(take_l, l_nonneg, h_nonneg)
            uses_a = uses_a if lower else ~uses_a
            dw_lo += _select(uses_a, factor, zero).sum(0)
            dw_hi += _select(uses_a, zero, factor).sum(0)
    return dx_lo, dx_hi, dw_lo, dw_hi


def _matmul_backward(x_lo, x_hi, w_lo, w_hi, g_lo, g_hi, input_nonneg) -> Tuple[Tensor, ...]:
    """Gradients (x_lo, x_hi, w_lo, w_hi) of the interval product x (M, K) by w (N, K)^T."""
    if not input_nonneg:
        return _general_matmul_backward(x_lo, x_hi, w_lo, w_hi, g_lo, g_hi)
    a_pos, a_neg = _nonneg_split(w_lo)
    b_pos, b_neg = _nonneg_split(w_hi)
    dx_lo = g_lo @ a_pos + g_hi @ b_neg
    dx_hi = g_lo @ a_neg + g_hi @ b_pos
    dw_lo = torch.where(w_lo >= 0, g_lo.T @ x_lo, g_lo.T @ x_hi)
    dw_hi = torch.where(w_hi >= 0, g_hi.T @ x_hi, g_hi.T @ x_lo)
    return dx_lo, dx_hi, dw_lo, dw_hi


def _linear_backward(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg):
    n, k = w_lo.shape
    rows = x_lo.shape[:-1].numel()
    grads = _matmul_backward(x_lo.reshape(rows, k), x_hi.reshape(rows, k), w_lo, w_hi,
                             g_lo.reshape(rows, n), g_hi.reshape(rows, n), input_nonneg)
    return grads[0].reshape(x_lo.shape), grads[1].reshape(x_lo.shape), grads[2], grads[3]


def _conv2d_backward(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, stride, padding, dilation, groups,
                     input_nonneg):
    """im2col, the matrix backward per group, then col2im (``F.fold`` sums overlapping windows,
    the adjoint of ``F.unfold``)."""
    batch, channels, height, width = x_lo.shape
    out_channels, channels_per_group, kh, kw = w_lo.shape
    unfold = dict(kernel_size=(kh, kw), dilation=tuple(dilation), padding=tuple(padding),
                  stride=tuple(stride))
    cols_lo, cols_hi = F.unfold(x_lo, **unfold), F.unfold(x_hi, **unfold)
    k_group = channels_per_group * kh * kw
    out_per_group = out_channels // groups
    pixels = cols_lo.shape[-1]

    def rows(t, g, size):  # (B, groups*size, L) -> group g as (B*L, size)
        return t[:, g * size:(g + 1) * size].transpose(1, 2).reshape(-1, size)

    g_lo2, g_hi2 = g_lo.flatten(2), g_hi.flatten(2)
    dcols_lo, dcols_hi, dws_lo, dws_hi = [], [], [], []
    for g in range(groups):
        wg = slice(g * out_per_group, (g + 1) * out_per_group)
        grads = _matmul_backward(rows(cols_lo, g, k_group), rows(cols_hi, g, k_group),
                                 w_lo[wg].reshape(out_per_group, k_group),
                                 w_hi[wg].reshape(out_per_group, k_group),
                                 rows(g_lo2, g, out_per_group), rows(g_hi2, g, out_per_group),
                                 input_nonneg)
        dcols_lo.append(grads[0].reshape(batch, pixels, k_group).transpose(1, 2))
        dcols_hi.append(grads[1].reshape(batch, pixels, k_group).transpose(1, 2))
        dws_lo.append(grads[2].reshape(out_per_group, channels_per_group, kh, kw))
        dws_hi.append(grads[3].reshape(out_per_group, channels_per_group, kh, kw))
    fold = dict(output_size=(height, width), **unfold)
    return (F.fold(torch.cat(dcols_lo, 1), **fold), F.fold(torch.cat(dcols_hi, 1), **fold),
            torch.cat(dws_lo), torch.cat(dws_hi))


def _untranspose_weight(w2: Tensor, groups: int) -> Tensor:
    """The inverse of :func:`_transpose_weight` (a permutation, so also its adjoint)."""
    out_channels, c_in_per_group, kh, kw = w2.shape
    w = w2.flip(-1, -2).reshape(groups, out_channels // groups, c_in_per_group, kh, kw)
    return w.transpose(1, 2).reshape(groups * c_in_per_group, out_channels // groups, kh, kw)


def _conv_transpose2d_backward(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, stride, padding,
                               output_padding, groups, dilation, input_nonneg):
    """Through the equivalent stride-1 convolution of the zero-inserted, padded input (see the
    forward); the adjoint of the padding is the opposite padding, that of the zero insertion a
    strided slice."""
    pads = _transpose_pads(w_lo.shape[-2:], padding, output_padding, dilation)
    x_lo2 = F.pad(_zero_insert(x_lo, stride), pads)
    x_hi2 = F.pad(_zero_insert(x_hi, stride), pads)
    dx_lo2, dx_hi2, dw_lo2, dw_hi2 = _conv2d_backward(
        g_lo, g_hi, x_lo2, x_hi2, _transpose_weight(w_lo, groups),
        _transpose_weight(w_hi, groups), (1, 1), (0, 0), dilation, groups, input_nonneg)
    crop = [-p for p in pads]
    dx_lo = F.pad(dx_lo2, crop)[:, :, ::stride[0], ::stride[1]]
    dx_hi = F.pad(dx_hi2, crop)[:, :, ::stride[0], ::stride[1]]
    return dx_lo, dx_hi, _untranspose_weight(dw_lo2, groups), _untranspose_weight(dw_hi2, groups)


def _backward_ops(name: str, backward: Callable[..., Tuple[Tensor, ...]]) -> dict:
    """The ``*_backward_input`` and ``*_backward_weight`` ops, arguments
    ``(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, *config)``, and ``*_backward_weight_point``,
    arguments ``(grad_lo, grad_hi, x_lo, x_hi, w, *config)``: dw_lo + dw_hi for w_lo = w_hi = w."""
    def backward_input(*args):
        return backward(*args)[:2]

    def backward_weight(*args):
        return backward(*args)[2:]

    def backward_weight_point(grad_lo, grad_hi, x_lo, x_hi, w, *config):
        # the total gradient of a point weight: both bounds' gradients, summed as autograd would
        dw_lo, dw_hi = backward(grad_lo, grad_hi, x_lo, x_hi, w, w, *config)[2:]
        return dw_lo + dw_hi

    return {name + "_backward_input": backward_input, name + "_backward_weight": backward_weight,
            name + "_backward_weight_point": backward_weight_point}


#: Every op of the ``torch.ops.inn_cuda`` namespace (by name, in schema argument order).
OPS = {
    "interval_linear": interval_linear,
    "interval_conv2d": interval_conv2d,
    "interval_conv_transpose2d": interval_conv_transpose2d,
    **_backward_ops("interval_linear", _linear_backward),
    **_backward_ops("interval_conv2d", _conv2d_backward),
    **_backward_ops("interval_conv_transpose2d", _conv_transpose2d_backward),
}
