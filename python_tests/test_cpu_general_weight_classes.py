"""The general-mode (signed input) CPU forward on classified weights (ClassifiedWeights,
csrc/cpu/conv_pixel_lanes.h; general_tiles, csrc/cpu/pixel_simd_kernels.h): a weight of one sign
(a >= 0, or b <= 0) takes one candidate per bound, a straddling one (a < 0 < b) both and the
choice, in runs of taps reordered per tile by the kinds of its channels. Weights of every class
(a > 0, a == 0, b == 0, b < 0, a == b of either sign and zero, lo == -0, straddling) mixed within
register tiles and across taps, so that tiles hold runs of many kinds (all one-sign kinds of the
tile's channels, and straddling taps), on pixel-lane shapes of conv2d (direct and windows) and
conv_transpose2d, for every instruction set this CPU supports (the `cpu_isa` fixture).

Small-integer operands: every product and sum is exact whatever the order, so the kernels must
equal the brute-force float64 oracle (bound_oracle.py) exactly; random floats must agree with the
float64 reference to within rounding."""

import numpy as np
import pytest
import torch

from inn_cuda import reference

from bound_oracle import conv_terms, linear_terms, oracle
from conv_cases import config
from helpers import integer_interval

pytestmark = pytest.mark.usefixtures("cpu_isa")
ops = torch.ops.inn_cuda

# Weight classes as (a, b): one-sign ones (zeros of both signs at the ends), and straddling.
ONE_SIGN = [(1.0, 3.0), (0.0, 2.0), (-0.0, 1.0), (2.0, 2.0), (0.0, 0.0), (-0.0, -0.0),
            (-3.0, -1.0), (-2.0, 0.0), (-1.0, -0.0), (-2.0, -2.0)]
STRADDLING = [(-1.0, 2.0), (-3.0, 1.0)]
# Invalid intervals (a > b; the ops' value checks are off or bypassed): of one sign, or of both
# signs, which must take both candidates like straddling ones.
INVALID = [(3.0, 1.0), (-1.0, -3.0), (0.0, -2.0), (2.0, -0.0), (1.0, -1.0), (2.0, -3.0)]

# (op, x shape, w shape, config): out channels below the GEMM's general-mode threshold, several
# register tiles with a partial last one (every ISA's tile width), taps per tile above 16 so
# that runs of many kinds occur.
SHAPES = [
    ("conv2d", (2, 5, 7, 9), (9, 5, 3, 3), dict(padding=(1, 1))),                # direct
    ("conv2d", (2, 6, 9, 8), (10, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), groups=2)),
    ("conv_transpose2d", (2, 20, 5, 6), (20, 3, 2, 2), dict(stride=(2, 2))),
    ("conv_transpose2d", (1, 18, 6, 5), (18, 2, 3, 3), dict(padding=(1, 1))),   # overlapping
    # 64 output channels: pixel lanes with few straddling taps (the GEMM with many:
    # test_mostly_straddling_weights_equal_the_oracle)
    ("conv2d", (1, 3, 6, 7), (64, 3, 3, 3), dict(padding=(1, 1))),
    # 40 input channels: three blocks of classified taps (the direct forward's channel blocks)
    ("conv2d", (1, 40, 5, 6), (9, 40, 3, 3), dict(padding=(1, 1))),
]


def mixed_weights(w_shape, dtype, gen, straddling_share):
    """Weights of every class, straddling ones only at a share of the reduction's inputs (the
    first input channel: conv2d's dim 1, conv_transpose2d's dim 0) so that most taps of a tile
    are one-sign and some are not."""
    classes = torch.randint(0, len(ONE_SIGN), w_shape, generator=gen)
    pairs = torch.tensor(ONE_SIGN, dtype=dtype)[classes]
    straddle = torch.rand(w_shape, generator=gen) < straddling_share
    straddle[:, 1:] = False
    pick = torch.randint(0, len(STRADDLING), w_shape, generator=gen)
    pairs[straddle] = torch.tensor(STRADDLING, dtype=dtype)[pick[straddle]]
    return pairs[..., 0].contiguous(), pairs[..., 1].contiguous()


def run(op, x_lo, x_hi, w_lo, w_hi, cfg):
    return getattr(ops, "interval_" + op)(x_lo, x_hi, w_lo, w_hi, None, None, *cfg, False)


