"""The fused interval linear op against the reference, a brute-force oracle, containment, plain
F.linear, autograd, opcheck, torch.compile and its validation errors."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

import inn_cuda
from inn_cuda import reference

from helpers import (ALL_DEVICES, DEVICE_DTYPES, assert_close_scaled, brute_force_linear,
                     magnitude, random_interval, sample_inside)

SHAPES = [  # (batch shape, K, N)
    ((1,), 1, 1),
    ((3,), 17, 5),
    ((17,), 129, 3),
    ((129,), 3, 17),
    ((2, 3), 33, 65),
    ((2, 1, 3), 5, 4),
    ((), 7, 6),
    ((70,), 300, 70),
]


def make_operands(batch, k, n, *, nonneg, dtype, device, bias=True):
    x_lo, x_hi = random_interval((*batch, k), nonneg=nonneg, dtype=dtype, device=device)
    w_lo, w_hi = random_interval((n, k), dtype=dtype, device=device, width=0.3)
    b_lo, b_hi = random_interval((n,), dtype=dtype, device=device) if bias else (None, None)
    return x_lo, x_hi, w_lo, w_hi, b_lo, b_hi


def scale_of(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi):
    s = magnitude(x_lo, x_hi).double() @ magnitude(w_lo, w_hi).double().T
    return s + (magnitude(b_lo, b_hi).double() if b_lo is not None else 0)


def reference_in_float(operands, nonneg):
    """The reference evaluated in float64 (half types) or the operands' own dtype."""
    dtype = operands[0].dtype
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    cast = [None if t is None else t.to(work) for t in operands]
    return reference.interval_linear(*cast, nonneg)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("batch,k,n", SHAPES)
def test_forward_matches_reference(device, dtype, nonneg, batch, k, n):
    operands = make_operands(batch, k, n, nonneg=nonneg, dtype=dtype, device=device)
    y_lo, y_hi = inn_cuda.interval_linear(*operands, input_nonneg=nonneg)
    r_lo, r_hi = reference_in_float(operands, nonneg)
    assert y_lo.dtype == dtype and y_lo.device.type == device
    scale = scale_of(*[None if t is None else t.double() for t in operands])
    assert_close_scaled(y_lo, r_lo, scale, dtype, k)
    assert_close_scaled(y_hi, r_hi, scale, dtype, k)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("batch,k,n", [((3,), 17, 5), ((2, 5), 33, 9), ((129,), 7, 3)])
