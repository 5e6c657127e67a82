"""The general-mode (signed input) CPU gradients on classified weights (general_grad_tiles and
general_dot_tiles, csrc/cpu/pixel_simd_kernels.h): where the weight and every input lane of a
chunk are sign-routed (csrc/interval_math.h), a one-sign weight's terms take known candidates
without comparing them; elsewhere every term compares its candidates. Both must route each
gradient exactly as the forward's choice does, ties included (the l-candidate wins).

* Routed chunks (and routed calls of the GEMM family: linear layers, and conv2d input gradients
  without a direct form): small-integer operands without the lanes that are not sign-routed (l < 0 == h),
  ties (l == h) kept, weights of every class mixed within register tiles: every product and sum
  is exact, so the kernels must equal the brute-force float64 oracle (bound_oracle.py) exactly.
* Hazards, each on an input channel of its own beside routed channels (a 1x1 convolution keeps a
  weight's gradient to one channel's lanes): ties of two different rounded products that the
  routed path would misroute, where the check must send the chunk (or the weight) to the
  compared path. The oracle then rounds each product to float32, as the kernels do, and takes
  the same choice."""

import numpy as np
import pytest
import torch

from bound_oracle import conv_terms, linear_terms, oracle
from conv_cases import config
from helpers import integer_interval
from test_cpu_general_weight_classes import INVALID, SHAPES, mixed_weights

pytestmark = pytest.mark.usefixtures("cpu_isa")
ops = torch.ops.inn_cuda


def routed_interval(shape, dtype, gen, sprinkled=False):
    """Small-integer [l, h] with ties (l == h) but no lane l < 0 == h (not sign-routed), or
    (sprinkled) with such lanes at 3 %: their pixel vectors compare, the others route."""
    lo, hi = integer_interval(shape, nonneg=False, gen=gen, dtype=dtype)
    hi = torch.where((lo < 0) & (hi == 0), torch.ones_like(hi), hi)
    if sprinkled:
        hazard = torch.rand(shape, generator=gen) < 0.03
        lo, hi = torch.where(hazard, -torch.ones_like(lo), lo), torch.where(hazard, 0 * hi, hi)
    return lo, hi


def gradients(op, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, cfg):
    args = (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *cfg, False)
    return (*getattr(ops, f"interval_{op}_backward_input")(*args),
            *getattr(ops, f"interval_{op}_backward_weight")(*args))


def oracle_gradients(op, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, cfg, mul=None):
    terms = conv_terms(op, tuple(x_lo.shape), tuple(w_lo.shape), cfg)
    arrays = [t.double().numpy() for t in (x_lo, x_hi, w_lo, w_hi, g_lo, g_hi)]
    kwargs = {} if mul is None else {"mul": mul}
    return oracle(terms, *arrays, False, **kwargs)[2:]


NAMES = ("dx_lo", "dx_hi", "dw_lo", "dw_hi")


# Sign-routed weights (nonzero bounds of one sign): with these alone every register tile of the
# weight gradient takes the routed path.
NONZERO = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0), (-3.0, -1.0), (-2.0, -2.0), (-1.0, -3.0)]


def nonzero_weights(w_shape, dtype, gen):
    pairs = torch.tensor(NONZERO, dtype=dtype)[torch.randint(0, len(NONZERO), w_shape,
                                                             generator=gen)]
    return pairs[..., 0].contiguous(), pairs[..., 1].contiguous()


