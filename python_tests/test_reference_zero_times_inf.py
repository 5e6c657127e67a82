"""The reference follows the kernels' bound convention ``0 * inf = 0`` (``inn::mul_bound``): a
zero weight or input bound contributes nothing, however unbounded the other factor; NaN operands
still give NaN. Checked against an elementwise float64 enumeration of the four endpoint products
with the same convention, on both the general and the non-negative paths."""

import itertools

import pytest
import torch

import inn_cuda.reference as R

INF = float("inf")


def brute(x_lo, x_hi, w_lo, w_hi):
    """(M, K) x (N, K): per-term min/max of the four products with 0 * inf = 0, summed."""
    m, n = x_lo.shape[0], w_lo.shape[0]
    lo, hi = torch.zeros(m, n, dtype=torch.float64), torch.zeros(m, n, dtype=torch.float64)
    for i, j in itertools.product(range(m), range(n)):
        products = torch.stack([R.mul_bound(x, w) for x in (x_lo[i], x_hi[i])
                                for w in (w_lo[j], w_hi[j])])
        lo[i, j] = products.min(0).values.sum()
        hi[i, j] = products.max(0).values.sum()
    return lo, hi


def test_mul_bound_convention():
    x = torch.tensor([0.0, -0.0, INF, -INF, float("nan"), 2.0], dtype=torch.float64)
    y = torch.tensor([INF, -INF, 0.0, 0.0, 0.0, INF], dtype=torch.float64)
    out = R.mul_bound(x, y)
    assert out[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert torch.isnan(out[4]) and out[5] == INF


@pytest.mark.parametrize("nonneg", [False, True])
def test_linear_with_infinite_bounds_is_exact_and_nan_free(nonneg):
    g = torch.Generator().manual_seed(0)
    x_lo = torch.randn(4, 6, generator=g, dtype=torch.float64)
    if nonneg:
        x_lo = x_lo.abs()
    x_hi = x_lo + torch.rand(4, 6, generator=g, dtype=torch.float64)
    x_hi[0, 1] = INF
    x_hi[2, :3] = INF
    if not nonneg:
        x_lo[1, 2] = -INF
    w_lo = torch.randn(5, 6, generator=g, dtype=torch.float64)
    w_lo[:, 1] = 0.0  # zero weights meet the infinite input bounds
    w_lo[1:3, :3] = 0.0
    w_hi = w_lo.clone()
    w_hi[0] += 0.5
    lo, hi = R.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=nonneg)
    e_lo, e_hi = brute(x_lo, x_hi, w_lo, w_hi)
    assert not torch.isnan(lo).any() and not torch.isnan(hi).any()
    assert torch.equal(torch.isinf(lo), torch.isinf(e_lo)) and torch.equal(lo.isinf(), e_lo.isinf())
    finite = ~torch.isinf(e_lo)
    torch.testing.assert_close(lo[finite], e_lo[finite])
    torch.testing.assert_close(hi, e_hi)


def test_nan_still_propagates():
    x = torch.tensor([[float("nan"), 1.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    for nonneg in (False, True):
        lo, hi = R.interval_linear(x, x, w, w, input_nonneg=nonneg)
        assert torch.isnan(lo).all() and torch.isnan(hi).all()


@pytest.mark.parametrize("transpose", [False, True])
def test_conv_nonneg_path_with_infinite_bounds_matches_general_path(transpose):
    g = torch.Generator().manual_seed(1)
    x_lo = torch.rand(1, 2, 4, 4, generator=g, dtype=torch.float64)
    x_hi = x_lo + 0.5
    x_hi[0, 0, 1, 2] = INF
    w = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64)
    w[:, 0, 1, 1] = 0.0
    w[:, 0, 0, 0] = 0.0
    if transpose:
        run = lambda nonneg: R.interval_conv_transpose2d(  # noqa: E731
            x_lo, x_hi, w, w, None, None, (1, 1), (1, 1), (0, 0), 1, (1, 1), nonneg)
    else:
        run = lambda nonneg: R.interval_conv2d(  # noqa: E731
            x_lo, x_hi, w, w, None, None, (1, 1), (1, 1), (1, 1), 1, nonneg)
    fast, general = run(True), run(False)
    for a, b in zip(fast, general):
        assert not torch.isnan(a).any()
        assert torch.equal(a.isinf(), b.isinf())
        torch.testing.assert_close(a[~a.isinf()], b[~b.isinf()])
        assert torch.equal(a[a.isinf()], b[b.isinf()])
