"""The CPU interval GEMMs on every SIMD path this machine supports (avx512, avx2, scalar), at
sizes around the register-tile and cache-block edges, with strided operands and accumulation.

Every test runs once per instruction set this CPU supports (the `cpu_isa` fixture of
conftest.py).

Most checks use small-integer operands: every product and sum is then exact in float32 and
float64 whatever the summation order, so the kernels must equal the reference and the brute-force
oracle exactly, and ties between candidates (frequent with integers) must be broken the same way
for the gradients to agree.
"""

import concurrent.futures
import functools

import pytest
import torch

from inn_cuda import reference

from helpers import (assert_close_scaled, brute_force_linear, integer_interval, magnitude,
                     random_interval)

pytestmark = pytest.mark.usefixtures("cpu_isa")
ops = torch.ops.inn_cuda
DTYPES = [torch.float32, torch.float64]
MODES = [pytest.param(False, id="general"), pytest.param(True, id="nonneg")]

# (M, K, N) around the tile/block edges of all paths: row tiles 1-6, column tiles of 4-32 lanes,
# reduction blocks of 128/256, row blocks of 96/128.
SHAPES = [(1, 1, 1), (5, 127, 8), (6, 128, 16), (7, 129, 17),
          (12, 255, 31), (13, 256, 32), (4, 257, 33), (97, 17, 9), (130, 33, 65), (129, 7, 130)]


def integer_operands(m, k, n, *, nonneg, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_lo, x_hi = integer_interval((m, k), nonneg=nonneg, dtype=dtype, gen=gen)
    w_lo, w_hi = integer_interval((n, k), nonneg=False, dtype=dtype, gen=gen)
    # signed zeros count as non-negative: mix some in
    x_lo[x_lo == 0] = -0.0
    w_lo[(w_lo == 0) & (torch.rand(w_lo.shape, generator=gen) < 0.5)] = -0.0
    g_lo = torch.randint(-2, 3, (m, n), generator=gen).to(dtype)
    g_hi = torch.randint(-2, 3, (m, n), generator=gen).to(dtype)
    return x_lo, x_hi, w_lo, w_hi, g_lo, g_hi


@functools.lru_cache(maxsize=None)
def integer_reference(m, k, n, nonneg, seed=0):
    """Reference outputs and gradients in float64 (exact on these operands, so shared by both
    dtypes and all layouts)."""
    x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = integer_operands(m, k, n, nonneg=nonneg,
                                                          dtype=torch.float64, seed=seed)
    y = reference.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=nonneg)
    return y, *reference_grads(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)


def reference_grads(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg):
    args = [t.double() for t in (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi)]
    dx = reference.OPS["interval_linear_backward_input"](*args, nonneg)
    dw = reference.OPS["interval_linear_backward_weight"](*args, nonneg)
    return dx, dw


def routed_gradients(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg):
    """Gradients as csrc/interval_math.h defines them: each bound's gradient flows only through
    the selected candidate of every term (m, n, k), with exact zeros elsewhere. (The reference's
    autograd multiplies the zeroed gradient of an unselected candidate by its factor, so a NaN
    or infinite factor there leaks a NaN; this oracle does not.)"""
    l, h = x_lo[:, None, :], x_hi[:, None, :]  # (m, 1, k)
    a, b = w_lo[None], w_hi[None]              # (1, n, k)
    gl, gh = g_lo[:, :, None], g_hi[:, :, None]
    zero = torch.zeros((), dtype=x_lo.dtype)
    if nonneg:
        lo_w, lo_use_l, lo_w_is_a = a, (a >= 0).expand(-1, -1, l.shape[2]), torch.tensor(True)
        hi_w, hi_use_l, hi_w_is_a = b, ~(b >= 0), torch.tensor(False)
    else:
        wl, wh = torch.where(l >= 0, a, b), torch.where(h >= 0, a, b)
        take = (l * wl <= h * wh) | torch.isnan(l * wl)
        lo_w, lo_use_l = torch.where(take, wl, wh), take
        lo_w_is_a = torch.where(take, l >= 0, h >= 0)
        vl, vh = torch.where(l >= 0, b, a), torch.where(h >= 0, b, a)
        take = (l * vl >= h * vh) | torch.isnan(l * vl)
        hi_w, hi_use_l = torch.where(take, vl, vh), take
        hi_w_is_a = torch.where(take, ~(l >= 0), ~(h >= 0))
    lo_x, hi_x = torch.where(lo_use_l, l, h), torch.where(hi_use_l, l, h)
    def routed(select, grad_lo, grad_hi, dim):
        return (torch.where(select[0], grad_lo, zero)
                + torch.where(select[1], grad_hi, zero)).sum(dim)

    dx_lo = routed((lo_use_l, hi_use_l), gl * lo_w, gh * hi_w, 1)
    dx_hi = routed((~lo_use_l, ~hi_use_l), gl * lo_w, gh * hi_w, 1)
    dw_lo = routed((lo_w_is_a, hi_w_is_a), gl * lo_x, gh * hi_x, 0)
    dw_hi = routed((~lo_w_is_a, ~hi_w_is_a), gl * lo_x, gh * hi_x, 0)
    return (dx_lo, dx_hi), (dw_lo, dw_hi)


