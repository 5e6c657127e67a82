"""inn_cuda.cupy: the ops on CuPy arrays. Without CuPy: the import error, and the rest of inn_cuda
working. Without a GPU: the type checks. On a GPU: every entry point equals its torch counterpart
on the same data, memory is shared through DLPack both ways (no copies), the op runs on CuPy's
current stream, and bad arguments get the torch functions' errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import inn_cuda

try:
    import cupy
    import inn_cuda.cupy as icp
except ImportError:
    cupy = icp = None

ROOT = Path(__file__).resolve().parent.parent
needs_cupy = pytest.mark.skipif(cupy is None,
                                reason="CuPy not installed (pip install inn_cuda[cupy])")
needs_gpu = pytest.mark.skipif(cupy is None or not torch.cuda.is_available(),
                               reason="needs CuPy and a visible GPU")


def test_without_cupy_the_rest_works():
    """CuPy hidden: inn_cuda imports and runs; inn_cuda.cupy says how to install CuPy."""
    script = """
import sys
sys.modules['cupy'] = None
import torch
import inn_cuda
x = torch.ones(2, 3)
print(inn_cuda.interval_linear(x, x, x, x)[0].sum().item())
try:
    import inn_cuda.cupy
except ImportError as error:
    print(error)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                    "")])}
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    total, error = result.stdout.strip().splitlines()[-2:]
    assert float(total) == 12.0
    assert error.startswith("inn_cuda.cupy needs CuPy") and "pip install inn_cuda[cupy]" in error


@needs_cupy
@pytest.mark.parametrize("make", [np.zeros, torch.zeros], ids=["numpy", "torch"])
def test_rejects_other_arrays(make):
    x = make((2, 3))
    w = make((4, 3))
    with pytest.raises(TypeError, match=r"interval_linear: x_lo must be a cupy.ndarray, got "
                                        r"(numpy.ndarray|torch.Tensor)"):
        icp.interval_linear(x, x, w, w)


# ------------------------------------------------------------------------------------ on a GPU

def interval(shape, *, nonneg=False, dtype=torch.float32):
    lo = torch.randn(shape, dtype=torch.float64, device="cuda")
    if nonneg:
        lo = lo.abs()
    hi = lo + torch.rand(shape, dtype=torch.float64, device="cuda")
    return lo.to(dtype), hi.to(dtype)


CASES = [  # (cupy function, torch function, x shape, w shape, bias channels, config)
    ("interval_linear", (5, 7, 33), (9, 33), 9, ()),
    ("interval_conv1d", (2, 4, 30), (6, 2, 5), 6, (2, 3, 2, 2)),
    ("interval_conv2d", (2, 3, 12, 10), (4, 3, 3, 3), 4, (1, "same", 1, 1)),
    ("interval_conv2d", (1, 4, 9, 9), (6, 2, 3, 2), 6, ((2, 1), (0, 1), (1, 2), 2)),
    ("interval_conv_transpose2d", (2, 4, 5, 6), (4, 3, 2, 2), 6, (2, 0, 0, 2, 1)),
    ("interval_conv_transpose2d", (1, 3, 4, 4), (3, 2, 3, 3), 2, ((2, 3), 1, (1, 2), 1, 1)),
]


def operands(x_shape, w_shape, channels, nonneg, dtype):
    return [*interval(x_shape, nonneg=nonneg, dtype=dtype), *interval(w_shape, dtype=dtype),
            *interval((channels,), dtype=dtype)]


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16],
                         ids=["float32", "float64", "float16"])
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("name,x_shape,w_shape,channels,config", CASES)
def test_matches_torch(name, x_shape, w_shape, channels, config, nonneg, dtype):
    tensors = operands(x_shape, w_shape, channels, nonneg, dtype)
    expected = getattr(inn_cuda, name)(*tensors, *config, input_nonneg=nonneg)
    arrays = [cupy.from_dlpack(t) for t in tensors]
    got = getattr(icp, name)(*arrays, *config, input_nonneg=nonneg)
    assert all(isinstance(a, cupy.ndarray) for a in got)
    for a, e in zip(got, expected):
        assert a.dtype == arrays[0].dtype and a.shape == tuple(e.shape)
        assert torch.equal(torch.from_dlpack(a), e)  # the same kernels on the same data


@needs_gpu
def test_without_bias_and_non_contiguous():
    x_lo, x_hi, w_lo, w_hi, _, _ = operands((6, 8), (3, 6), 3, False, torch.float64)
    xt_lo, xt_hi = x_lo.T, x_hi.T  # (8, 6), strided
    expected = inn_cuda.interval_linear(xt_lo, xt_hi, w_lo, w_hi)
    got = icp.interval_linear(*(cupy.from_dlpack(t) for t in (xt_lo, xt_hi, w_lo, w_hi)))
    for a, e in zip(got, expected):
        assert torch.equal(torch.from_dlpack(a), e)


@needs_gpu
def test_zero_copy_and_cupy_stream(monkeypatch):
    """The torch op sees the CuPy memory itself and runs on CuPy's current stream; the arrays
    returned are the torch outputs' memory."""
    seen = {}
    real = inn_cuda.ops.interval_linear

    def spy(*args, **kwargs):
        seen["inputs"] = [t.data_ptr() for t in args[:6]]
        seen["stream"] = torch.cuda.current_stream().cuda_stream
        seen["outputs"] = real(*args, **kwargs)
        return seen["outputs"]

    monkeypatch.setattr(inn_cuda.ops, "interval_linear", spy)
    arrays = [cupy.from_dlpack(t) for t in operands((4, 5), (3, 5), 3, False, torch.float32)]
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        got = icp.interval_linear(*arrays)
        stream.synchronize()
    assert seen["inputs"] == [a.data.ptr for a in arrays]
    assert seen["stream"] == stream.ptr
    assert [a.data.ptr for a in got] == [t.data_ptr() for t in seen["outputs"]]


@needs_gpu
def test_validation_errors_are_the_torch_ones():
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi = (cupy.from_dlpack(t) for t in
                                          operands((4, 5), (3, 5), 3, False, torch.float32))
    with pytest.raises(ValueError, match=r"interval_linear: x_hi has shape \(4, 4\), expected "
                                         r"\(4, 5\)"):
        icp.interval_linear(x_lo, x_hi[:, :4], w_lo, w_hi)
    with pytest.raises(ValueError, match="x_lo must be <= x_hi"):
        icp.interval_linear(x_hi + 1, x_hi, w_lo, w_hi)
    with pytest.raises(ValueError, match="b_lo was given without b_hi"):
        icp.interval_linear(x_lo, x_hi, w_lo, w_hi, b_lo)
    with pytest.raises(TypeError, match="w_hi must be a cupy.ndarray, got numpy.ndarray"):
        icp.interval_conv2d(x_lo, x_hi, w_lo, cupy.asnumpy(w_hi))
