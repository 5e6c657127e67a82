"""The CUDA implementations of the nine ``torch.ops.inn_cuda`` ops for the NVRTC backend: Python
ports of the compiled launchers (``csrc/cuda/linear_cuda.cu``, ``conv2d_cuda.cu``,
``conv_transpose2d_cuda.cu``), with the same checks, operand preparation (strided 2-D views for
linear, contiguous NCHW for convolutions), problem builders and launch plan, running the same
kernels. Registered at the CUDA dispatch key by inn_cuda._backend; the public functions in
inn_cuda.ops (validation, autograd) sit above them unchanged.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from . import problems
from .problems import IntervalMatrix, IntervalPointer, OP_PROBLEMS, run_tile_problem
from .runtime import TorchStreamRuntime, on_device

Tensor = torch.Tensor
Pair = Tuple[Tensor, Tensor]
INT_MAX = 2**31 - 1

_ELEMENTS = {torch.float32: problems.ELEMENTS["float32"],
             torch.float64: problems.ELEMENTS["float64"],
             torch.float16: problems.ELEMENTS["float16"],
             torch.bfloat16: problems.ELEMENTS["bfloat16"]}


# ------------------------------------------------------------------- shared (cuda_launch.cuh)

def _element(op: str, dtype: torch.dtype) -> problems.Element:
    if dtype not in _ELEMENTS:
        raise RuntimeError(f"{op}: no CUDA kernel for dtype {dtype}; supported: float32, "
                           f"float64, float16, bfloat16")
    return _ELEMENTS[dtype]


def _check_operands(op: str, named: Sequence[Tuple[str, Optional[Tensor]]]) -> None:
    first_name, first = named[0]
    for name, t in named:
        if t is None:
            continue
        if t.device != first.device:
            raise RuntimeError(f"{op}: {name} is on {t.device}, expected {first.device} like "
                               f"{first_name}")
        if t.dtype != first.dtype:
            raise RuntimeError(f"{op}: {name} has dtype {t.dtype}, expected {first.dtype} like "
                               f"{first_name}")


def _to_int(op: str, what: str, value: int) -> int:
    """A size or configuration value that the kernels hold in an int."""
    if not 0 <= value <= INT_MAX:
        raise RuntimeError(f"{op}: {what} {value} is out of range")
    return value


def _bias_pair(op: str, b_lo: Optional[Tensor], b_hi: Optional[Tensor],
               channels: int) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    if (b_lo is None) != (b_hi is None):
        raise RuntimeError(f"{op}: give both b_lo and b_hi or neither")
    if b_lo is None:
        return None, None
    if b_lo.numel() != channels or b_hi.numel() != channels:
        raise RuntimeError(f"{op}: the bias has {b_lo.numel()} elements, expected {channels}")
    return b_lo.contiguous(), b_hi.contiguous()


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def _pointer(pair: Sequence[Tensor]) -> IntervalPointer:
    return IntervalPointer(lo=pair[0].data_ptr(), hi=pair[1].data_ptr())


def _contiguous_pair(lo: Tensor, hi: Tensor) -> Pair:
    return lo.contiguous(), hi.contiguous()


def _run(op: str, like: Tensor, p: problems.TileProblem, input_nonneg: bool) -> None:
    element = _element(op, like.dtype)
    with on_device(like.device.index):
        rt = TorchStreamRuntime(like)
        run_tile_problem(rt, OP_PROBLEMS[op], element, p, input_nonneg, rt.sm_count)


# ------------------------------------------------------------------------ linear_cuda.cu

def _as_matrix(t: Tensor, cols: int) -> Tensor:
    """(*, cols) -> (rows, cols); explicit rows, since reshape cannot infer them when cols == 0."""
    return t.reshape(math.prod(t.shape[:-1]), cols)


def _same_strides(lo: Tensor, hi: Tensor) -> Pair:
    """Both bounds of an operand are read through one set of strides."""
    return (lo, hi) if lo.stride() == hi.stride() else (lo.contiguous(), hi.contiguous())


def _matrix(bounds: Pair) -> IntervalMatrix:
    return IntervalMatrix(lo=bounds[0].data_ptr(), hi=bounds[1].data_ptr(),
                          row_stride=bounds[0].stride(0), col_stride=bounds[0].stride(1))


def _linear_operands(op, x_lo, x_hi, w_lo, w_hi):
    if w_lo.dim() != 2:
        raise RuntimeError(f"{op}: w_lo must have 2 dims (out_features, in_features), got "
                           f"{w_lo.dim()}")
    if not (x_lo.dim() >= 1 and x_lo.shape[-1] == w_lo.shape[1]):
        raise RuntimeError(f"{op}: x has shape {list(x_lo.shape)}, expected (*, "
                           f"{w_lo.shape[1]})")
    if x_hi.shape != x_lo.shape or w_hi.shape != w_lo.shape:
        raise RuntimeError(f"{op}: lower and upper bounds differ in shape")
    n, k = w_lo.shape
    x = _same_strides(_as_matrix(x_lo, k), _as_matrix(x_hi, k))
    return x[0].shape[0], n, k, x, _same_strides(w_lo, w_hi)


def linear_forward(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg) -> Pair:
    op = "interval_linear"
    _check_operands(op, [("x_lo", x_lo), ("x_hi", x_hi), ("w_lo", w_lo), ("w_hi", w_hi)])
    m, n, k, x, w = _linear_operands(op, x_lo, x_hi, w_lo, w_hi)
    bias = _bias_pair(op, b_lo, b_hi, n)
    _check_operands(op, [("x_lo", x_lo), ("b_lo", bias[0]), ("b_hi", bias[1])])
    y_lo, y_hi = x_lo.new_empty((m, n)), x_lo.new_empty((m, n))
    _run(op, x_lo, problems.linear_forward_problem(
        m, n, k, _matrix(x), _matrix(w), _ptr(bias[0]), _ptr(bias[1]), y_lo.data_ptr(),
        y_hi.data_ptr()), input_nonneg)
    out_shape = (*x_lo.shape[:-1], n)
    return y_lo.view(out_shape), y_hi.view(out_shape)


def _linear_backward(weight, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg) -> Pair:
    op = "interval_linear_backward_" + ("weight" if weight else "input")
    _check_operands(op, [("grad_lo", grad_lo), ("grad_hi", grad_hi), ("x_lo", x_lo),
                         ("x_hi", x_hi), ("w_lo", w_lo), ("w_hi", w_hi)])
    m, n, k, x, w = _linear_operands(op, x_lo, x_hi, w_lo, w_hi)
    if not (grad_lo.numel() == m * n and grad_lo.dim() >= 1 and grad_lo.shape[-1] == n
            and grad_hi.shape == grad_lo.shape):
        raise RuntimeError(f"{op}: grad has shape {list(grad_lo.shape)}, expected the output "
                           f"shape (*, {n}) with {m} rows")
    like = w_lo if weight else x_lo
    shape = (n, k) if weight else (m, k)
    out_lo, out_hi = like.new_empty(shape), like.new_empty(shape)
    g = _same_strides(_as_matrix(grad_lo, n), _as_matrix(grad_hi, n))
    build = (problems.linear_weight_grad_problem if weight
             else problems.linear_input_grad_problem)
    _run(op, x_lo, build(m, n, k, _matrix(g), _matrix(x), _matrix(w), out_lo.data_ptr(),
                         out_hi.data_ptr()), input_nonneg)
    if weight:
        return out_lo, out_hi
    return out_lo.view(x_lo.shape), out_hi.view(x_lo.shape)


def linear_backward_input(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg) -> Pair:
    return _linear_backward(False, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg)


def linear_backward_weight(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg) -> Pair:
    return _linear_backward(True, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg)


# ------------------------------------------------------------------------ conv2d_cuda.cu

def _check_output_size(op, x, w, stride, padding, dilation) -> None:
    """The padded input holds the dilated kernel (checked before conv_output_size divides, whose
    C++ truncation would round a negative quotient up to zero)."""
    for d in range(2):
        if x.shape[2 + d] + 2 * padding[d] < dilation[d] * (w.shape[2 + d] - 1) + 1:
            raise RuntimeError(f"{op}: the padded input {list(x.shape)} is smaller than the "
                               f"dilated kernel")


def _conv2d_geometry(op, x, w, stride, padding, dilation, groups) -> problems.ConvGeometry:
    if x.dim() != 4:
        raise RuntimeError(f"{op}: x must be (N, C, H, W), got shape {list(x.shape)}")
    if w.dim() != 4:
        raise RuntimeError(f"{op}: w must be (C_out, C_in / groups, kH, kW), got shape "
                           f"{list(w.shape)}")
    if len(stride) != 2 or len(padding) != 2 or len(dilation) != 2:
        raise RuntimeError(f"{op}: stride, padding and dilation must have 2 values each")
    if not (groups >= 1 and x.shape[1] == w.shape[1] * groups and w.shape[0] % groups == 0):
        raise RuntimeError(f"{op}: x has {x.shape[1]} channels and w shape {list(w.shape)}, "
                           f"which groups {groups} do not fit")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise RuntimeError(f"{op}: stride and dilation must be >= 1 and padding >= 0")
    for v in (*x.shape[1:], w.shape[0], *w.shape[2:], *stride, *padding, *dilation):
        _to_int(op, "a size or argument", v)
    # depth indices over (channel, tap) and pixels within an image are decoded in 32 bits
    _to_int(op, "pixels per image", x.shape[2] * x.shape[3])
    _to_int(op, "channels x kernel taps", max(x.shape[1], w.shape[0]) * w.shape[2] * w.shape[3])
    _check_output_size(op, x, w, stride, padding, dilation)
    return problems.conv2d_geometry(x.shape, w.shape, stride, padding, dilation, groups)


def conv2d_forward(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding, dilation, groups,
                   input_nonneg) -> Pair:
    op = "interval_conv2d"
    _check_operands(op, [("x_lo", x_lo), ("x_hi", x_hi), ("w_lo", w_lo), ("w_hi", w_hi)])
    geo = _conv2d_geometry(op, x_lo, w_lo, stride, padding, dilation, groups)
    x, w = _contiguous_pair(x_lo, x_hi), _contiguous_pair(w_lo, w_hi)
    bias = _bias_pair(op, b_lo, b_hi, geo.small_c)
    _check_operands(op, [("x_lo", x_lo), ("b_lo", bias[0]), ("b_hi", bias[1])])
    shape = (geo.batch, geo.small_c, geo.small_h, geo.small_w)
    y_lo, y_hi = x_lo.new_empty(shape), x_lo.new_empty(shape)
    _run(op, x_lo, problems.conv2d_forward_problem(
        geo, _pointer(x), _pointer(w), _ptr(bias[0]), _ptr(bias[1]), y_lo.data_ptr(),
        y_hi.data_ptr()), input_nonneg)
    return y_lo, y_hi


def _conv_backward(op: str, weight: bool, geometry, output_shape, build, grad_lo, grad_hi, x_lo,
                   x_hi, w_lo, w_hi, input_nonneg) -> Pair:
    """What the conv and transposed conv gradients share: checks, contiguous operands, outputs
    shaped like the input (or weight), one launch."""
    _check_operands(op, [("grad_lo", grad_lo), ("grad_hi", grad_hi), ("x_lo", x_lo),
                         ("x_hi", x_hi), ("w_lo", w_lo), ("w_hi", w_hi)])
    geo = geometry()
    y_shape = list(output_shape(geo))
    if list(grad_lo.shape) != y_shape or list(grad_hi.shape) != y_shape:
        raise RuntimeError(f"{op}: grad has shape {list(grad_lo.shape)}, expected the output "
                           f"shape {y_shape}")
    g, x = _contiguous_pair(grad_lo, grad_hi), _contiguous_pair(x_lo, x_hi)
    w = _contiguous_pair(w_lo, w_hi)
    like = w_lo if weight else x_lo
    out_lo, out_hi = like.new_empty(like.shape), like.new_empty(like.shape)
    _run(op, x_lo, build(geo, _pointer(g), _pointer(x), _pointer(w), out_lo.data_ptr(),
                         out_hi.data_ptr()), input_nonneg)
    return out_lo, out_hi


def _small_shape(geo):
    return geo.batch, geo.small_c, geo.small_h, geo.small_w


def _big_shape(geo):
    return geo.batch, geo.big_c, geo.big_h, geo.big_w


def _conv2d_backward(weight, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding,
                     dilation, groups, input_nonneg) -> Pair:
    op = "interval_conv2d_backward_" + ("weight" if weight else "input")
    build = (problems.conv2d_weight_grad_problem if weight
             else problems.conv2d_input_grad_problem)
    return _conv_backward(
        op, weight, lambda: _conv2d_geometry(op, x_lo, w_lo, stride, padding, dilation, groups),
        _small_shape, build, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg)


def conv2d_backward_input(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding, dilation,
                          groups, input_nonneg) -> Pair:
    return _conv2d_backward(False, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding,
                            dilation, groups, input_nonneg)


def conv2d_backward_weight(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding, dilation,
                           groups, input_nonneg) -> Pair:
    return _conv2d_backward(True, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding,
                            dilation, groups, input_nonneg)


# -------------------------------------------------------------- conv_transpose2d_cuda.cu

def _conv_transpose2d_geometry(op, x, w, stride, padding, output_padding, groups,
                               dilation) -> problems.ConvGeometry:
    if x.dim() != 4:
        raise RuntimeError(f"{op}: x must be (N, C_in, H, W), got shape {list(x.shape)}")
    if w.dim() != 4:
        raise RuntimeError(f"{op}: w must be (C_in, C_out / groups, kH, kW), got shape "
                           f"{list(w.shape)}")
    if any(len(v) != 2 for v in (stride, padding, output_padding, dilation)):
        raise RuntimeError(f"{op}: stride, padding, output_padding and dilation must have 2 "
                           f"values each")
    if not (groups >= 1 and x.shape[1] == w.shape[0] and x.shape[1] % groups == 0):
        raise RuntimeError(f"{op}: x has {x.shape[1]} channels and w shape {list(w.shape)}, "
                           f"which groups {groups} do not fit")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or min(output_padding) < 0:
        raise RuntimeError(f"{op}: stride and dilation must be >= 1, padding and output_padding "
                           f">= 0")
    for v in (*x.shape[1:], w.shape[1] * groups, *w.shape[2:], *stride, *padding,
              *output_padding, *dilation):
        _to_int(op, "a size or argument", v)
    # depth indices over (channel, tap) are decoded in 32 bits
    _to_int(op, "channels x kernel taps",
            max(x.shape[1], w.shape[1] * groups) * w.shape[2] * w.shape[3])
    out = [problems.conv_transpose_output_size(x.shape[2 + d], w.shape[2 + d], stride[d],
                                               padding[d], output_padding[d], dilation[d])
           for d in range(2)]
    if min(out) < 1:
        raise RuntimeError(f"{op}: padding {list(padding)} leaves no output pixels")
    _to_int(op, "output height", out[0])
    _to_int(op, "output width", out[1])
    # pixels within an image are decoded in 32 bits
    _to_int(op, "pixels per output image", out[0] * out[1])
    return problems.conv_transpose2d_geometry(x.shape, w.shape, stride, padding, output_padding,
                                              groups, dilation)


def conv_transpose2d_forward(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding,
                             output_padding, groups, dilation, input_nonneg) -> Pair:
    op = "interval_conv_transpose2d"
    _check_operands(op, [("x_lo", x_lo), ("x_hi", x_hi), ("w_lo", w_lo), ("w_hi", w_hi)])
    geo = _conv_transpose2d_geometry(op, x_lo, w_lo, stride, padding, output_padding, groups,
                                     dilation)
    x, w = _contiguous_pair(x_lo, x_hi), _contiguous_pair(w_lo, w_hi)
    bias = _bias_pair(op, b_lo, b_hi, geo.big_c)
    _check_operands(op, [("x_lo", x_lo), ("b_lo", bias[0]), ("b_hi", bias[1])])
    shape = _big_shape(geo)
    y_lo, y_hi = x_lo.new_empty(shape), x_lo.new_empty(shape)
    _run(op, x_lo, problems.conv_transpose2d_forward_problem(
        geo, _pointer(x), _pointer(w), _ptr(bias[0]), _ptr(bias[1]), y_lo.data_ptr(),
        y_hi.data_ptr()), input_nonneg)
    return y_lo, y_hi


def _conv_transpose2d_backward(weight, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride,
                               padding, output_padding, groups, dilation, input_nonneg) -> Pair:
    op = "interval_conv_transpose2d_backward_" + ("weight" if weight else "input")
    build = (problems.conv_transpose2d_weight_grad_problem if weight
             else problems.conv_transpose2d_input_grad_problem)
    return _conv_backward(
        op, weight, lambda: _conv_transpose2d_geometry(op, x_lo, w_lo, stride, padding,
                                                       output_padding, groups, dilation),
        _big_shape, build, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg)


def conv_transpose2d_backward_input(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding,
                                    output_padding, groups, dilation, input_nonneg) -> Pair:
    return _conv_transpose2d_backward(False, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride,
                                      padding, output_padding, groups, dilation, input_nonneg)


def conv_transpose2d_backward_weight(grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding,
                                     output_padding, groups, dilation, input_nonneg) -> Pair:
    return _conv_transpose2d_backward(True, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride,
                                      padding, output_padding, groups, dilation, input_nonneg)


#: op name -> CUDA implementation
OPS: Dict[str, Callable[..., Pair]] = {
    "interval_linear": linear_forward,
    "interval_linear_backward_input": linear_backward_input,
    "interval_linear_backward_weight": linear_backward_weight,
    "interval_conv2d": conv2d_forward,
    "interval_conv2d_backward_input": conv2d_backward_input,
    "interval_conv2d_backward_weight": conv2d_backward_weight,
    "interval_conv_transpose2d": conv_transpose2d_forward,
    "interval_conv_transpose2d_backward_input": conv_transpose2d_backward_input,
    "interval_conv_transpose2d_backward_weight": conv_transpose2d_backward_weight,
}