def assert_equals_the_oracle(op, cfg, x_lo, x_hi, w_lo, w_hi, nonneg=False):
    """The op's forward in the given mode equals the float64 brute-force oracle exactly."""
    got = getattr(ops, "interval_" + op)(x_lo, x_hi, w_lo, w_hi, None, None, *cfg, nonneg)
    terms = conv_terms(op, tuple(x_lo.shape), tuple(w_lo.shape), cfg)
    zeros = np.zeros(terms[3])
    want = oracle(terms, *(t.double().numpy() for t in (x_lo, x_hi, w_lo, w_hi)), zeros, zeros,
                  nonneg)[:2]
    for name, g, w in zip(("y_lo", "y_hi"), got, want):
        torch.testing.assert_close(g.double(), torch.from_numpy(w), rtol=0, atol=0,
                                   msg=lambda m: f"{op} {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[2]}")
def test_mixed_weight_classes_equal_the_oracle(shape, share, dtype):
    op, x_shape, w_shape, c = shape
    if op == "conv_transpose2d":  # straddling weights on input channel 0 (dim 0)
        w_shape = (w_shape[1], w_shape[0], *w_shape[2:])
    cfg = config(op, c)
    gen = torch.Generator().manual_seed(11 + len(x_shape) + w_shape[0])
    x_lo, x_hi = integer_interval(x_shape, nonneg=False, gen=gen, dtype=dtype)
    w_lo, w_hi = mixed_weights(w_shape, dtype, gen, share)
    if op == "conv_transpose2d":
        w_lo, w_hi = w_lo.transpose(0, 1).contiguous(), w_hi.transpose(0, 1).contiguous()
    assert_equals_the_oracle(op, cfg, x_lo, x_hi, w_lo, w_hi)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_mostly_straddling_weights_equal_the_oracle(dtype):
    """64 output channels with half of the weights straddling zero on every input channel: over
    kGemmStraddlingShare of the pixel tiles' taps straddle (csrc/cpu/conv_cpu.h,
    forward_on_gemm), so the general forward runs on the GEMM family, and must equal the oracle
    exactly like the pixel lanes."""
    op, x_shape, w_shape, c = "conv2d", (1, 3, 6, 7), (64, 3, 3, 3), dict(padding=(1, 1))
    gen = torch.Generator().manual_seed(23)
    x_lo, x_hi = integer_interval(x_shape, nonneg=False, gen=gen, dtype=dtype)
    one_sign = torch.tensor(ONE_SIGN, dtype=dtype)[torch.randint(0, len(ONE_SIGN), w_shape,
                                                                 generator=gen)]
    straddling = torch.tensor(STRADDLING, dtype=dtype)[torch.randint(0, len(STRADDLING), w_shape,
                                                                     generator=gen)]
    pairs = torch.where((torch.rand(w_shape, generator=gen) < 0.5)[..., None], straddling,
                        one_sign)
    assert_equals_the_oracle(op, config(op, c), x_lo, x_hi, pairs[..., 0].contiguous(),
                             pairs[..., 1].contiguous())


@pytest.mark.parametrize("share", [0.0, 0.1])
@pytest.mark.parametrize("shape", SHAPES[::2], ids=lambda s: s[0])
def test_random_float_weights_agree_with_the_reference(shape, share):
    """Realistic weights (w +- 5 % |w|, a share straddling zero) and signed float inputs: within
    float32 rounding of the float64 reference (the summation order and the fused add differ)."""
    op, x_shape, w_shape, c = shape
    cfg = config(op, c)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(x_shape, generator=gen)
    x_lo, x_hi = x - 0.1 * x.abs() - 0.01, x + 0.1 * x.abs() + 0.01
    w = torch.randn(w_shape, generator=gen)
    r = 0.05 * w.abs()
    r = torch.where(torch.rand(w_shape, generator=gen) < share, 1.5 * w.abs() + 0.01, r)
    w_lo, w_hi = w - r, w + r
    got = run(op, x_lo, x_hi, w_lo, w_hi, cfg)
    want = reference.OPS["interval_" + op](x_lo.double(), x_hi.double(), w_lo.double(),
                                          w_hi.double(), None, None, *cfg, False)
    # Each bound is a sum of |terms| <= the layer on magnitudes: rounding is relative to that.
    mag = reference.OPS["interval_" + op](x_hi.abs().maximum(x_lo.abs()).double(),
                                         x_hi.abs().maximum(x_lo.abs()).double(),
                                         w_hi.abs().maximum(w_lo.abs()).double(),
                                         w_hi.abs().maximum(w_lo.abs()).double(), None, None,
                                         *cfg, True)[1]
    for g, w_ in zip(got, want):
        err = (g.double() - w_).abs()
        assert (err <= 1e-5 * mag + 1e-30).all(), float((err / mag).max())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[2]}")
