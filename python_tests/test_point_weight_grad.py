"""The total weight gradient of point weights (``*_backward_weight_point``, csrc/library/
library_path.h ``weight_grad_point``): when w_lo and w_hi are one tensor (IBP-style use), autograd
gets dw_lo + dw_hi from one op in two or three products instead of the two bounds' gradients.

Against the reference and the fused kernels' dw_lo + dw_hi (both algorithms forced), against the
brute-force float64 oracle (bound_oracle.py: the sum of its per-bound gradients) on small integer
operands where every sum is exact, with exact zero weights (the general-mode tie rule), point
inputs and infinite / NaN operands (routed to the fused kernel: its sum, bit for bit); through the
public autograd against the interval-weight path (a copy of w), gradcheck, opcheck and compile."""

import numpy as np
import pytest
import torch

import inn_cuda
from inn_cuda import reference
from inn_cuda._algorithm import algorithm, path_counts, reset_path_counts

from bound_oracle import conv_terms, linear_terms, oracle, with_infinities
from helpers import ALL_DEVICES, assert_close_scaled

ops = torch.ops.inn_cuda

# (op family, x shape, w shape, config): groups, stride, dilation, padding, output_padding
CASES = {
    "linear": ("linear", (2, 3, 7), (5, 7), []),
    "conv2d": ("conv2d", (2, 4, 7, 6), (6, 2, 3, 2), [[2, 1], [1, 0], [1, 2], 2]),
    "conv_transpose2d": ("conv_transpose2d", (2, 4, 5, 4), (4, 3, 3, 2),
                         [[2, 1], [1, 0], [1, 0], 2, [1, 2]]),
}
MODES = [pytest.param(False, id="general"), pytest.param(True, id="nonneg")]


def y_shape(family, x_shape, w_shape, config):
    if family == "linear":
        return (*x_shape[:-1], w_shape[0])
    return conv_terms(family, x_shape, w_shape, config)[3]


def random_operands(x_shape, w_shape, nonneg, seed):
    """(generator, x_lo, x_hi, w): random float64 bounds (x_lo >= 0 in nonneg mode), and w."""
    gen = torch.Generator().manual_seed(seed)
    x_lo = torch.randn(x_shape, generator=gen, dtype=torch.float64)
    x_lo = x_lo.abs() if nonneg else x_lo
    x_hi = x_lo + torch.rand(x_shape, generator=gen, dtype=torch.float64)
    return gen, x_lo, x_hi, torch.randn(w_shape, generator=gen, dtype=torch.float64)


def point_operands(case, nonneg, dtype, device, gen):
    """Integer operands (exact sums), exact zero weights and point inputs (ties)."""
    family, xs, ws, config = CASES[case]
    x_lo = torch.randint(-3, 4, xs, generator=gen).to(dtype)
    x_lo = x_lo.abs() if nonneg else x_lo
    x_hi = x_lo + torch.randint(0, 3, xs, generator=gen).to(dtype)
    w = torch.randint(-3, 4, ws, generator=gen).to(dtype)  # a seventh exactly 0
    shape = y_shape(family, xs, ws, config)
    g_lo = torch.randint(-2, 3, shape, generator=gen).to(dtype)
    g_hi = torch.randint(-2, 3, shape, generator=gen).to(dtype)
    return [t.to(device) for t in (g_lo, g_hi, x_lo, x_hi, w)], config


def run(path, fn):
    with algorithm(path):
        reset_path_counts()
        out = fn()
        counts = path_counts()
    return out, {p for c in counts.values() for p, n in c.items() if n}


def fused_sum(family, g_lo, g_hi, x_lo, x_hi, w, config, nonneg):
    (lo, hi), _ = run("fused", lambda: getattr(ops, f"interval_{family}_backward_weight")(
        g_lo, g_hi, x_lo, x_hi, w, w, *config, nonneg))
    return lo + hi