def test_backward_matches_reference(device, dtype, nonneg, batch, k, n):
    operands = [t.requires_grad_() for t in
                make_operands(batch, k, n, nonneg=nonneg, dtype=dtype, device=device)]
    g_lo = torch.randn(*batch, n, dtype=dtype, device=device)
    g_hi = torch.randn(*batch, n, dtype=dtype, device=device)
    y_lo, y_hi = inn_cuda.interval_linear(*operands, input_nonneg=nonneg)
    grads = torch.autograd.grad((y_lo, y_hi), operands, (g_lo, g_hi))
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    expected = reference.vjp(reference.interval_linear,
                             [t.detach().to(work) for t in operands] + [nonneg], range(6),
                             g_lo.to(work), g_hi.to(work))
    x_mag = magnitude(*operands[:2]).detach().double()
    w_mag = magnitude(*operands[2:4]).detach().double()
    g_mag = (g_lo.abs() + g_hi.abs()).double()
    scales = [g_mag.reshape(-1, n) @ w_mag] * 2 + [g_mag.reshape(-1, n).T @ x_mag.reshape(-1, k)] * 2
    reductions = [n, n, x_mag.numel() // k, x_mag.numel() // k]
    for grad, exp, scale, reduction in zip(grads[:4], expected[:4], scales, reductions):
        assert_close_scaled(grad.reshape(scale.shape), exp.reshape(scale.shape), scale, dtype,
                            reduction)
    for grad, exp in zip(grads[4:], expected[4:]):
        assert_close_scaled(grad, exp, g_mag.reshape(-1, n).sum(0), dtype, x_mag.numel() // k)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 4, 2), (5, 9, 3)])
def test_brute_force_oracle(device, nonneg, m, k, n):
    operands = make_operands((m,), k, n, nonneg=nonneg, dtype=torch.float64, device=device)
    y_lo, y_hi = inn_cuda.interval_linear(*operands, input_nonneg=nonneg)
    o_lo, o_hi = brute_force_linear(*operands)
    torch.testing.assert_close(y_lo.cpu(), o_lo, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_hi.cpu(), o_hi, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", ALL_DEVICES)
@given(m=st.integers(1, 6), k=st.integers(1, 12), n=st.integers(1, 6), nonneg=st.booleans(),
       bias=st.booleans(), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_containment(device, m, k, n, nonneg, bias, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    x_lo, x_hi = random_interval((m, k), nonneg=nonneg, dtype=dtype, generator=gen)
    w_lo, w_hi = random_interval((n, k), dtype=dtype, width=0.5, generator=gen)
    b_lo, b_hi = random_interval((n,), dtype=dtype, generator=gen) if bias else (None, None)
    operands = [None if t is None else t.to(device) for t in (x_lo, x_hi, w_lo, w_hi, b_lo, b_hi)]
    y_lo, y_hi = inn_cuda.interval_linear(*operands, input_nonneg=nonneg)
    scale = scale_of(*[None if t is None else t.double() for t in (x_lo, x_hi, w_lo, w_hi, b_lo,
                                                                   b_hi)])
    tol = 2 * (k + 4) * torch.finfo(dtype).eps * scale
    for _ in range(8):
        x = sample_inside(x_lo, x_hi, gen)
        w = sample_inside(w_lo, w_hi, gen)
        b = sample_inside(b_lo, b_hi, gen) if bias else None
        y = F.linear(x.double(), w.double(), None if b is None else b.double())
        assert bool((y >= y_lo.cpu().double() - tol).all()), "point output below the lower bound"
        assert bool((y <= y_hi.cpu().double() + tol).all()), "point output above the upper bound"


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
def test_zero_width_equals_f_linear(device, dtype):
    x = torch.randn(37, 45, dtype=dtype, device=device)
    w = torch.randn(23, 45, dtype=dtype, device=device)
    b = torch.randn(23, dtype=dtype, device=device)
    y_lo, y_hi = inn_cuda.interval_linear(x, x, w, w, b, b)
    expected = F.linear(x.double(), w.double(), b.double())
    scale = x.double().abs() @ w.double().abs().T + b.double().abs()
    assert_close_scaled(y_lo, expected, scale, dtype, 45)
    assert_close_scaled(y_hi, expected, scale, dtype, 45)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
def test_nonneg_mode_equals_general_mode_on_nonneg_inputs(device, dtype):
    operands = make_operands((31,), 40, 19, nonneg=True, dtype=dtype, device=device)
    fast = inn_cuda.interval_linear(*operands, input_nonneg=True)
    general = inn_cuda.interval_linear(*operands, input_nonneg=False)
    scale = scale_of(*[t.double() for t in operands])
    for a, b in zip(fast, general):
        assert_close_scaled(a, b.double(), scale, dtype, 40)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_non_contiguous_inputs(device):
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi = make_operands((6, 10), 8, 12, nonneg=False,
                                                       dtype=torch.float64, device=device)
    # transposed batch dims, a transposed weight and a strided bias
    xt_lo, xt_hi = x_lo.transpose(0, 1), x_hi.transpose(0, 1)
    wt_lo, wt_hi = w_lo.T.contiguous().T, w_hi.T.contiguous().T
    bs_lo = torch.stack([b_lo, b_lo], 1)[:, 0]
    bs_hi = torch.stack([b_hi, b_hi], 1)[:, 0]
    assert not xt_lo.is_contiguous() and not wt_lo.is_contiguous() and not bs_lo.is_contiguous()
    got = inn_cuda.interval_linear(xt_lo, xt_hi, wt_lo, wt_hi, bs_lo, bs_hi)
    expected = inn_cuda.interval_linear(xt_lo.contiguous(), xt_hi.contiguous(), w_lo, w_hi,
                                        b_lo, b_hi)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_empty_batch_and_empty_reduction(device):
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi = make_operands((0, 3), 5, 4, nonneg=False,
                                                       dtype=torch.float32, device=device)
    y_lo, y_hi = inn_cuda.interval_linear(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi)
    assert y_lo.shape == (0, 3, 4) and y_hi.shape == (0, 3, 4)
    # K = 0: the output is the bias interval (or zero)
    x0 = torch.zeros(2, 0, device=device)
    w0 = torch.zeros(4, 0, device=device)
    y_lo, y_hi = inn_cuda.interval_linear(x0, x0, w0, w0, b_lo, b_hi)
    torch.testing.assert_close(y_lo, b_lo.expand(2, 4))
    torch.testing.assert_close(y_hi, b_hi.expand(2, 4))
    y_lo, _ = inn_cuda.interval_linear(x0, x0, w0, w0)
    assert bool((y_lo == 0).all())
    # gradients of empty batches are empty or zero
    params = [t.requires_grad_() for t in (x_lo, x_hi, w_lo, w_hi)]
    out = inn_cuda.interval_linear(*params)
    (out[0].sum() + out[1].sum()).backward()
    assert bool((w_lo.grad == 0).all()) and x_lo.grad.shape == x_lo.shape


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
def test_nan_propagates(device, nonneg):
    x_lo, x_hi, w_lo, w_hi, _, _ = make_operands((4,), 6, 3, nonneg=nonneg, dtype=torch.float32,
                                                 device=device)
    # A NaN value (both bounds NaN, as a NaN point gives) reaches every output it feeds.
    x_lo[1, 2] = x_hi[1, 2] = float("nan")
    w_lo[2, 4] = w_hi[2, 4] = float("nan")
    with inn_cuda.check_bounds(True):
        y_lo, y_hi = inn_cuda.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=nonneg)
    assert bool(y_lo[1].isnan().all()) and bool(y_hi[1].isnan().all())
    assert bool(y_lo[:, 2].isnan().all()) and bool(y_hi[:, 2].isnan().all())
    finite = torch.ones_like(y_lo, dtype=torch.bool)
    finite[1] = False
    finite[:, 2] = False
    assert bool(y_lo[finite].isfinite().all()) and bool(y_hi[finite].isfinite().all())


@pytest.mark.slow
@pytest.mark.parametrize("device", ALL_DEVICES)
def test_huge_logical_size(device):
    """More than 2**31 input elements (expanded, so the test needs little memory)."""
    k = 1 << 20
    m = (1 << 11) + 1
    row = torch.rand(1, k, device=device, dtype=torch.float64)
    x = row.expand(m, k)
    assert x.numel() > 2**31
    w = torch.rand(1, k, device=device, dtype=torch.float64) - 0.5
    y_lo, y_hi = inn_cuda.interval_linear(x, x, w, w, input_nonneg=True)
    expected = (row * w).sum()
    assert y_lo.shape == (m, 1)
    torch.testing.assert_close(y_lo, expected.expand(m, 1), rtol=1e-9, atol=1e-8)
    torch.testing.assert_close(y_hi, expected.expand(m, 1), rtol=1e-9, atol=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available()
                    or torch.cuda.get_device_properties(0).total_memory < 60 * 2**30,
                    reason="needs a GPU with 60 GiB")
def test_more_than_2_31_elements_in_memory_cuda():
    k, m = 4096, (1 << 19) + 3  # x_lo and x_hi each hold 2**31 + 12288 floats
    x = torch.rand(m, k, device="cuda")
    w = torch.rand(2, k, device="cuda") - 0.5
    y_lo, y_hi = inn_cuda.interval_linear(x, x, w, w, input_nonneg=True)
    expected = x[-4:].double() @ w.double().T
    torch.testing.assert_close(y_lo[-4:].double(), expected, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(y_hi[-4:].double(), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
def test_gradcheck(device, nonneg):
    operands = [t.requires_grad_() for t in
                make_operands((2, 3), 5, 4, nonneg=nonneg, dtype=torch.float64, device=device)]
    assert torch.autograd.gradcheck(
        lambda *args: inn_cuda.interval_linear(*args, input_nonneg=nonneg), operands)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_opcheck(device, nonneg, bias):
    operands = make_operands((3, 2), 5, 4, nonneg=nonneg, dtype=torch.float32, device=device,
                             bias=bias)
    operands = [t if t is None else t.requires_grad_() for t in operands]
    torch.library.opcheck(torch.ops.inn_cuda.interval_linear.default, (*operands, nonneg))
    grads = [torch.randn(3, 2, 4, device=device) for _ in range(2)]
    for part in ("input", "weight"):
        op = getattr(torch.ops.inn_cuda, f"interval_linear_backward_{part}").default
        torch.library.opcheck(op, (*grads, *[t.detach() for t in operands[:4]], nonneg))


def test_torch_compile_fullgraph():
    def layer(x, w_lo, w_hi, b):
        lo, hi = inn_cuda.interval_linear(torch.relu(x), torch.relu(x) + 0.1, w_lo, w_hi, b, b,
                                          input_nonneg=True)
        return (hi - lo).sum()

    operands = [torch.randn(8, 16), torch.randn(4, 16), None, torch.randn(4)]
    operands[2] = operands[1] + 0.5
    w_lo = operands[1].clone().requires_grad_()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    out = compiled(operands[0], w_lo, operands[2], operands[3])
    out.backward()
    eager_w = operands[1].clone().requires_grad_()
    expected = layer(operands[0], eager_w, operands[2], operands[3])
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(w_lo.grad, eager_w.grad)


VALIDATION_CASES = [
    (lambda o: o.update(x_hi=o["x_hi"][:, :3]), r"x_hi has shape \(4, 3\), expected \(4, 5\)"),
    (lambda o: o.update(w_lo=o["w_lo"][:, :3], w_hi=o["w_hi"][:, :3]),
     r"x_lo has shape \(4, 5\), expected \(\*, 3\)"),
    (lambda o: o.update(w_hi=o["w_hi"].double()), r"w_hi has dtype torch.float64, expected "
                                                  r"torch.float32"),
    (lambda o: o.update(b_hi=None), r"b_lo was given without b_hi"),
    (lambda o: o.update(b_lo=o["b_lo"][:2], b_hi=o["b_hi"][:2]), r"b_lo has shape \(2,\), "
                                                                 r"expected \(3,\)"),
    (lambda o: o.update(x_lo=o["x_hi"] + 1), r"x_lo must be <= x_hi elementwise; 20 of 20"),
    (lambda o: o.update(w_lo=o["w_hi"] + 1), r"w_lo must be <= w_hi"),
    (lambda o: o.update(w_lo=o["w_lo"][0], w_hi=o["w_hi"][0]), r"w_lo must have 2 dims"),
    (lambda o: o.update(x_lo=o["x_lo"].half(), x_hi=o["x_hi"].half(), w_lo=o["w_lo"].half(),
                        w_hi=o["w_hi"].half(), b_lo=o["b_lo"].half(), b_hi=o["b_hi"].half()),
     r"on cpu the supported dtypes are float32, float64"),
    (lambda o: o.update(x_lo=o["x_lo"].tolist()), r"x_lo must be a torch.Tensor, got list"),
    (lambda o: o.update(x_lo=o["x_lo"] - 5, x_hi=o["x_hi"], input_nonneg=True),
     r"input_nonneg=True requires x_lo >= 0"),
]


@pytest.mark.parametrize("mutate,message", VALIDATION_CASES)
def test_validation_errors(mutate, message):
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi = make_operands((4,), 5, 3, nonneg=True,
                                                       dtype=torch.float32, device="cpu")
    operands = dict(x_lo=x_lo, x_hi=x_hi, w_lo=w_lo, w_hi=w_hi, b_lo=b_lo, b_hi=b_hi)
    mutate(operands)
    with pytest.raises((ValueError, TypeError), match=message):
        inn_cuda.interval_linear(**operands)


def test_device_mismatch_is_an_error():
    x_lo, x_hi, w_lo, w_hi, _, _ = make_operands((2,), 3, 2, nonneg=False, dtype=torch.float32,
                                                 device="cpu")
    with pytest.raises(ValueError, match=r"w_lo is on meta, expected cpu like x_lo"):
        inn_cuda.interval_linear(x_lo, x_hi, w_lo.to("meta"), w_hi.to("meta"))


def test_bounds_check_can_be_switched_off():
    x_lo, x_hi, w_lo, w_hi, _, _ = make_operands((2,), 3, 2, nonneg=False, dtype=torch.float32,
                                                 device="cpu")
    with inn_cuda.check_bounds(False):
        inn_cuda.interval_linear(x_hi, x_lo, w_lo, w_hi)  # swapped: not checked
    with pytest.raises(ValueError, match="x_lo must be <= x_hi"):
        inn_cuda.interval_linear(x_hi, x_lo, w_lo, w_hi)