def test_invalid_weight_intervals_equal_the_oracle(shape):
    """Weights with a > b mixed with valid ones: the semantics' formula, not a wrong candidate."""
    op, x_shape, w_shape, c = shape
    cfg = config(op, c)
    gen = torch.Generator().manual_seed(17)
    x_lo, x_hi = integer_interval(x_shape, nonneg=False, gen=gen, dtype=torch.float64)
    classes = torch.tensor(ONE_SIGN + INVALID, dtype=torch.float64)
    pairs = classes[torch.randint(0, len(classes), w_shape, generator=gen)]
    w_lo, w_hi = pairs[..., 0].contiguous(), pairs[..., 1].contiguous()
    assert_equals_the_oracle(op, cfg, x_lo, x_hi, w_lo, w_hi)


# (M, K, N) above the small-batch rows (8): the GEMM family's forward, whose micro-panels of
# one-sign weights are split by kind; K above its reduction block (256) in the last one.
LINEAR = [(9, 7, 5), (37, 45, 70), (20, 300, 33)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("classes", ["one-sign", "one-sign-invalid", "mixed"])
@pytest.mark.parametrize("mkn", LINEAR, ids=str)
def test_linear_weight_classes_equal_the_oracle(mkn, classes, dtype):
    """One-sign weights only (every micro-panel split), with invalid one-sign intervals too, and
    with straddling ones in some columns (their panels compare candidates)."""
    m, k, n = mkn
    gen = torch.Generator().manual_seed(m * k + n)
    x_lo, x_hi = integer_interval((m, k), nonneg=False, gen=gen, dtype=dtype)
    pool = ONE_SIGN + ([(3.0, 1.0), (-1.0, -3.0), (0.0, -2.0), (2.0, -0.0)]
                       if classes == "one-sign-invalid" else [])
    pairs = torch.tensor(pool, dtype=dtype)[torch.randint(0, len(pool), (n, k), generator=gen)]
    w_lo, w_hi = pairs[..., 0].contiguous(), pairs[..., 1].contiguous()
    if classes == "mixed":
        w_lo[::7, :3], w_hi[::7, :3] = -1.0, 2.0
    got = ops.interval_linear(x_lo, x_hi, w_lo, w_hi, None, None, False)
    zeros = np.zeros((m, n))
    want = oracle(linear_terms(m, n, k), *(t.double().numpy() for t in (x_lo, x_hi, w_lo, w_hi)),
                  zeros, zeros, False)[:2]
    for name, g, w in zip(("y_lo", "y_hi"), got, want):
        torch.testing.assert_close(g.double(), torch.from_numpy(w), rtol=0, atol=0,
                                   msg=lambda msg: f"linear {name}: {msg}")


@pytest.mark.parametrize("inputs", ["nonneg", "signed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[2]}")
def test_non_negative_mode_weight_classes_equal_the_oracle(shape, dtype, inputs):
    """The non-negative mode's forward on the same classified runs: one-sign weights (valid or
    not), straddling ones mixed in, each term the product its weight's sign picks; also on signed
    inputs, where the raw op (which does not check values) must still follow that formula."""
    op, x_shape, w_shape, c = shape
    cfg = config(op, c)
    gen = torch.Generator().manual_seed(29 + w_shape[0])
    x_lo, x_hi = integer_interval(x_shape, nonneg=inputs == "nonneg", gen=gen, dtype=dtype)
    classes = torch.tensor(ONE_SIGN + STRADDLING + INVALID, dtype=dtype)
    pairs = classes[torch.randint(0, len(classes), w_shape, generator=gen)]
    w_lo, w_hi = pairs[..., 0].contiguous(), pairs[..., 1].contiguous()
    assert_equals_the_oracle(op, cfg, x_lo, x_hi, w_lo, w_hi, nonneg=True)
