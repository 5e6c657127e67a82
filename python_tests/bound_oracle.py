"""An independent brute-force float64 oracle of the interval layers under the 0 * inf = 0 bound
convention (``inn::mul_bound``, csrc/interval_math.h), forward and both gradients: every term of a
layer listed as (output, input, weight) indices, each bound product under the convention,
gradients routed through the selected candidate; and operands that exercise it (exact zeros and
infinite bounds). Shared by the CPU kernel tests and the CUDA emulation tests."""

import numpy as np
import torch

import inn_cuda


# ----------------------------------------------------------------------------------- oracle

def mul_bound(x, y):
    with np.errstate(invalid="ignore"):
        p = x * y
    return np.where(np.isnan(p) & ~np.isnan(x) & ~np.isnan(y), 0.0, p)


def linear_terms(m, n, k):
    mi, ni, ki = np.meshgrid(np.arange(m), np.arange(n), np.arange(k), indexing="ij")
    return (mi * n + ni).ravel(), (mi * k + ki).ravel(), (ni * k + ki).ravel(), (m, n)


def conv_terms(op, x_shape, w_shape, cfg):
    """(out, x, w) flat indices of every term that reaches an output (padding taps read zeros
    and add nothing: they are left out), and the output shape."""
    if op == "conv2d":
        (sh, sw), (ph, pw), (dh, dw), groups = cfg
        oph = opw = 0
        out_c, cg, kh, kw = w_shape
    else:
        (sh, sw), (ph, pw), (oph, opw), groups, (dh, dw) = cfg
        cg, og, kh, kw = w_shape
        cg //= groups
        out_c = og * groups
    n, c_in, h, w = x_shape
    og = out_c // groups
    if op == "conv2d":
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        b, g, o, oy, ox, c, i, j = np.meshgrid(*map(np.arange, (n, groups, og, ho, wo, cg, kh, kw)),
                                               indexing="ij")
        iy, ix = oy * sh - ph + i * dh, ox * sw - pw + j * dw
        w_idx = (((g * og + o) * cg + c) * kh + i) * kw + j
    else:
        ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
        wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
        b, g, c, iy, ix, o, i, j = np.meshgrid(*map(np.arange, (n, groups, cg, h, w, og, kh, kw)),
                                               indexing="ij")
        oy, ox = iy * sh - ph + i * dh, ix * sw - pw + j * dw
        w_idx = (((g * cg + c) * og + o) * kh + i) * kw + j
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w) & (oy >= 0) & (oy < ho) & (ox >= 0) & (ox < wo)
    out = ((b * out_c + g * og + o) * ho + oy) * wo + ox
    x = ((b * c_in + g * cg + c) * h + iy) * w + ix
    return out[ok], x[ok], w_idx[ok], (n, out_c, ho, wo)


def oracle(terms, x_lo, x_hi, w_lo, w_hi, g_lo, g_hi, nonneg, mul=mul_bound):
    """Forward bounds and the gradients of x and w (float64 arrays shaped like the operands)."""
    with np.errstate(invalid="ignore"):  # inf - inf sums (and, for mul=*, 0 * inf) give NaN
        return _oracle(terms, x_lo, x_hi, w_lo, w_hi, g_lo, g_hi, nonneg, mul)


