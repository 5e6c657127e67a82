"""The interval ops on CuPy arrays, for pipelines that hold their data in CuPy rather than torch.

::

    import inn_cuda.cupy as icp
    y_lo, y_hi = icp.interval_linear(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi)  # cupy.ndarray in and out

Same arguments, validation and kernels as the torch functions of :mod:`inn_cuda` (forward only:
CuPy has no autograd). Arrays cross over through DLPack without copies, in both directions, and the
ops run on CuPy's current stream of the arrays' device, so they are ordered with the CuPy work
around them. Needs CuPy (``pip install inn_cuda[cupy]``) and a GPU; the kernels are the compiled
CUDA kernels (``inn-cuda info`` says whether they were built).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence, Tuple

import torch

from . import ops

try:
    import cupy
except ImportError as error:  # tested in a subprocess (test_cupy.py)
    raise ImportError(f"inn_cuda.cupy needs CuPy ({error}); install it with "
                      f"`pip install inn_cuda[cupy]`") from error

__all__ = ["interval_linear", "interval_conv1d", "interval_conv2d", "interval_conv_transpose2d"]


def _as_tensors(op: str, named: Sequence[Tuple[str, Optional[object]]]):
    """The arrays as torch tensors sharing their memory; None stays None."""
    tensors = []
    for name, array in named:
        if array is None:
            tensors.append(None)
            continue
        if not isinstance(array, cupy.ndarray):
            raise TypeError(f"{op}: {name} must be a cupy.ndarray, got "
                            f"{type(array).__module__}.{type(array).__name__}")
        tensors.append(torch.from_dlpack(array))
    return tensors


@contextlib.contextmanager
def _cupy_stream(device: torch.device) -> Iterator[None]:
    """torch's current stream on `device` made CuPy's current stream there, so the op and the
    DLPack exchanges are ordered with the CuPy work (no cross-stream waits)."""
    with cupy.cuda.Device(device.index):
        pointer = cupy.cuda.get_current_stream().ptr
    stream = (torch.cuda.default_stream(device) if pointer == 0
              else torch.cuda.ExternalStream(pointer, device=device))
    with torch.cuda.stream(stream):
        yield


def _call(op: str, function, named, *config, **options):
    """Runs the torch op `function` on the arrays in `named` (the first is x_lo) and returns its
    outputs as CuPy arrays."""
    first = named[0][1]
    if not isinstance(first, cupy.ndarray):
        raise TypeError(f"{op}: {named[0][0]} must be a cupy.ndarray, got "
                        f"{type(first).__module__}.{type(first).__name__}")
    with _cupy_stream(torch.device("cuda", first.device.id)):
        tensors = _as_tensors(op, named)
        outputs = function(*tensors, *config, **options)
        return tuple(cupy.from_dlpack(t) for t in outputs)


def _operands(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi):
    return [("x_lo", x_lo), ("x_hi", x_hi), ("w_lo", w_lo), ("w_hi", w_hi), ("b_lo", b_lo),
            ("b_hi", b_hi)]


def interval_linear(x_lo, x_hi, w_lo, w_hi, b_lo=None, b_hi=None, *, input_nonneg=False):
    """:func:`inn_cuda.interval_linear` on CuPy arrays: x (*, K), w (N, K), b (N,)."""
    return _call("interval_linear", ops.interval_linear,
                 _operands(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi), input_nonneg=input_nonneg)


def interval_conv1d(x_lo, x_hi, w_lo, w_hi, b_lo=None, b_hi=None, stride=1, padding=0,
                    dilation=1, groups=1, *, input_nonneg=False):
    """:func:`inn_cuda.interval_conv1d` on CuPy arrays: x (N, C, L)."""
    return _call("interval_conv1d", ops.interval_conv1d,
                 _operands(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi), stride, padding, dilation, groups,
                 input_nonneg=input_nonneg)


def interval_conv2d(x_lo, x_hi, w_lo, w_hi, b_lo=None, b_hi=None, stride=1, padding=0,
                    dilation=1, groups=1, *, input_nonneg=False):
    """:func:`inn_cuda.interval_conv2d` on CuPy arrays: x (N, C, H, W)."""
    return _call("interval_conv2d", ops.interval_conv2d,
                 _operands(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi), stride, padding, dilation, groups,
                 input_nonneg=input_nonneg)


def interval_conv_transpose2d(x_lo, x_hi, w_lo, w_hi, b_lo=None, b_hi=None, stride=1, padding=0,
                              output_padding=0, groups=1, dilation=1, *, input_nonneg=False):
    """:func:`inn_cuda.interval_conv_transpose2d` on CuPy arrays: x (N, C_in, H, W), w (C_in,
    C_out / groups, kH, kW)."""
    return _call("interval_conv_transpose2d", ops.interval_conv_transpose2d,
                 _operands(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi), stride, padding, output_padding,
                 groups, dilation, input_nonneg=input_nonneg)