def oracle_sum(family, g_lo, g_hi, x_lo, x_hi, w, config, nonneg):
    xs, ws = tuple(x_lo.shape), tuple(w.shape)
    if family == "linear":
        k = xs[-1]
        m = x_lo.numel() // k
        terms = linear_terms(m, ws[0], k)
    else:
        terms = conv_terms(family, xs, ws, config)
    arrays = [t.double().cpu().numpy() for t in (x_lo, x_hi, w, w, g_lo, g_hi)]
    dw_lo, dw_hi = oracle(terms, *arrays, nonneg)[4:]
    with np.errstate(invalid="ignore"):  # inf + -inf: NaN, as in the kernels
        return torch.from_numpy(dw_lo + dw_hi)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_exact_against_oracle_reference_and_fused(case, dtype, nonneg, device):
    """Integer operands: the library form, the fused sum and the reference all equal the oracle
    exactly (zero weights, point inputs and both modes included)."""
    gen = torch.Generator().manual_seed(len(case) + 10 * nonneg)
    (g_lo, g_hi, x_lo, x_hi, w), config = point_operands(case, nonneg, dtype, device, gen)
    x_hi = torch.where(torch.rand(x_hi.shape, generator=gen).to(device) < 0.3, x_lo, x_hi)
    assert bool((w == 0).any()) and bool((x_lo == x_hi).any())
    family = CASES[case][0]
    op = getattr(ops, f"interval_{family}_backward_weight_point")
    args = (g_lo, g_hi, x_lo, x_hi, w, *config, nonneg)
    want = oracle_sum(family, g_lo, g_hi, x_lo, x_hi, w, config, nonneg)
    lib, served = run("library", lambda: op(*args))
    assert served == {"library"}
    fused, served = run("fused", lambda: op(*args))
    assert served == {"fused"}
    ref = reference.OPS[f"interval_{family}_backward_weight_point"](*args)
    for got in (lib, fused, ref, fused_sum(family, g_lo, g_hi, x_lo, x_hi, w, config, nonneg)):
        assert got.shape == w.shape and got.dtype == dtype and got.is_contiguous()
        torch.testing.assert_close(got.double().cpu(), want, rtol=0, atol=0)


def test_general_mode_tie_rule_needs_the_third_product():
    """At w == 0 both bounds select l in general mode (S·l); the two-product forms would give
    g_lo·l + g_hi·h or g_lo·h + g_hi·l. A weight of zeros only: the rule alone decides."""
    x_lo, x_hi = torch.tensor([[-1.0, 2.0]]), torch.tensor([[3.0, 5.0]])
    w = torch.zeros(1, 2)
    g_lo, g_hi = torch.tensor([[1.0]]), torch.tensor([[10.0]])
    for path in ("library", "fused"):
        got, _ = run(path, lambda: ops.interval_linear_backward_weight_point(
            g_lo, g_hi, x_lo, x_hi, w, False))
        torch.testing.assert_close(got, torch.tensor([[-11.0, 22.0]]), rtol=0, atol=0)
        got, _ = run(path, lambda: ops.interval_linear_backward_weight_point(
            g_lo, g_hi, x_lo.abs(), x_hi, w, True))  # nonneg: zero counts as non-negative
        torch.testing.assert_close(got, torch.tensor([[31.0, 52.0]]), rtol=0, atol=0)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_random_float32_within_rounding(case, nonneg, device):
    """Random float32 operands (no exact zeros: two products): the library form within the
    rounding error of a sum in another order, against the float64 reference."""
    family, xs, ws, config = CASES[case]
    gen, x_lo, x_hi, w = random_operands(xs, ws, nonneg, seed=7)
    shape = y_shape(family, xs, ws, config)
    g_lo, g_hi = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    args64 = (g_lo, g_hi, x_lo, x_hi, w, *config, nonneg)
    want = reference.OPS[f"interval_{family}_backward_weight_point"](*args64)
    args = [a.float().to(device) if isinstance(a, torch.Tensor) else a for a in args64]
    got, served = run("library", lambda: getattr(
        ops, f"interval_{family}_backward_weight_point")(*args))
    assert served == {"library"}
    # scale: sum over the batch of (|g_lo| + |g_hi|) * max(|l|, |h|) per weight
    scale = oracle_sum(family, g_lo.abs() + g_hi.abs(), torch.zeros_like(g_hi),
                       torch.maximum(x_lo.abs(), x_hi.abs()),
                       torch.maximum(x_lo.abs(), x_hi.abs()), w.abs() + 1, config, True)
    assert_close_scaled(got.cpu(), want, scale, torch.float32, shape[0] * 64)