def _oracle(terms, x_lo, x_hi, w_lo, w_hi, g_lo, g_hi, nonneg, mul):
    out, xi, wi, out_shape = terms
    l, h = x_lo.ravel()[xi], x_hi.ravel()[xi]
    a, b = w_lo.ravel()[wi], w_hi.ravel()[wi]
    if nonneg:
        lo_x, lo_use_l, lo_w, lo_is_a = np.where(a >= 0, l, h), a >= 0, a, np.ones_like(a, bool)
        hi_x, hi_use_l, hi_w, hi_is_a = np.where(b >= 0, h, l), ~(b >= 0), b, np.zeros_like(b, bool)
        lo_v, hi_v = mul(lo_w, lo_x), mul(hi_w, hi_x)
    else:
        def choose(first, second, take_l_cmp):
            wl, wh = np.where(l >= 0, first, second), np.where(h >= 0, first, second)
            pl, ph = mul(l, wl), mul(h, wh)
            take_l = take_l_cmp(pl, ph) | np.isnan(pl)
            return (np.where(take_l, pl, ph), np.where(take_l, l, h), take_l,
                    np.where(take_l, wl, wh))
        lo_v, lo_x, lo_use_l, lo_w = choose(a, b, lambda p, q: p <= q)
        hi_v, hi_x, hi_use_l, hi_w = choose(b, a, lambda p, q: p >= q)
        lo_is_a = np.where(lo_use_l, l >= 0, h >= 0)
        hi_is_a = ~np.where(hi_use_l, l >= 0, h >= 0)
    size = int(np.prod(out_shape))
    y_lo, y_hi = np.zeros(size), np.zeros(size)
    np.add.at(y_lo, out, lo_v)
    np.add.at(y_hi, out, hi_v)
    gl, gh = g_lo.ravel()[out], g_hi.ravel()[out]
    dx_lo, dx_hi = np.zeros(x_lo.size), np.zeros(x_lo.size)
    dw_lo, dw_hi = np.zeros(w_lo.size), np.zeros(w_lo.size)
    for g, use_l, wgt, is_a, xv in ((gl, lo_use_l, lo_w, lo_is_a, lo_x),
                                    (gh, hi_use_l, hi_w, hi_is_a, hi_x)):
        dx = mul(g, wgt)
        np.add.at(dx_lo, xi[use_l], dx[use_l])
        np.add.at(dx_hi, xi[~use_l], dx[~use_l])
        dw = mul(g, xv)
        np.add.at(dw_lo, wi[is_a], dw[is_a])
        np.add.at(dw_hi, wi[~is_a], dw[~is_a])
    return [t.reshape(shape) for t, shape in ((y_lo, out_shape), (y_hi, out_shape),
                                              (dx_lo, x_lo.shape), (dx_hi, x_lo.shape),
                                              (dw_lo, w_lo.shape), (dw_hi, w_lo.shape))]


# --------------------------------------------------------------------------------- operands

def with_infinities(x_shape, w_shape, y_shape, *, nonneg, dtype, seed, share=0.02):
    """Integer intervals with exact zeros (a fifth of the weights are [0, 0]) and a few infinite
    bounds in the input, the weights and the upstream gradients."""
    gen = torch.Generator().manual_seed(seed)

    def interval(shape, nonneg_lo):
        lo = torch.randint(-3, 4, shape, generator=gen).double()
        lo = lo.abs() if nonneg_lo else lo
        hi = lo + torch.randint(0, 3, shape, generator=gen).double()
        if not nonneg_lo:
            lo[torch.rand(shape, generator=gen) < share] = -float("inf")
        hi[torch.rand(shape, generator=gen) < share] = float("inf")
        return lo, hi

    x_lo, x_hi = interval(x_shape, nonneg)
    x_lo[torch.rand(x_shape, generator=gen) < 0.2] = 0.0
    x_hi = torch.maximum(x_lo, x_hi)
    w_lo, w_hi = interval(w_shape, False)
    zero = torch.rand(w_shape, generator=gen) < 0.2
    w_lo[zero], w_hi[zero] = 0.0, 0.0
    g_lo = torch.randint(-2, 3, y_shape, generator=gen).double()
    g_hi = torch.randint(-2, 3, y_shape, generator=gen).double()
    g_lo[torch.rand(y_shape, generator=gen) < share] = float("inf")
    g_hi[torch.rand(y_shape, generator=gen) < share] = -float("inf")
    return [t.to(dtype) for t in (x_lo, x_hi, w_lo, w_hi, g_lo, g_hi)]


def check(kernels, name, terms, cfg, operands, nonneg, *, convention_matters=True):
    """``kernels.<name>`` and its two backward ops (``torch.ops.inn_cuda`` or the CUDA emulation)
    equal the oracle exactly. ``convention_matters``: also assert that the case tests the 0 * inf
    convention (plain products give NaN somewhere the convention gives a number)."""
    x_lo, x_hi, w_lo, w_hi, g_lo, g_hi = operands
    want = oracle(terms, *(t.double().numpy() for t in operands), nonneg)
    if convention_matters:
        naive = oracle(terms, *(t.double().numpy() for t in operands), nonneg,
                       mul=lambda x, y: x * y)
        assert any((np.isnan(n) & ~np.isnan(w)).any() for n, w in zip(naive, want))
    with inn_cuda.check_bounds(False):
        y = getattr(kernels, name)(x_lo, x_hi, w_lo, w_hi, None, None, *cfg, nonneg)
        dx = getattr(kernels, name + "_backward_input")(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *cfg,
                                                    nonneg)
        dw = getattr(kernels, name + "_backward_weight")(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *cfg,
                                                     nonneg)
    for what, got, expected in zip(("y_lo", "y_hi", "dx_lo", "dx_hi", "dw_lo", "dw_hi"),
                                   (*y, *dx, *dw), want):
        torch.testing.assert_close(got.double(), torch.from_numpy(expected), rtol=0, atol=0,
                                   equal_nan=True, msg=lambda m: f"{name} {what}: {m}")
