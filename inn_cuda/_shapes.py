"""The output shapes of the convolution ops, for the public wrappers (inn_cuda/ops.py, which
check them before calling an op), the fake (meta) functions that ``torch.compile`` traces, and the
reference. The kernels derive the same sizes in C++ (csrc/conv_geometry.h, overflow-checked): this
is the one Python copy of the formulas, with the same errors.
"""

from __future__ import annotations

from typing import Sequence, Tuple


def _check_kernel(op: str, kernel: int) -> None:
    if kernel < 1:
        raise ValueError(f"{op}: the kernel size must be >= 1 in each dim, got {kernel}")


def conv_output_size(op: str, size: int, kernel: int, stride: int, padding: int,
                     dilation: int) -> int:
    """conv2d output size along one dim; an error when the padded input is smaller than the
    dilated kernel."""
    _check_kernel(op, kernel)
    extent = dilation * (kernel - 1) + 1
    if size + 2 * padding < extent:
        raise ValueError(f"{op}: input size {size} (padded by {padding} on each side) is smaller "
                         f"than the dilated kernel {extent}")
    return (size + 2 * padding - extent) // stride + 1


def conv_transpose_output_size(op: str, size: int, kernel: int, stride: int, padding: int,
                               output_padding: int, dilation: int) -> int:
    """conv_transpose2d output size along one dim; an error when none is left."""
    _check_kernel(op, kernel)
    out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    if out < 1:
        raise ValueError(f"{op}: padding {padding} leaves no output pixels for input size {size} "
                         f"(output size {out})")
    return out


def conv2d_output_shape(op: str, x_shape: Sequence[int], w_shape: Sequence[int],
                        stride: Sequence[int], padding: Sequence[int],
                        dilation: Sequence[int]) -> Tuple[int, ...]:
    """(N, C_out, H_out, W_out) of conv2d: x (N, C, H, W), w (C_out, C / groups, kH, kW)."""
    return (x_shape[0], w_shape[0], *(
        conv_output_size(op, x_shape[2 + d], w_shape[2 + d], stride[d], padding[d], dilation[d])
        for d in range(2)))


def conv_transpose2d_output_shape(op: str, x_shape: Sequence[int], w_shape: Sequence[int],
                                  stride: Sequence[int], padding: Sequence[int],
                                  output_padding: Sequence[int], groups: int,
                                  dilation: Sequence[int]) -> Tuple[int, ...]:
    """(N, C_out, H_out, W_out) of conv_transpose2d: x (N, C_in, H, W), w (C_in, C_out / groups,
    kH, kW)."""
    return (x_shape[0], w_shape[1] * groups, *(
        conv_transpose_output_size(op, x_shape[2 + d], w_shape[2 + d], stride[d], padding[d],
                                   output_padding[d], dilation[d])
        for d in range(2)))
