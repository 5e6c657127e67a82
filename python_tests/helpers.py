"""Shared helpers of the test files (which import nothing from each other): devices, dtypes,
instruction sets, random intervals, tolerances and the independent brute-force oracle. Models
for the conversion tests are in nn_models.py, data and networks for the training tests in
train_helpers.py."""

import itertools

import numpy as np
import pytest
import torch

#: The CPU kernels' instruction sets, widest first (csrc/cpu/cpu_isa.h); the `cpu_isa` fixture of
#: conftest.py runs a test on each.
CPU_ISAS = ("avx512", "avx2", "scalar")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ALL_DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no GPU visible")),
]


def dtypes_for(device):
    base = [torch.float32, torch.float64]
    return base + ([torch.float16, torch.bfloat16] if device == "cuda" else [])


DEVICE_DTYPES = [pytest.param(d, t, id=f"{d}-{str(t).replace('torch.', '')}")
                 for d in ["cpu", "cuda"] for t in dtypes_for(d)
                 if d == "cpu" or torch.cuda.is_available()]


def random_interval(shape, *, nonneg=False, dtype=torch.float64, device="cpu", width=1.0,
                    generator=None):
    """[lo, hi] with lo <= hi; signed intervals straddle 0 often."""
    lo = torch.randn(shape, dtype=torch.float64, generator=generator)
    if nonneg:
        lo = lo.abs()
    hi = lo + width * torch.rand(shape, dtype=torch.float64, generator=generator)
    return lo.to(device, dtype), hi.to(device, dtype)


def integer_interval(shape, *, nonneg, dtype, gen):
    """[lo, hi] of small integers (lo in -3..3, width 0..2): every product and sum of a kernel is
    then exact in float32 and float64 whatever the summation order, so kernels must equal the
    float64 reference exactly."""
    lo = torch.randint(-3, 4, shape, generator=gen).to(dtype)
    if nonneg:
        lo = lo.abs()
    return lo, lo + torch.randint(0, 3, shape, generator=gen).to(dtype)


def magnitude(lo, hi):
    return torch.maximum(lo.abs(), hi.abs())


def eps(dtype):
    return torch.finfo(dtype).eps


def assert_close_scaled(actual, expected, scale, dtype, reduction):
    """|actual - expected| <= tol, tol = c * (reduction + 4) * eps(accumulation) * scale
    + eps(dtype) * |expected|, with scale = sum over the reduction of |x| |w| (+|b|): the
    worst-case rounding error of a sum in a different order."""
    acc_eps = eps(torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype)
    expected = expected.to(torch.float64)
    actual = actual.to(torch.float64)
    tol = 2 * (reduction + 4) * acc_eps * scale.to(torch.float64) \
        + 2 * eps(dtype) * expected.abs() + 1e-300
    err = (actual - expected).abs()
    bad = err > tol
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert not bool(bad.any()), (
        f"{int(bad.sum())} of {bad.numel()} elements off; worst error {float(err.max())} "
        f"vs tolerance {float(tol.flatten()[int(torch.argmax(err.flatten() - tol.flatten()))])}")


def brute_force_linear(x_lo, x_hi, w_lo, w_hi, b_lo=None, b_hi=None):
    """Exact bounds by enumerating the four endpoint products of every term, in float64 NumPy,
    one output at a time (independent of the two-candidate formula used by the kernels)."""
    xl, xh, wl, wh = (t.detach().cpu().double().numpy() for t in (x_lo, x_hi, w_lo, w_hi))
    m_rows, n_out = xl.shape[0], wl.shape[0]
    lo = np.zeros((m_rows, n_out))
    hi = np.zeros((m_rows, n_out))
    for m, n in itertools.product(range(m_rows), range(n_out)):
        products = np.stack([wl[n] * xl[m], wl[n] * xh[m], wh[n] * xl[m], wh[n] * xh[m]])
        lo[m, n] = products.min(axis=0).sum()
        hi[m, n] = products.max(axis=0).sum()
    if b_lo is not None:
        lo += b_lo.detach().cpu().double().numpy()
        hi += b_hi.detach().cpu().double().numpy()
    return torch.from_numpy(lo), torch.from_numpy(hi)


def sample_inside(lo, hi, generator=None):
    """A point of [lo, hi]: uniform inside, with a quarter of the entries at an endpoint."""
    u = torch.rand(lo.shape, dtype=torch.float64, generator=generator)
    pick = torch.rand(lo.shape, dtype=torch.float64, generator=generator)
    u = torch.where(pick < 0.125, 0.0, torch.where(pick < 0.25, 1.0, u))
    return (lo.double() + u.to(lo.device) * (hi.double() - lo.double())).to(lo.dtype)