def assert_equal(actual, expected, what):
    expected = expected.to(actual.dtype)
    bad = actual != expected
    assert not bool(bad.any()), (
        f"{what}: {int(bad.sum())} of {bad.numel()} differ, e.g. got "
        f"{actual[bad][:4].tolist()} expected {expected[bad][:4].tolist()}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_forward_and_backward_exact_on_integers(m, k, n, nonneg, dtype):
    x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = integer_operands(m, k, n, nonneg=nonneg, dtype=dtype)
    y_lo, y_hi = ops.interval_linear(x_lo, x_hi, w_lo, w_hi, None, None, nonneg)
    (r_lo, r_hi), dx, dw = integer_reference(m, k, n, nonneg)
    assert_equal(y_lo, r_lo, "y_lo")
    assert_equal(y_hi, r_hi, "y_hi")
    got_dx = ops.interval_linear_backward_input(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    got_dw = ops.interval_linear_backward_weight(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    for got, exp, name in zip((*got_dx, *got_dw), (*dx, *dw), ("dx_lo", "dx_hi", "dw_lo", "dw_hi")):
        assert_equal(got, exp, name)


@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 9, 5), (6, 33, 17), (3, 2, 33)])
def test_forward_matches_brute_force_oracle(m, k, n, nonneg):
    gen = torch.Generator().manual_seed(1)
    x_lo, x_hi = random_interval((m, k), nonneg=nonneg, generator=gen)
    w_lo, w_hi = random_interval((n, k), width=0.3, generator=gen)
    b_lo, b_hi = random_interval((n,), generator=gen)
    y_lo, y_hi = ops.interval_linear(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, nonneg)
    o_lo, o_hi = brute_force_linear(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi)
    torch.testing.assert_close(y_lo, o_lo, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_hi, o_hi, rtol=1e-12, atol=1e-12)


def strided_copies(t, kind):
    """The same values as `t` (2-D) in a non-contiguous layout."""
    if kind == "transposed":
        return t.T.contiguous().T
    wide = torch.zeros(t.shape[0], 2 * t.shape[1], dtype=t.dtype)
    wide[:, ::2] = t
    return wide[:, ::2]