@pytest.mark.parametrize("lanes", ["routed", "sprinkled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("weights", ["nonzero", "mixed", "mixed-straddling", "invalid"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[2]}")
def test_routed_chunks_equal_the_oracle(shape, weights, dtype, lanes):
    """Weights: sign-routed only; every class (zero bounds: compared); half of input channel
    0's straddling; sign-routed and invalid (a > b) ones."""
    op, x_shape, w_shape, c = shape
    if op == "conv_transpose2d":  # straddling weights on input channel 0 (dim 0)
        w_shape = (w_shape[1], w_shape[0], *w_shape[2:])
    cfg = config(op, c)
    gen = torch.Generator().manual_seed(23 + len(x_shape) + w_shape[0])
    x_lo, x_hi = routed_interval(x_shape, dtype, gen, lanes == "sprinkled")
    if weights == "nonzero":
        w_lo, w_hi = nonzero_weights(w_shape, dtype, gen)
    elif weights == "invalid":
        classes = torch.tensor(NONZERO + INVALID, dtype=dtype)
        pairs = classes[torch.randint(0, len(classes), w_shape, generator=gen)]
        w_lo, w_hi = pairs[..., 0].contiguous(), pairs[..., 1].contiguous()
    else:
        w_lo, w_hi = mixed_weights(w_shape, dtype, gen, 0.5 if "straddling" in weights else 0.0)
    if op == "conv_transpose2d":
        w_lo, w_hi = w_lo.transpose(0, 1).contiguous(), w_hi.transpose(0, 1).contiguous()
    y_shape = getattr(ops, "interval_" + op)(x_lo, x_hi, w_lo, w_hi, None, None, *cfg,
                                             False)[0].shape
    g_lo, g_hi = integer_interval(y_shape, nonneg=False, gen=gen, dtype=dtype)
    got = gradients(op, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, cfg)
    want = oracle_gradients(op, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, cfg)
    for name, g, w in zip(NAMES, got, want):
        torch.testing.assert_close(g.double(), torch.from_numpy(w), rtol=0, atol=0,
                                   msg=lambda m: f"{op} {name}: {m}")


def mul_float32(x, y):
    """Bound products rounded to float32, as the float32 kernels compute them (finite operands)."""
    return (x.astype(np.float32) * y.astype(np.float32)).astype(np.float64)


TINY = float(np.float32(1.4e-45))  # the least float32 subnormal

# Hazard lanes (l, h) and a weight interval under which two different candidates tie: the
# routed path would send the gradient to h (or the weight gradient through h), the reference
# to l.
HAZARDS = {
    # l < 0 == h with a zero lower weight bound: both upper candidates are zero
    "negative-to-zero": ((-2.0, 0.0), (0.0, 2.0)),
    # products that underflow to zero, from subnormal input bounds
    "subnormal-input": ((1e-40, 2e-40), (1e-6, 2e-6)),
    # a subnormal weight bound: its products underflow on every input lane
    "subnormal-weight": ((0.1, 0.2), (TINY, 2 * TINY)),
    # a zero weight: both candidates of each bound are zero, the weight's gradient goes through l
    "zero-weight": ((1.0, 2.0), (0.0, 0.0)),
    # bounds one float32 ulp apart: rounding can tie their products
    "one-ulp": ((1.5, float(np.nextafter(np.float32(1.5), np.float32(2)))), (1.4, 1.9)),
}


@pytest.mark.parametrize("hazard", HAZARDS, ids=str)
def test_hazard_lanes_route_like_the_reference(hazard):
    (l, h), (a, b) = HAZARDS[hazard]
    gen = torch.Generator().manual_seed(3)
    x_shape, w_shape, y_shape = (2, 2, 8, 16), (4, 2, 1, 1), (2, 4, 8, 16)
    x_lo, x_hi = routed_interval(x_shape, torch.float32, gen)
    x_lo[:, 0], x_hi[:, 0] = l, h  # channel 0: the hazard lanes; channel 1: routed lanes
    w_lo, w_hi = mixed_weights(w_shape, torch.float32, gen, 0.0)
    # channel 0's weights: the hazard weight and its negation (both one-sign kinds)
    w_lo[:, 0, 0, 0] = torch.tensor([a, -b, a, -b])
    w_hi[:, 0, 0, 0] = torch.tensor([b, -a, b, -a])
    g_lo, g_hi = integer_interval(y_shape, nonneg=False, gen=gen, dtype=torch.float32)
    cfg = config("conv2d", {})
    got = gradients("conv2d", g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, cfg)
    want = oracle_gradients("conv2d", g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, cfg, mul=mul_float32)
    for name, g, w in zip(NAMES, got, want):
        for channel in range(2):  # each input channel at its own scale (subnormal ones too)
            w_c = torch.from_numpy(w)[:, channel]
            torch.testing.assert_close(g.double()[:, channel], w_c, rtol=1e-4,
                                       atol=1e-4 * float(w_c.abs().max()),
                                       msg=lambda m: f"{hazard} {name} channel {channel}: {m}")


# (M, K, N): partial register tiles; N above the input gradient's reduction block (128) and M
# above the weight gradient's, so that tiles accumulate across blocks.
LINEAR = [(5, 7, 3), (37, 45, 29), (150, 70, 150)]


@pytest.mark.parametrize("lanes", ["routed", "sprinkled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("weights", ["nonzero", "mixed-straddling", "invalid"])
@pytest.mark.parametrize("mkn", LINEAR, ids=str)
def test_routed_linear_gradients_equal_the_oracle(mkn, weights, dtype, lanes):
    m, k, n = mkn
    gen = torch.Generator().manual_seed(m + k + n)
    x_lo, x_hi = routed_interval((m, k), dtype, gen, lanes == "sprinkled")
    if weights == "nonzero":
        w_lo, w_hi = nonzero_weights((n, k), dtype, gen)
    elif weights == "invalid":
        classes = torch.tensor(NONZERO + INVALID, dtype=dtype)
        pairs = classes[torch.randint(0, len(classes), (n, k), generator=gen)]
        w_lo, w_hi = pairs[..., 0].contiguous(), pairs[..., 1].contiguous()
    else:  # straddling weights in a few columns only: most tiles stay routed
        w_lo, w_hi = mixed_weights((n, k, 1, 1), dtype, gen, 0.5)
        w_lo, w_hi = w_lo[..., 0, 0].contiguous(), w_hi[..., 0, 0].contiguous()
    g_lo, g_hi = integer_interval((m, n), nonneg=False, gen=gen, dtype=dtype)
    args = (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, False)
    got = (*ops.interval_linear_backward_input(*args), *ops.interval_linear_backward_weight(*args))
    arrays = [t.double().numpy() for t in (x_lo, x_hi, w_lo, w_hi, g_lo, g_hi)]
    want = oracle(linear_terms(m, n, k), *arrays, False)[2:]
    for name, g, w in zip(NAMES, got, want):
        torch.testing.assert_close(g.double(), torch.from_numpy(w), rtol=0, atol=0,
                                   msg=lambda msg: f"linear {name}: {msg}")


@pytest.mark.parametrize("hazard", HAZARDS, ids=str)
def test_hazard_lanes_route_like_the_reference_in_linear_layers(hazard):
    """The hazard lanes in one input column of a linear layer (its weights' gradients see only
    that column), routed integer columns beside it."""
    (l, h), (a, b) = HAZARDS[hazard]
    gen = torch.Generator().manual_seed(5)
    m, k, n = 40, 33, 20
    x_lo, x_hi = routed_interval((m, k), torch.float32, gen)
    x_lo[:, 0], x_hi[:, 0] = l, h
    w_lo, w_hi = nonzero_weights((n, k), torch.float32, gen)
    w_lo[:, 0] = torch.tensor([a, -b] * (n // 2))
    w_hi[:, 0] = torch.tensor([b, -a] * (n // 2))
    g_lo, g_hi = integer_interval((m, n), nonneg=False, gen=gen, dtype=torch.float32)
    args = (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, False)
    got = (*ops.interval_linear_backward_input(*args), *ops.interval_linear_backward_weight(*args))
    arrays = [t.double().numpy() for t in (x_lo, x_hi, w_lo, w_hi, g_lo, g_hi)]
    want = oracle(linear_terms(m, n, k), *arrays, False, mul=mul_float32)[2:]
    for name, g, w in zip(NAMES, got, want):
        for cols in (slice(0, 1), slice(1, None)):  # the hazard column at its own scale
            w_c = torch.from_numpy(w)[:, cols]
            torch.testing.assert_close(g.double()[:, cols], w_c, rtol=1e-4,
                                       atol=1e-4 * float(w_c.abs().max()),
                                       msg=lambda msg: f"{hazard} {name}: {msg}")
