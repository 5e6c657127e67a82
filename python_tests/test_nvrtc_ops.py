"""The checks of the NVRTC backend's op implementations (inn_cuda/_nvrtc/ops.py, ports of the
compiled launchers' TORCH_CHECKs), which run before anything touches a GPU: exercised here on CPU
and meta tensors, without a GPU. The public functions check most of this first; these guard
direct torch.ops calls and the kernels' 32-bit index limits."""

import pytest
import torch

from inn_cuda._nvrtc import OPS


def pair(*shape, dtype=torch.float32, device="cpu"):
    t = torch.zeros(shape, dtype=dtype, device=device)
    return t, t


CONV = ((1, 1), (0, 0), (1, 1), 1)  # stride, padding, dilation, groups
CONV_T = ((1, 1), (0, 0), (0, 0), 1, (1, 1))  # stride, padding, output_padding, groups, dilation


@pytest.mark.parametrize("call,message", [
    (lambda: OPS["interval_linear"](*pair(2, 3), *pair(4, 3, 1), None, None, False),
     "interval_linear: w_lo must have 2 dims"),
    (lambda: OPS["interval_linear"](*pair(2, 5), *pair(4, 3), None, None, False),
     r"interval_linear: x has shape \[2, 5\], expected \(\*, 3\)"),
    (lambda: OPS["interval_linear"](*pair(2, 3), *pair(4, 3), torch.zeros(4), None, False),
     "give both b_lo and b_hi or neither"),
    (lambda: OPS["interval_linear"](*pair(2, 3), *pair(4, 3), *pair(5), False),
     "the bias has 5 elements, expected 4"),
    (lambda: OPS["interval_linear"](*pair(2, 3), *pair(4, 3, dtype=torch.float64), None, None,
                                    False),
     "w_lo has dtype torch.float64, expected torch.float32 like x_lo"),
    (lambda: OPS["interval_linear"](*pair(2, 3), *pair(4, 3, device="meta"), None, None, False),
     "w_lo is on meta, expected cpu like x_lo"),
    (lambda: OPS["interval_linear"](*pair(2, 3, dtype=torch.int32),
                                    *pair(4, 3, dtype=torch.int32), None, None, False),
     "interval_linear: no CUDA kernel for dtype torch.int32"),
    (lambda: OPS["interval_linear_backward_input"](*pair(2, 5), *pair(2, 3), *pair(4, 3), False),
     r"interval_linear_backward_input: grad has shape \[2, 5\], expected the output shape "
     r"\(\*, 4\) with 2 rows"),
    (lambda: OPS["interval_conv2d"](*pair(1, 2, 5, 5), *pair(3, 2, 3), None, None, *CONV,
                                    False),
     r"interval_conv2d: w must be \(C_out, C_in / groups, kH, kW\)"),
    (lambda: OPS["interval_conv2d"](*pair(1, 4, 5, 5), *pair(3, 2, 3, 3), None, None, (1, 1),
                                    (0, 0), (1, 1), 2, False),
     "x has 4 channels and w shape \\[3, 2, 3, 3\\], which groups 2 do not fit"),
    (lambda: OPS["interval_conv2d"](*pair(1, 2, 2, 5), *pair(3, 2, 3, 3), None, None, (2, 1),
                                    (0, 0), (1, 1), 1, False),
     "the padded input .* is smaller than the dilated kernel"),  # C++'s truncation lets it pass
    (lambda: OPS["interval_conv2d"](*pair(1, 2, 5, 5), *pair(3, 2, 3, 3), None, None, (0, 1),
                                    (0, 0), (1, 1), 1, False),
     "stride and dilation must be >= 1 and padding >= 0"),
    (lambda: OPS["interval_conv2d"](*pair(1, 1, 50_000, 50_000, device="meta"),
                                    *pair(1, 1, 1, 1, device="meta"), None, None, *CONV, False),
     "interval_conv2d: pixels per image 2500000000 is out of range"),
    (lambda: OPS["interval_conv2d"](*pair(1, 70_000, 4, 4, device="meta"),
                                    *pair(1, 70_000, 200, 200, device="meta"), None, None,
                                    (1, 1), (100, 100), (1, 1), 1, False),
     "channels x kernel taps 2800000000 is out of range"),
    (lambda: OPS["interval_conv2d_backward_weight"](*pair(1, 3, 4, 4), *pair(1, 2, 5, 5),
                                                    *pair(3, 2, 3, 3), *CONV, False),
     r"grad has shape \[1, 3, 4, 4\], expected the output shape \[1, 3, 3, 3\]"),
    (lambda: OPS["interval_conv_transpose2d"](*pair(1, 3, 4, 4), *pair(2, 2, 3, 3), None, None,
                                              *CONV_T, False),
     "x has 3 channels and w shape \\[2, 2, 3, 3\\], which groups 1 do not fit"),
    (lambda: OPS["interval_conv_transpose2d"](*pair(1, 2, 1, 1), *pair(2, 2, 1, 1), None, None,
                                              (1, 1), (1, 1), (0, 0), 1, (1, 1), False),
     r"padding \[1, 1\] leaves no output pixels"),
    (lambda: OPS["interval_conv_transpose2d"](*pair(1, 1, 60_000, 60_000, device="meta"),
                                              *pair(1, 1, 1, 1, device="meta"), None, None,
                                              *CONV_T, False),
     "pixels per output image 3600000000 is out of range"),
    (lambda: OPS["interval_conv_transpose2d_backward_input"](
        *pair(1, 2, 4, 4), *pair(1, 2, 4, 4), *pair(2, 2, 3, 3), *CONV_T, False),
     r"grad has shape \[1, 2, 4, 4\], expected the output shape \[1, 2, 6, 6\]"),
])
def test_launcher_checks(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


def test_every_op_has_an_implementation():
    from inn_cuda._backend import SCHEMAS

    assert set(OPS) == set(SCHEMAS)
