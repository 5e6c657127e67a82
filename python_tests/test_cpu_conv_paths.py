"""The CPU interval convolutions on every SIMD path this machine supports (avx512, avx2, scalar),
over the shapes that pick their different code paths: the pixel-lane kernels, non-negative and
general (direct stride-1 reads of padded planes, gathered windows for other strides, partial-image
and several-image chunks, channel and tap counts off the register tiles, straddling weights and
invalid weight intervals in term lists, signed inputs with ties and NaN) and the GEMM fallbacks
(wide general-mode forwards, a conv2d input gradient with stride > 1 or padding beyond the
kernel's reach), for conv2d and conv_transpose2d, forward and both gradients.

Small-integer operands make every product and sum exact in float32 and float64 whatever the
summation order, so every path must equal the float64 reference exactly. Every test runs once per
instruction set this CPU supports (the `cpu_isa` fixture of conftest.py).
"""

import pytest
import torch

from inn_cuda import reference

from conv_cases import CASES, config
from helpers import integer_interval

pytestmark = pytest.mark.usefixtures("cpu_isa")
ops = torch.ops.inn_cuda

def operands(op, x_shape, w_shape, cfg, *, nonneg, dtype, invalid=False):
    gen = torch.Generator().manual_seed(sum(x_shape) + 7 * sum(w_shape))
    x_lo, x_hi = integer_interval(x_shape, nonneg=nonneg, gen=gen, dtype=dtype)
    w_lo, w_hi = integer_interval(w_shape, nonneg=False, gen=gen, dtype=dtype)
    w_lo[(w_lo == 0) & (torch.rand(w_shape, generator=gen) < 0.5)] = -0.0  # -0 counts as >= 0
    if invalid:  # a few a >= 0 > b: their input gradient needs two products in one bound
        flip = torch.rand(w_shape, generator=gen) < 0.1
        w_lo[flip], w_hi[flip] = 1.0, -1.0
    b = torch.randint(-2, 3, (2, w_shape[0] if op == "conv2d" else w_shape[1] * cfg[3]),
                      generator=gen).to(dtype)
    y = reference.OPS["interval_" + op](x_lo.double(), x_hi.double(), w_lo.double(),
                                        w_hi.double(), None, None, *cfg, nonneg)
    g_lo = torch.randint(-2, 3, y[0].shape, generator=gen).to(dtype)
    g_hi = torch.randint(-2, 3, y[0].shape, generator=gen).to(dtype)
    return x_lo, x_hi, w_lo, w_hi, b[0], b[0] + b[1].abs(), g_lo, g_hi


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}"
                         if isinstance(c, tuple) else None)
def test_paths_match_reference_exactly(case, nonneg, dtype):
    op, x_shape, w_shape, c = case
    cfg = config(op, c)
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, g_lo, g_hi = operands(op, x_shape, w_shape, cfg,
                                                              nonneg=nonneg, dtype=dtype)
    name = "interval_" + op
    as64 = [t.double() for t in (x_lo, x_hi, w_lo, w_hi, b_lo, b_hi)]
    got = getattr(ops, name)(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, *cfg, nonneg)
    want = reference.OPS[name](*as64, *cfg, nonneg)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, rtol=0, atol=0)
    grads = [t.double() for t in (g_lo, g_hi)] + as64[:4]
    for kind in ("_backward_input", "_backward_weight"):
        got = getattr(ops, name + kind)(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *cfg, nonneg)
        want = reference.OPS[name + kind](*grads, *cfg, nonneg)
        for g, w in zip(got, want):
            torch.testing.assert_close(g.double(), w, rtol=0, atol=0, msg=kind)


@pytest.mark.parametrize("case", [CASES[0], CASES[9], CASES[11]], ids=lambda c: c[0])
def test_invalid_weight_intervals_take_the_term_lists(case):
    """Weights with a >= 0 > b send the non-negative input gradient through term lists; still
    the formula of the reference (dl += a gl + b gh for such a weight)."""
    op, x_shape, w_shape, c = case
    cfg = config(op, c)
    x_lo, x_hi, w_lo, w_hi, _, _, g_lo, g_hi = operands(op, x_shape, w_shape, cfg, nonneg=True,
                                                        dtype=torch.float32, invalid=True)
    name = "interval_" + op + "_backward_input"
    got = getattr(ops, name)(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *cfg, True)
    want = reference.OPS[name](*[t.double() for t in (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi)],
                               *cfg, True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", [CASES[i] for i in (0, 2, 4, 5, 8, 10, 12, 13, 15)],
                         ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_general_gradients_ties_and_nan(case, dtype):
    """General mode on the gradient paths with point inputs (l == h: the candidates tie, the
    l-candidate takes the gradient), exact zeros, and NaN in inputs and weights (a NaN candidate
    is selected, so NaN reaches exactly the gradients the reference routes it to; non-finite
    operands take the kernels' full NaN-aware choice). Infinite bounds and 0 * inf = 0:
    test_cpu_zero_times_inf.py."""
    op, x_shape, w_shape, c = case
    cfg = config(op, c)
    x_lo, x_hi, w_lo, w_hi, _, _, g_lo, g_hi = operands(op, x_shape, w_shape, cfg, nonneg=False,
                                                        dtype=dtype)
    gen = torch.Generator().manual_seed(3)
    point = torch.rand(x_shape, generator=gen) < 0.3
    x_hi[point] = x_lo[point]
    # (Not where conv_transpose2d's padding crops the output: an input pixel whose terms all
    # fall outside meets only zeros of the gradient there, and 0 * NaN makes dw NaN, where the
    # reference has no such terms; the GEMM kernels did the same.)
    if x_lo.numel() and (op == "conv2d" or c.get("padding", (0, 0)) == (0, 0)):
        x_lo.view(-1)[torch.randint(0, x_lo.numel(), (2,), generator=gen)] = float("nan")
        x_hi.view(-1)[torch.randint(0, x_hi.numel(), (1,), generator=gen)] = float("nan")
    name = "interval_" + op
    for kind in ("_backward_input", "_backward_weight"):
        if kind == "_backward_weight":
            # (Not for the input gradient: the pixel kernels read zeros past the gradient's
            # edges, and 0 * NaN there makes a NaN weight's dx NaN near the border, where the
            # reference sums only in-image terms; the non-negative kernels do the same.)
            w_hi.view(-1)[torch.randint(0, w_hi.numel(), (1,), generator=gen)] = float("nan")
        args = [t.double() for t in (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi)]
        got = getattr(ops, name + kind)(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *cfg, False)
        want = reference.OPS[name + kind](*args, *cfg, False)
        for g, w in zip(got, want):
            torch.testing.assert_close(g.double(), w, rtol=0, atol=0, equal_nan=True, msg=kind)
