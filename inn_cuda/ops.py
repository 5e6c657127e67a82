"""The public interval ops: validated entry points over ``torch.ops.inn_cuda``, plus the fake
(meta) functions that let ``torch.compile`` trace them and the autograd formulas, whose backward
passes are themselves ``torch.ops.inn_cuda`` kernels.

Every op takes the bounds of an interval input ``[x_lo, x_hi]`` and an interval weight
``[w_lo, w_hi]`` (optionally an interval bias) and returns the exact bounds ``(y_lo, y_hi)`` of
the layer's output over all inputs and weights inside the intervals (docs/method.md section 2).
With ``input_nonneg=True`` the caller guarantees ``x_lo >= 0``, which halves the work.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import _backend  # noqa: F401  (loads the kernels and registers fallbacks)
from ._shapes import conv2d_output_shape, conv_transpose2d_output_shape
from ._validation import (as_tuple, check_bias, check_pair, check_rank, check_tensors,
                          check_values)

Tensor = torch.Tensor
Pair = Tuple[Tensor, Tensor]
IntOrPair = Union[int, Sequence[int]]

_ops = torch.ops.inn_cuda


# ----------------------------------------------------------------------------------- validation

def _check_operands(op: str, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg: bool) -> None:
    """Types, dtypes, devices and the pairs' shapes (the values: :func:`_check_values`)."""
    check_tensors(op, [("x_lo", x_lo), ("x_hi", x_hi), ("w_lo", w_lo), ("w_hi", w_hi),
                       ("b_lo", b_lo), ("b_hi", b_hi)])
    check_pair(op, "x_lo", x_lo, "x_hi", x_hi, values=False)
    check_pair(op, "w_lo", w_lo, "w_hi", w_hi, values=False)


def _check_values(op: str, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg: bool) -> None:
    """``lo <= hi`` of every pair and ``x_lo >= 0`` for input_nonneg: one host synchronisation
    per call, none while a CUDA graph is captured (README "dtypes, devices, errors")."""
    check_values(op, [("x_lo", x_lo, "x_hi", x_hi), ("w_lo", w_lo, "w_hi", w_hi),
                      ("b_lo", b_lo, "b_hi", b_hi)],
                 ("x_lo", x_lo) if input_nonneg else None)


def _check_groups(op: str, groups: int, in_channels: int, out_channels: int, weight_in: int,
                  x_name: str = "x_lo") -> None:
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if in_channels != weight_in * groups:
        raise ValueError(f"{op}: {x_name} has {in_channels} channels, expected {weight_in * groups}"
                         f" (weight in-channels {weight_in} x groups {groups})")
    if out_channels % groups:
        raise ValueError(f"{op}: {out_channels} output channels are not divisible by groups "
                         f"{groups}")


# ------------------------------------------------------------------------------------ public ops

def interval_linear(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                    b_lo: Optional[Tensor] = None, b_hi: Optional[Tensor] = None, *,
                    input_nonneg: bool = False) -> Pair:
    """Exact interval ``F.linear``: x of shape (*, K), w (N, K), b (N,) -> two (*, N) tensors."""
    op = "interval_linear"
    _check_operands(op, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg)
    check_rank(op, "w_lo", w_lo, 2, "(out_features, in_features)")
    check_bias(op, b_lo, b_hi, w_lo.shape[0])
    if x_lo.dim() < 1 or x_lo.shape[-1] != w_lo.shape[1]:
        raise ValueError(f"{op}: x_lo has shape {tuple(x_lo.shape)}, expected (*, "
                         f"{w_lo.shape[1]}) to match w_lo of shape {tuple(w_lo.shape)}")
    _check_values(op, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg)
    return tuple(_ops.interval_linear(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, bool(input_nonneg)))