@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_non_finite_operands_get_the_fused_sum(case, dtype, nonneg):
    """Infinite bounds in x, w and the gradients, exact zeros (0 * inf): the call is routed to
    the fused kernel and gives its dw_lo + dw_hi bit for bit, which is the oracle's sum."""
    family, xs, ws, config = CASES[case]
    if family == "linear":
        xs = (6, 7)
    shape = y_shape(family, xs, ws, config)
    x_lo, x_hi, w, _, g_lo, g_hi = with_infinities(xs, ws, shape, nonneg=nonneg, dtype=dtype,
                                                    seed=sum(xs) + nonneg)
    args = (g_lo, g_hi, x_lo, x_hi, w, *config, nonneg)
    op = getattr(ops, f"interval_{family}_backward_weight_point")
    got, served = run("library", lambda: op(*args))
    assert served == {"fused"}
    want = fused_sum(family, g_lo, g_hi, x_lo, x_hi, w, config, nonneg)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got.double(), oracle_sum(family, *args[:5], config, nonneg),
                               rtol=0, atol=0, equal_nan=True)
    # a single non-finite weight, NaN input: routed as well
    for bad in ("inf-weight", "nan-input"):
        gen = torch.Generator().manual_seed(3)
        (g_lo, g_hi, x_lo, x_hi, w), config = point_operands(case, nonneg, dtype, "cpu", gen)
        if bad == "inf-weight":
            w.view(-1)[1] = float("inf")
        else:
            x_lo.view(-1)[0] = x_hi.view(-1)[0] = float("nan")
        got, served = run("library", lambda: op(g_lo, g_hi, x_lo, x_hi, w, *config, nonneg))
        assert served == {"fused"}, bad
        torch.testing.assert_close(got, fused_sum(family, g_lo, g_hi, x_lo, x_hi, w, config,
                                                  nonneg), rtol=0, atol=0, equal_nan=True)


# ------------------------------------------------------------------------- public autograd

def public(family, x_lo, x_hi, w_lo, w_hi, b, config, nonneg):
    if family == "linear":
        return inn_cuda.interval_linear(x_lo, x_hi, w_lo, w_hi, b, b, input_nonneg=nonneg)
    fn = getattr(inn_cuda, f"interval_{family}")
    return fn(x_lo, x_hi, w_lo, w_hi, b, b, *config, input_nonneg=nonneg)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_autograd_point_weight_equals_the_sum_path(case, nonneg, device):
    """interval_*(x_lo, x_hi, w, w, b, b): the gradient of w comes from the point op alone and
    equals the interval-weight path (a copy of w: two bounds' gradients added by autograd)."""
    family, xs, ws, config = CASES[case]
    gen, x_lo, x_hi, w = random_operands(xs, ws, nonneg, seed=5)
    w[0] = 0.0  # exact zeros: the general-mode tie rule
    channels = ws[0] if family != "conv_transpose2d" else ws[1] * config[3]
    b = torch.randn(channels, generator=gen, dtype=torch.float64)
    leaves = [t.to(device).requires_grad_(True) for t in (x_lo, x_hi, w, b)]
    shape = y_shape(family, xs, ws, config)
    g = [torch.randn(shape, generator=gen, dtype=torch.float64).to(device) for _ in range(2)]
    reset_path_counts()
    point = public(family, leaves[0], leaves[1], leaves[2], leaves[2], leaves[3], config, nonneg)
    got = torch.autograd.grad(point, leaves, g)
    counts = path_counts()
    assert f"interval_{family}_backward_weight" not in counts, counts
    assert sum(counts[f"interval_{family}_backward_weight_point"].values()) == 1, counts
    copy = leaves[2].clone()  # another tensor: the interval-weight path
    split = public(family, leaves[0], leaves[1], leaves[2], copy, leaves[3], config, nonneg)
    want = torch.autograd.grad(split, leaves, g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)
    for t, y in zip(point, split):
        torch.testing.assert_close(t, y)


@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_point_weight(case, nonneg):
    family, xs, ws, config = CASES[case]
    gen = torch.Generator().manual_seed(11)
    x_lo = torch.randn(xs, generator=gen, dtype=torch.float64)
    x_lo = x_lo.abs() + 0.1 if nonneg else x_lo
    x_hi = x_lo + 0.1 + torch.rand(xs, generator=gen, dtype=torch.float64)
    w = torch.randn(ws, generator=gen, dtype=torch.float64)
    w = torch.where(w.abs() < 0.05, torch.full_like(w, 0.5), w)  # no sign change within eps
    leaves = [t.requires_grad_(True) for t in (x_lo, x_hi, w)]
    with inn_cuda.check_bounds(False):
        assert torch.autograd.gradcheck(
            lambda l, h, v: public(family, l, h, v, v, None, config, nonneg), leaves)