@pytest.mark.parametrize("kind", ["transposed", "sliced"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("nonneg", MODES)
def test_strided_operands_and_bias_accumulation(kind, dtype, nonneg):
    m, k, n = 13, 131, 35
    x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = integer_operands(m, k, n, nonneg=nonneg, dtype=dtype,
                                                          seed=2)
    b_lo = torch.randint(-3, 3, (n,)).to(dtype)
    b_hi = b_lo + 1
    strided = [strided_copies(t, kind) for t in (x_lo, x_hi, w_lo, w_hi, g_lo, g_hi)]
    assert not any(t.is_contiguous() for t in strided)
    sx_lo, sx_hi, sw_lo, sw_hi, sg_lo, sg_hi = strided
    y_lo, y_hi = ops.interval_linear(sx_lo, sx_hi, sw_lo, sw_hi, b_lo, b_hi, nonneg)
    (r_lo, r_hi), dx, dw = integer_reference(m, k, n, nonneg, seed=2)
    assert_equal(y_lo, r_lo + b_lo.double(), "y_lo")
    assert_equal(y_hi, r_hi + b_hi.double(), "y_hi")
    grad_args = (sg_lo, sg_hi, sx_lo, sx_hi, sw_lo, sw_hi, nonneg)
    got = (*ops.interval_linear_backward_input(*grad_args),
           *ops.interval_linear_backward_weight(*grad_args))
    for g, e, name in zip(got, (*dx, *dw), ("dx_lo", "dx_hi", "dw_lo", "dw_hi")):
        assert_equal(g, e, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("nonneg", MODES)
def test_random_operands_within_rounding(dtype, nonneg):
    m, k, n = 19, 300, 35
    gen = torch.Generator().manual_seed(3)
    x_lo, x_hi = random_interval((m, k), nonneg=nonneg, dtype=dtype, generator=gen)
    w_lo, w_hi = random_interval((n, k), width=0.3, dtype=dtype, generator=gen)
    g_lo, g_hi = (torch.randn(m, n, dtype=dtype, generator=gen) for _ in range(2))
    y = ops.interval_linear(x_lo, x_hi, w_lo, w_hi, None, None, nonneg)
    r = reference.interval_linear(*[t.double() for t in (x_lo, x_hi, w_lo, w_hi)],
                                  input_nonneg=nonneg)
    x_mag, w_mag = magnitude(x_lo, x_hi).double(), magnitude(w_lo, w_hi).double()
    g_mag = (g_lo.abs() + g_hi.abs()).double()
    for got, exp in zip(y, r):
        assert_close_scaled(got, exp, x_mag @ w_mag.T, dtype, k)
    dx, dw = reference_grads(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    got_dx = ops.interval_linear_backward_input(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    got_dw = ops.interval_linear_backward_weight(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    for got, exp in zip(got_dx, dx):
        assert_close_scaled(got, exp, g_mag @ w_mag, dtype, n)
    for got, exp in zip(got_dw, dw):
        assert_close_scaled(got, exp, g_mag.T @ x_mag, dtype, m)


@pytest.mark.parametrize("nonneg", MODES)
def test_nan_reaches_exactly_the_outputs_it_feeds(nonneg):
    m, k, n = 9, 140, 40  # NaNs in the second reduction block and the second column tile
    x_lo, x_hi, w_lo, w_hi, _, _ = integer_operands(m, k, n, nonneg=nonneg,
                                                    dtype=torch.float32, seed=4)
    x_lo[7, 130] = x_hi[7, 130] = float("nan")
    w_lo[35, 3] = float("nan")  # one weight bound only: the other bound's candidates stay finite
    y_lo, y_hi = ops.interval_linear(x_lo, x_hi, w_lo, w_hi, None, None, nonneg)
    r_lo, r_hi = reference.interval_linear(x_lo.double(), x_hi.double(), w_lo.double(),
                                           w_hi.double(), input_nonneg=nonneg)
    for got, exp in ((y_lo, r_lo), (y_hi, r_hi)):
        assert torch.equal(got.isnan(), exp.isnan())
        assert_equal(got[~got.isnan()], exp[~exp.isnan()], "finite outputs")
    assert bool(y_lo[7].isnan().all()) and bool(y_hi[7].isnan().all())
    if nonneg:  # (general mode: rows whose input at k=3 is negative never use w_lo[35, 3])
        assert bool(y_lo[:, 35].isnan().all())


@pytest.mark.parametrize("nonneg", MODES)
def test_routing_oracle_agrees_with_the_reference_on_finite_operands(nonneg):
    operands = integer_operands(9, 13, 11, nonneg=nonneg, dtype=torch.float64, seed=7)
    x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = operands
    expected = reference_grads(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    got = routed_gradients(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    for g, e in zip((*got[0], *got[1]), (*expected[0], *expected[1])):
        assert_equal(g, e, "oracle")


@pytest.mark.parametrize("nonneg", MODES)
def test_gradients_follow_the_chosen_candidate_when_one_is_nan(nonneg):
    """NaN in x_hi only: every term touching it has one NaN candidate, which wins (NaN
    propagates); its gradients go where the selection sends them and nowhere else."""
    m, k, n = 7, 40, 37
    x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = integer_operands(m, k, n, nonneg=nonneg,
                                                          dtype=torch.float64, seed=5)
    x_hi[2, 5] = x_hi[6, 33] = float("nan")
    dx, dw = routed_gradients(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    got = (*ops.interval_linear_backward_input(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg),
           *ops.interval_linear_backward_weight(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg))
    for g, e, name in zip(got, (*dx, *dw), ("dx_lo", "dx_hi", "dw_lo", "dw_hi")):
        assert torch.equal(g.isnan(), e.isnan()), name
        assert_equal(g[~g.isnan()], e[~e.isnan()], name)


@pytest.mark.parametrize("nonneg", MODES)
def test_gradients_with_nan_or_swapped_weight_bounds(nonneg):
    """Weights with w_hi NaN or w_lo > w_hi (possible with bound checks off) are routed exactly:
    the kernels that assume ordered weight bounds must not be used for them."""
    m, k, n = 6, 50, 40
    x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = integer_operands(m, k, n, nonneg=nonneg,
                                                          dtype=torch.float64, seed=6)
    w_hi[3, 7] = float("nan")
    w_lo[30, 45], w_hi[30, 45] = 2.0, -1.0
    dx, dw = routed_gradients(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg)
    got = (*ops.interval_linear_backward_input(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg),
           *ops.interval_linear_backward_weight(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg))
    for g, e, name in zip(got, (*dx, *dw), ("dx_lo", "dx_hi", "dw_lo", "dw_hi")):
        assert torch.equal(g.isnan(), e.isnan()), name
        assert_equal(g[~g.isnan()], e[~e.isnan()], name)


def test_concurrent_calls_from_several_threads():
    """Each calling thread has its own packing workspace; results do not depend on who runs."""
    cases = [integer_operands(m, k, n, nonneg=bool(i % 2), dtype=torch.float32, seed=10 + i)
             for i, (m, k, n) in enumerate([(33, 70, 50), (5, 300, 8), (64, 64, 64), (7, 9, 130)])]

    def run(i):
        x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = cases[i]
        nonneg = bool(i % 2)
        return (*ops.interval_linear(x_lo, x_hi, w_lo, w_hi, None, None, nonneg),
                *ops.interval_linear_backward_input(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg),
                *ops.interval_linear_backward_weight(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, nonneg))

    expected = [run(i) for i in range(len(cases))]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            for i, got in zip(range(len(cases)), pool.map(run, range(len(cases)))):
                for g, e in zip(got, expected[i]):
                    assert torch.equal(g, e)