def _same_padding(op: str, x_lo: Tensor, x_hi: Tensor, kernel: Sequence[int],
                  dilation: Sequence[int], stride: Sequence[int]):
    """PyTorch's rule for padding='same': total dilation*(k-1) per dim, half on each side and the
    odd remainder on the right/bottom. Returns the (possibly padded) input and symmetric padding."""
    if any(s != 1 for s in stride):
        raise ValueError(f"{op}: padding='same' requires stride 1, got stride {tuple(stride)}")
    totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
    extra = []
    for total in reversed(totals):  # F.pad lists the last dim first
        extra += [0, total % 2]
    if any(extra):
        x_lo, x_hi = F.pad(x_lo, extra), F.pad(x_hi, extra)
    return x_lo, x_hi, tuple(t // 2 for t in totals)


def _conv_padding(op, padding, x_lo, x_hi, kernel, dilation, stride, dims):
    if isinstance(padding, str):
        if padding == "valid":
            return x_lo, x_hi, (0,) * dims
        if padding == "same":
            return _same_padding(op, x_lo, x_hi, kernel, dilation, stride)
        raise ValueError(f"{op}: padding must be an int, {dims} ints, 'valid' or 'same', got "
                         f"{padding!r}")
    return x_lo, x_hi, as_tuple(op, "padding", padding, dims, 0)


def interval_conv2d(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                    b_lo: Optional[Tensor] = None, b_hi: Optional[Tensor] = None,
                    stride: IntOrPair = 1, padding: Union[IntOrPair, str] = 0,
                    dilation: IntOrPair = 1, groups: int = 1, *,
                    input_nonneg: bool = False) -> Pair:
    """Exact interval ``F.conv2d`` (same argument conventions) on NCHW input."""
    op = "interval_conv2d"
    _check_operands(op, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg)
    check_rank(op, "x_lo", x_lo, 4, "(N, C, H, W)")
    check_rank(op, "w_lo", w_lo, 4, "(C_out, C_in / groups, kH, kW)")
    check_bias(op, b_lo, b_hi, w_lo.shape[0])
    stride = as_tuple(op, "stride", stride, 2, 1)
    dilation = as_tuple(op, "dilation", dilation, 2, 1)
    _check_groups(op, groups, x_lo.shape[1], w_lo.shape[0], w_lo.shape[1])
    x_lo, x_hi, padding = _conv_padding(op, padding, x_lo, x_hi, w_lo.shape[2:], dilation, stride,
                                        2)
    conv2d_output_shape(op, x_lo.shape, w_lo.shape, stride, padding, dilation)
    _check_values(op, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg)
    return tuple(_ops.interval_conv2d(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding,
                                      dilation, groups, bool(input_nonneg)))


def interval_conv1d(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                    b_lo: Optional[Tensor] = None, b_hi: Optional[Tensor] = None,
                    stride: IntOrPair = 1, padding: Union[IntOrPair, str] = 0,
                    dilation: IntOrPair = 1, groups: int = 1, *,
                    input_nonneg: bool = False) -> Pair:
    """Exact interval ``F.conv1d`` on (N, C, L) input, computed by the 2-D kernels on a height-1
    image."""
    op = "interval_conv1d"
    check_tensors(op, [("x_lo", x_lo), ("x_hi", x_hi), ("w_lo", w_lo), ("w_hi", w_hi)])
    check_rank(op, "x_lo", x_lo, 3, "(N, C, L)")
    check_rank(op, "x_hi", x_hi, 3, "(N, C, L)")
    check_rank(op, "w_lo", w_lo, 3, "(C_out, C_in / groups, k)")
    check_rank(op, "w_hi", w_hi, 3, "(C_out, C_in / groups, k)")
    (stride,) = as_tuple(op, "stride", stride, 1, 1)
    (dilation,) = as_tuple(op, "dilation", dilation, 1, 1)
    if not isinstance(padding, str):
        (padding,) = as_tuple(op, "padding", padding, 1, 0)
        padding = (0, padding)
    y_lo, y_hi = interval_conv2d(x_lo.unsqueeze(2), x_hi.unsqueeze(2), w_lo.unsqueeze(2),
                                 w_hi.unsqueeze(2), b_lo, b_hi, (1, stride), padding,
                                 (1, dilation), groups, input_nonneg=input_nonneg)
    return y_lo.squeeze(2), y_hi.squeeze(2)


def interval_conv_transpose2d(x_lo: Tensor, x_hi: Tensor, w_lo: Tensor, w_hi: Tensor,
                              b_lo: Optional[Tensor] = None, b_hi: Optional[Tensor] = None,
                              stride: IntOrPair = 1, padding: IntOrPair = 0,
                              output_padding: IntOrPair = 0, groups: int = 1,
                              dilation: IntOrPair = 1, *, input_nonneg: bool = False) -> Pair:
    """Exact interval ``F.conv_transpose2d`` (same argument order); weight (C_in, C_out / groups,
    kH, kW)."""
    op = "interval_conv_transpose2d"
    _check_operands(op, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg)
    check_rank(op, "x_lo", x_lo, 4, "(N, C_in, H, W)")
    check_rank(op, "w_lo", w_lo, 4, "(C_in, C_out / groups, kH, kW)")
    stride = as_tuple(op, "stride", stride, 2, 1)
    padding = as_tuple(op, "padding", padding, 2, 0)
    output_padding = as_tuple(op, "output_padding", output_padding, 2, 0)
    dilation = as_tuple(op, "dilation", dilation, 2, 1)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if x_lo.shape[1] != w_lo.shape[0] or x_lo.shape[1] % groups:
        raise ValueError(f"{op}: x_lo has {x_lo.shape[1]} channels, expected {w_lo.shape[0]} "
                         f"(w_lo.shape[0]), divisible by groups {groups}")
    check_bias(op, b_lo, b_hi, w_lo.shape[1] * groups)
    if any(o >= max(s, d) for o, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{op}: output_padding {output_padding} must be smaller than stride "
                         f"{stride} or dilation {dilation} in each dim")
    conv_transpose2d_output_shape(op, x_lo.shape, w_lo.shape, stride, padding, output_padding,
                                  groups, dilation)
    _check_values(op, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg)
    return tuple(_ops.interval_conv_transpose2d(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride,
                                                padding, output_padding, groups, dilation,
                                                bool(input_nonneg)))


# ------------------------------------------------------------------------ fake (meta) functions

def _empty_pair(like: Tensor, shape) -> Pair:
    return like.new_empty(shape), like.new_empty(shape)


@torch.library.register_fake("inn_cuda::interval_linear")
def _linear_fake(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg):
    return _empty_pair(x_lo, (*x_lo.shape[:-1], w_lo.shape[0]))


@torch.library.register_fake("inn_cuda::interval_conv2d")
def _conv2d_fake(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding, dilation, groups,
                 input_nonneg):
    return _empty_pair(x_lo, conv2d_output_shape("interval_conv2d", x_lo.shape, w_lo.shape,
                                                 stride, padding, dilation))


@torch.library.register_fake("inn_cuda::interval_conv_transpose2d")
def _conv_transpose2d_fake(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding, output_padding,
                           groups, dilation, input_nonneg):
    return _empty_pair(x_lo, conv_transpose2d_output_shape(
        "interval_conv_transpose2d", x_lo.shape, w_lo.shape, stride, padding, output_padding,
        groups, dilation))


def _backward_input_fake(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, *config):
    return torch.empty_like(x_lo), torch.empty_like(x_lo)


def _backward_weight_fake(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, *config):
    return torch.empty_like(w_lo), torch.empty_like(w_lo)


def _backward_weight_point_fake(grad_lo, grad_hi, x_lo, x_hi, w, *config):
    return w.new_empty(w.shape)  # contiguous, like the kernels' result


# --------------------------------------------------------------------------------------- autograd

def _register_autograd(op: str, channel_dim: int) -> None:
    """Forward op inputs: (x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, *config); its backward ops take
    (grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, *config). Bias gradients are the upstream
    gradients summed over every dim but the channel dim.

    Point weights (w_lo and w_hi the same tensor, IBP-style use): autograd would add the two
    bounds' weight gradients into that tensor; ``*_backward_weight_point`` computes the sum
    directly (two or three products instead of up to eight, csrc/library/library_path.h) and
    it goes to the w_lo slot alone."""
    backward_input = getattr(_ops, op + "_backward_input")
    backward_weight = getattr(_ops, op + "_backward_weight")
    backward_weight_point = getattr(_ops, op + "_backward_weight_point")
    torch.library.register_fake(f"inn_cuda::{op}_backward_input")(_backward_input_fake)
    torch.library.register_fake(f"inn_cuda::{op}_backward_weight")(_backward_weight_fake)
    torch.library.register_fake(f"inn_cuda::{op}_backward_weight_point")(
        _backward_weight_point_fake)

    def setup_context(ctx, inputs, output):
        x_lo, x_hi, w_lo, w_hi, b_lo, _b_hi, *config = inputs
        ctx.save_for_backward(x_lo, x_hi, w_lo, w_hi)
        ctx.config = config
        ctx.has_bias = b_lo is not None
        # identity, not equal values: a copy of w is an interval weight that happens to be a point
        ctx.point_weight = w_lo is w_hi

    def backward(ctx, grad_lo, grad_hi):
        saved = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grads = [None] * (6 + len(ctx.config))
        if needs[0] or needs[1]:
            grads[0:2] = backward_input(grad_lo, grad_hi, *saved, *ctx.config)
        if ctx.point_weight and needs[2]:
            x_lo, x_hi, w, _ = saved
            grads[2] = backward_weight_point(grad_lo, grad_hi, x_lo, x_hi, w, *ctx.config)
        elif needs[2] or needs[3]:
            grads[2:4] = backward_weight(grad_lo, grad_hi, *saved, *ctx.config)
        if ctx.has_bias and (needs[4] or needs[5]):
            dims = [d for d in range(grad_lo.dim()) if d != channel_dim % grad_lo.dim()]
            grads[4] = grad_lo.sum(dims) if dims else grad_lo
            grads[5] = grad_hi.sum(dims) if dims else grad_hi
        return tuple(grads)

    torch.library.register_autograd(f"inn_cuda::{op}", backward, setup_context=setup_context)


_register_autograd("interval_linear", channel_dim=-1)
_register_autograd("interval_conv2d", channel_dim=1)
_register_autograd("interval_conv_transpose2d", channel_dim=1)