@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_opcheck_point_op(case, nonneg):
    gen = torch.Generator().manual_seed(2)
    (g_lo, g_hi, x_lo, x_hi, w), config = point_operands(case, nonneg, torch.float64, "cpu", gen)
    op = getattr(ops, f"interval_{CASES[case][0]}_backward_weight_point").default
    for path in ("library", "fused"):
        with algorithm(path):
            torch.library.opcheck(op, (g_lo, g_hi, x_lo, x_hi, w, *config, nonneg))


def test_compile_point_weight_layer():
    """A point-weight conv layer under torch.compile: the compiled backward calls the point op
    and gives the eager gradients."""
    x_lo = torch.randn(2, 3, 6, 6)
    x_hi = x_lo + torch.rand_like(x_lo)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)

    def ibp(x_lo, x_hi, w):
        y_lo, y_hi = inn_cuda.interval_conv2d(x_lo, x_hi, w, w, padding=1)
        return (y_hi - y_lo).square().sum() + y_lo.sum()

    compiled = torch.compile(ibp, backend="aot_eager", fullgraph=True)
    reset_path_counts()
    (got,) = torch.autograd.grad(compiled(x_lo, x_hi, w), w)
    assert sum(path_counts()["interval_conv2d_backward_weight_point"].values()) >= 1
    (want,) = torch.autograd.grad(ibp(x_lo, x_hi, w), w)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("nonneg", MODES)
def test_any_layout(nonneg):
    """The CPU passes read the products, the weight and the input bounds as flat arrays laid out
    alike: channels_last and transposed operands give the fused sum (integer operands: exact)."""
    gen = torch.Generator().manual_seed(4)
    (g_lo, g_hi, x_lo, x_hi, w), config = point_operands("conv2d", nonneg, torch.float64, "cpu",
                                                         gen)
    last = dict(memory_format=torch.channels_last)
    for args in ((g_lo, g_hi.contiguous(**last), x_lo.contiguous(**last), x_hi, w),
                 (g_lo, g_hi, x_lo, x_hi, w.contiguous(**last))):
        got, served = run("library", lambda: ops.interval_conv2d_backward_weight_point(
            *args, *config, nonneg))
        assert served == {"library"} and got.is_contiguous()
        torch.testing.assert_close(got, fused_sum("conv2d", *args, config, nonneg), rtol=0,
                                   atol=0)
    (g_lo, g_hi, x_lo, x_hi, w), _ = point_operands("linear", nonneg, torch.float64, "cpu", gen)
    wt = w.T.contiguous().T  # a transposed layout
    got, served = run("library", lambda: ops.interval_linear_backward_weight_point(
        g_lo, g_hi, x_lo, x_hi, wt, nonneg))
    assert served == {"library"}
    torch.testing.assert_close(got, fused_sum("linear", g_lo, g_hi, x_lo, x_hi, w, [], nonneg),
                               rtol=0, atol=0)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_weight_is_named_as_the_point_ops_w(case, device):
    """The point ops check their one weight w as both bounds: their messages say so, so that a
    "w_lo" in them points at w."""
    family, x_shape, w_shape, config = CASES[case]
    x = torch.rand(x_shape, device=device)
    g = torch.rand(y_shape(family, x_shape, w_shape, config), device=device)
    w = torch.rand(w_shape[0] + 1, *w_shape[1:], device=device)  # one too many in dim 0
    op = getattr(ops, f"interval_{family}_backward_weight_point")
    with pytest.raises(ValueError, match=rf"interval_{family}_backward_weight_point \(w checked "
                                         r"as w_lo and w_hi\): "):
        op(g, g, x, x, w, *config, False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible")
@pytest.mark.parametrize("nonneg", MODES)
def test_cuda_point_op_never_synchronises(nonneg):
    """On CUDA the zero-weight product is always computed and non-finite operands are handled
    by a device flag: the op makes no host synchronisation, finite or not."""
    gen = torch.Generator().manual_seed(6)
    (g_lo, g_hi, x_lo, x_hi, w), config = point_operands("conv2d", nonneg, torch.float32, "cuda",
                                                        gen)
    bad = x_hi.clone()
    bad.view(-1)[0] = float("inf")
    for hi in (x_hi, bad):
        args = (g_lo, g_hi, x_lo, hi, w, *config, nonneg)
        ops.interval_conv2d_backward_weight_point(*args)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = ops.interval_conv2d_backward_weight_point(*args)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        want = fused_sum("conv2d", *args[:5], config, nonneg)
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
