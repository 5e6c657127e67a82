"""The library path (csrc/library): input_nonneg and point-weight calls computed with ATen's
GEMM / convolution. Forward and both gradients against the fused kernels, the reference and the
brute-force oracle; ties, non-finite routing, the dispatch rule and setting, opcheck, compile."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import inn_cuda
from inn_cuda import _algorithm, reference
from inn_cuda._algorithm import algorithm, path_counts, reset_path_counts, set_algorithm

from helpers import ALL_DEVICES, assert_close_scaled, brute_force_linear, random_interval

ops = torch.ops.inn_cuda

# (name, x shape, w shape, config after the bias, reduction length)
CASES = {
    "linear": ("interval_linear", (2, 3, 7), (5, 7), (), 7),
    "conv2d": ("interval_conv2d", (2, 4, 7, 6), (6, 2, 3, 2), ([2, 1], [1, 0], [1, 2], 2), 12),
    "conv_transpose2d": ("interval_conv_transpose2d", (2, 4, 5, 4), (4, 3, 3, 2),
                         ([2, 1], [1, 0], [1, 0], 2, [1, 2]), 12),
}
MODES = {  # (input_nonneg, point weights)
    "nonneg": (True, False),
    "point-nonneg": (True, True),
    "point-signed": (False, True),
}


def operands(case, mode, dtype, device, point_inputs=False, zero_weights=False):
    name, xs, ws, config, depth = CASES[case]
    nonneg, point = MODES[mode]
    x_lo, x_hi = random_interval(xs, nonneg=nonneg, dtype=dtype, device=device)
    if point_inputs:  # every other element a point: ties of the two candidates
        x_hi = torch.where(torch.rand(xs, device=device) < 0.5, x_lo, x_hi)
    w_lo, w_hi = random_interval(ws, dtype=dtype, device=device)
    if zero_weights:
        w_lo = torch.where(torch.rand(ws, device=device) < 0.3, torch.zeros_like(w_lo), w_lo)
        w_hi = torch.maximum(w_hi, w_lo)
    if point:
        w_hi = w_lo
    channels = ws[0] if case != "conv_transpose2d" else ws[1] * config[3]
    b_lo, b_hi = random_interval((channels,), dtype=dtype, device=device)
    return name, [x_lo, x_hi, w_lo, w_hi], [b_lo, b_hi], list(config), nonneg, depth


def run(path, fn):
    with algorithm(path):
        reset_path_counts()
        out = fn()
        counts = path_counts()
    served = {p for c in counts.values() for p, n in c.items() if n}
    return out, served


def scale_of(case, x, w, g=None, config=()):
    """|x|·|w| through the plain map (forward) or its adjoints (gradients): the scale of the
    rounding error of any summation order."""
    name = CASES[case][0]
    plain = {"interval_linear": lambda a, b: F.linear(a, b),
             "interval_conv2d": lambda a, b: F.conv2d(a, b, None, *config),
             "interval_conv_transpose2d": lambda a, b: F.conv_transpose2d(
                 a, b, None, config[0], config[1], config[2], config[3], config[4])}[name]
    xa = x.abs().double().requires_grad_(True)
    wa = w.abs().double().requires_grad_(True)
    y = plain(xa, wa)
    if g is None:
        return y.detach()
    dx, dw = torch.autograd.grad(y, (xa, wa), g.abs().double())
    return dx, dw


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype,ties", [(torch.float32, False), (torch.float64, True)],
                         ids=["f32-random", "f64-ties"])
def test_library_matches_fused_and_reference(case, mode, dtype, device, ties):
    name, xw, bias, config, nonneg, depth = operands(case, mode, dtype, device,
                                                     point_inputs=ties, zero_weights=ties)
    forward = getattr(ops, name)
    args = (*xw, *bias, *config, nonneg)
    (lib, served) = run("library", lambda: forward(*args))
    assert served == {"library"}
    (fused, served) = run("fused", lambda: forward(*args))
    assert served == {"fused"}
    ref = reference.OPS[name](*args)
    scale = scale_of(case, torch.maximum(xw[0].abs(), xw[1].abs()),
                     torch.maximum(xw[2].abs(), xw[3].abs()), config=config) + bias[1].abs().max()
    for a, f, r in zip(lib, fused, ref):
        assert a.shape == f.shape and a.is_contiguous()
        assert_close_scaled(a, r, scale, dtype, depth)
        assert_close_scaled(a, f, scale, dtype, depth)

    g_lo, g_hi = (torch.randn_like(lib[0]) for _ in range(2))
    for part in ("input", "weight"):
        op = getattr(ops, f"{name}_backward_{part}")
        bargs = (g_lo, g_hi, *xw, *config, nonneg)
        lib_g, served = run("library", lambda: op(*bargs))
        assert served == {"library"}
        fused_g, _ = run("fused", lambda: op(*bargs))
        wrt = (0, 1) if part == "input" else (2, 3)
        ref_g = reference.vjp(reference.OPS[name], (*xw, None, None, *config, nonneg), wrt, g_lo,
                              g_hi)
        dx_scale, dw_scale = scale_of(case, torch.maximum(xw[0].abs(), xw[1].abs()),
                                      xw[2].abs(), g_lo.abs() + g_hi.abs(), config)
        s = dx_scale if part == "input" else dw_scale
        reduction = lib[0].numel() // max(1, xw[0].numel() if part == "weight" else 1)
        for a, f, r in zip(lib_g, fused_g, ref_g):
            assert a.shape == f.shape and a.is_contiguous()
            assert_close_scaled(a, r, s, dtype, max(depth, reduction, lib[0].shape[0] * 64))
            assert_close_scaled(a, f, s, dtype, max(depth, reduction, lib[0].shape[0] * 64))


@pytest.mark.parametrize("mode", list(MODES))
def test_library_linear_matches_brute_force(mode):
    _, (x_lo, x_hi, w_lo, w_hi), (b_lo, b_hi), _, nonneg, _ = operands("linear", mode,
                                                                       torch.float64, "cpu")
    x_lo, x_hi = x_lo.reshape(-1, 7), x_hi.reshape(-1, 7)
    with algorithm("library"):
        y = ops.interval_linear(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, nonneg)
    expected = brute_force_linear(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi)
    scale = x_hi.abs().max() * w_lo.abs().sum(1).max() * 4 + 10
    for a, e in zip(y, expected):
        assert_close_scaled(a, e, scale.expand_as(e), torch.float64, 7)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", ["nonneg", "point-signed"])
@pytest.mark.parametrize("bad", ["inf-input", "inf-weight", "zero-weight-inf-input", "nan"])
def test_non_finite_operands_get_the_fused_result(case, mode, bad):
    """The split would compute 0 * inf = NaN where the bound is finite: such calls are routed
    to the fused kernel (on the CPU by a host check) and give its result bit for bit."""
    name, xw, bias, config, nonneg, _ = operands(case, mode, torch.float32, "cpu")
    x_lo, x_hi, w_lo, w_hi = xw
    index = (0,) * x_hi.dim()
    if bad in ("inf-input", "zero-weight-inf-input"):
        x_hi = x_hi.clone()
        x_hi[index] = float("inf")
    if bad == "zero-weight-inf-input":
        w_lo = w_lo.clone()
        w_lo[(0,) * w_lo.dim()] = 0.0
        w_hi = w_lo if mode.startswith("point") else torch.maximum(w_hi, w_lo)
    if bad == "inf-weight":
        w_hi = w_hi.clone()
        w_hi[(0,) * w_hi.dim()] = float("inf")
        w_lo = w_hi if mode.startswith("point") else w_lo
    if bad == "nan":
        x_lo, x_hi = x_lo.clone(), x_hi.clone()
        x_lo[index] = x_hi[index] = float("nan")
    args = (x_lo, x_hi, w_lo, w_hi, *bias, *config, nonneg)
    forward = getattr(ops, name)
    lib, served = run("library", lambda: forward(*args))
    assert served == {"fused"}
    fused, _ = run("fused", lambda: forward(*args))
    for a, f in zip(lib, fused):
        torch.testing.assert_close(a, f, rtol=0, atol=0, equal_nan=True)
    g = torch.randn_like(lib[0])
    g_hi = g.clone()
    g_hi.view(-1)[0] = float("inf")
    for part in ("input", "weight"):
        op = getattr(ops, f"{name}_backward_{part}")
        for grads in ((g, g), (g, g_hi)):
            bargs = (*grads, x_lo, x_hi, w_lo, w_hi, *config, nonneg)
            lib_g, served = run("library", lambda: op(*bargs))
            fused_g, _ = run("fused", lambda: op(*bargs))
            # a non-finite operand outside this gradient's products (x for the input gradient)
            # leaves the library result standing; otherwise it is the fused result
            exact = served == {"fused"}
            for a, f in zip(lib_g, fused_g):
                torch.testing.assert_close(a, f, rtol=0 if exact else None,
                                           atol=0 if exact else None, equal_nan=True)


def test_point_weights_any_layout():
    """The point-weight passes read both bounds as one flat array: bounds laid out differently
    (channels_last lower bound, contiguous upper bound), an expanded upstream gradient and a
    channels_last one give the fused kernel's results."""
    name, xw, bias, config, _, depth = operands("conv2d", "point-signed", torch.float64, "cpu")
    x_lo, x_hi, w, _ = xw
    x_lo = x_lo.contiguous(memory_format=torch.channels_last)
    args = (x_lo, x_hi, w, w, *bias, *config, False)
    lib, served = run("library", lambda: ops.interval_conv2d(*args))
    assert served == {"library"}
    fused, _ = run("fused", lambda: ops.interval_conv2d(*args))
    scale = scale_of("conv2d", torch.maximum(x_lo.abs(), x_hi.abs()), w.abs(), config=config)
    for a, f in zip(lib, fused):
        assert_close_scaled(a, f, scale + bias[1].abs().max(), torch.float64, depth)
    g_lo = torch.randn(lib[0].shape[1:], dtype=torch.float64).expand_as(lib[0])
    g_hi = torch.randn_like(lib[0]).contiguous(memory_format=torch.channels_last)
    bargs = (g_lo, g_hi, x_lo, x_hi, w, w, *config, False)
    lib_g, served = run("library", lambda: ops.interval_conv2d_backward_input(*bargs))
    assert served == {"library"}
    fused_g, _ = run("fused", lambda: ops.interval_conv2d_backward_input(*bargs))
    dx_scale, _ = scale_of("conv2d", x_lo.abs(), w.abs(), g_lo.abs() + g_hi.abs(), config)
    for a, f in zip(lib_g, fused_g):
        assert_close_scaled(a, f, dx_scale, torch.float64, depth)


@pytest.mark.parametrize("op,w_shape,groups,forward,backward", [
    ("conv2d", (18, 4, 3, 3), 2, "library", "library"),  # 9 output channels per group
    ("conv2d", (16, 4, 3, 3), 2, "fused", "library"),    # 8
    ("conv2d", (72, 1, 3, 3), 8, "fused", "fused"),      # 9 terms per output
    ("conv2d", (18, 16, 1, 1), 2, "fused", "fused"),     # 16
    ("conv2d", (18, 17, 1, 1), 1, "library", "library"),
    ("conv_transpose2d", (8, 9, 2, 2), 2, "library", "library"),
    ("conv_transpose2d", (8, 1, 2, 2), 2, "library", "library"),
    ("conv_transpose2d", (2, 16, 1, 1), 2, "library", "library")])
def test_point_weight_rule_on_the_cpu(op, w_shape, groups, forward, backward):
    """auto on the CPU, point weights: plain convs with at most 16 terms per output (input
    channels per group x taps) take the fused kernel, forward and backward; with at most 8 output
    channels per group, the forward only; otherwise, and for transposed convs and linear layers,
    the library path."""
    c_in = w_shape[1] * groups if op == "conv2d" else w_shape[0]
    x_lo, x_hi = random_interval((2, c_in, 5, 5))
    w = torch.randn(w_shape, dtype=torch.float64)
    fn = getattr(ops, f"interval_{op}")
    k = w_shape[2]
    config = ([1, 1], [k // 2] * 2, [1, 1], groups) if op == "conv2d" else \
        ([2, 2], [0, 0], [0, 0], groups, [1, 1])
    y, served = run("auto", lambda: fn(x_lo, x_hi, w, w, None, None, *config, False))
    assert served == {forward}
    g = torch.randn_like(y[0])
    bargs = (g, g, x_lo, x_hi, w, w, *config, False)
    _, served = run("auto", lambda: getattr(ops, f"interval_{op}_backward_input")(*bargs))
    assert served == {backward}
    _, served = run("auto", lambda: getattr(ops, f"interval_{op}_backward_weight_point")(
        g, g, x_lo, x_hi, w, *config, False))
    assert served == {backward}
    x_lo, x_hi = random_interval((3, 4))
    w = torch.randn(2, 4, dtype=torch.float64)
    _, served = run("auto", lambda: ops.interval_linear(x_lo, x_hi, w, w, None, None, False))
    assert served == {"library"}


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("bad", [None, "inf-rest-channel", "nan-rest-pixel"])
def test_point_weight_passes_that_change_the_channel_order(op, layout, bad):
    """float32 point-weight convs on the CPU run their products channels last: the passes around
    them change the element order (4x4 tiles and a scalar rest of channels and pixels, several
    pixel blocks per image). Equal to the reference within rounding; a non-finite product only
    in the rest channels (an infinite weight of output channel 9) or only in the rest pixels (a
    NaN last pixel through a 1x1 kernel to 8 channels) still routes the call to the fused
    kernel."""
    # 4 + 2 channels in, 8 + 2 out; 13 x 11 pixels: blocks of 84 and 59 in, 48, 48 and 47 out
    # (44 in tiles + 3); with 8 channels out: 64, 64 and 15 (12 + 3)
    c_in, c_out = 6, 8 if bad == "nan-rest-pixel" else 10
    k = 1 if bad == "nan-rest-pixel" else 3
    x_lo, x_hi = random_interval((2, c_in, 13, 11), dtype=torch.float32)
    if op == "conv2d":
        w = torch.randn(c_out, c_in, k, k)
        config = ([1, 1], [k // 2] * 2, [1, 1], 1)
    else:
        k = min(k, 2)
        w = torch.randn(c_in, c_out, k, k)
        config = ([k, k], [0, 0], [0, 0], 1, [1, 1])
    if bad == "inf-rest-channel":
        w[(9,) if op == "conv2d" else (slice(None), 9)] = float("inf")
    if bad == "nan-rest-pixel":
        x_lo[0, 2, 12, 10] = x_hi[0, 2, 12, 10] = float("nan")
    if layout == "channels_last":
        x_lo = x_lo.contiguous(memory_format=torch.channels_last)
    b = torch.randn(c_out)
    args = (x_lo, x_hi, w, w, b, b, *config, False)
    forward = getattr(ops, f"interval_{op}")
    lib, served = run("library", lambda: forward(*args))
    assert served == ({"library"} if bad is None else {"fused"})
    fused, _ = run("fused", lambda: forward(*args))
    if bad is not None:
        for a, f in zip(lib, fused):
            torch.testing.assert_close(a, f, rtol=0, atol=0, equal_nan=True)
        return
    ref = reference.OPS[f"interval_{op}"](*(t.double() if torch.is_tensor(t) else t
                                            for t in args))
    scale = scale_of(op, torch.maximum(x_lo.abs(), x_hi.abs()), w.abs(),
                     config=config) + b.abs().max()
    for a, f, r in zip(lib, fused, ref):
        assert a.is_contiguous() and a.dtype == torch.float32
        assert_close_scaled(a, r, scale, torch.float32, c_in * 9)
        assert_close_scaled(a, f, scale, torch.float32, c_in * 9)

    # the gradients, with point inputs (ties: x_lo takes the whole input gradient) in tiles
    # and rests alike
    x_hi = torch.where(torch.rand(x_hi.shape) < 0.3, x_lo, x_hi)
    g_lo, g_hi = torch.randn_like(lib[0]), torch.randn_like(lib[0])
    bargs = (g_lo, g_hi, x_lo, x_hi, w, w, *config, False)
    dx, served = run("library", lambda: getattr(ops, f"interval_{op}_backward_input")(*bargs))
    assert served == {"library"}
    dx_fused, _ = run("fused", lambda: getattr(ops, f"interval_{op}_backward_input")(*bargs))
    pargs = (g_lo, g_hi, x_lo, x_hi, w, *config, False)
    dw, served = run("library",
                     lambda: getattr(ops, f"interval_{op}_backward_weight_point")(*pargs))
    assert served == {"library"}
    dw_fused, _ = run("fused",
                      lambda: getattr(ops, f"interval_{op}_backward_weight_point")(*pargs))
    dx_scale, dw_scale = scale_of(op, torch.maximum(x_lo.abs(), x_hi.abs()), w.abs(),
                                  g_lo.abs() + g_hi.abs(), config)
    for a, f in zip(dx, dx_fused):
        assert a.is_contiguous()
        assert_close_scaled(a, f, dx_scale, torch.float32, c_out * 9)
    assert_close_scaled(dw, dw_fused, dw_scale, torch.float32, lib[0][:, 0].numel())


def test_dispatch_rule():
    name, xw, bias, config, _, _ = operands("conv2d", "nonneg", torch.float32, "cpu")
    forward = getattr(ops, name)
    x_lo, x_hi, w_lo, w_hi = xw
    # auto on the CPU: nonneg interval weights -> fused
    _, served = run("auto", lambda: forward(x_lo, x_hi, w_lo, w_hi, *bias, *config, True))
    assert served == {"fused"}
    # general-mode interval weights: no linear form, the fused kernel even when forced
    x_lo = x_lo - 1
    _, served = run("library", lambda: forward(x_lo, x_hi, w_lo, w_hi, *bias, *config, False))
    assert served == {"fused"}
    # an expanded input stays on the fused kernel, which reads it through its strides
    wide = x_hi[:1].expand_as(x_hi)
    _, served = run("library", lambda: forward(wide, wide, w_lo, w_lo, *bias, *config, False))
    assert served == {"fused"}
    # a copy of the weight is not a point weight (no data-dependent check)
    _, served = run("auto", lambda: forward(x_lo, x_hi, w_lo, w_lo.clone(), *bias, *config,
                                            False))
    assert served == {"fused"}


def test_public_api_point_weights_autograd():
    """IBP-style use through the public API and autograd: the input gradient and the point
    weight's total gradient take the library path (the saved w_lo / w_hi are still one tensor)
    and match the reference gradients."""
    x_lo, x_hi = random_interval((3, 4, 6, 6), dtype=torch.float64)
    w = torch.randn(12, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    x_lo.requires_grad_(True)
    x_hi.requires_grad_(True)
    reset_path_counts()
    y_lo, y_hi = inn_cuda.interval_conv2d(x_lo, x_hi, w, w, padding=1)
    (y_lo.sum() * 2 + y_hi.sum()).backward()
    counts = path_counts()
    for op in ("interval_conv2d", "interval_conv2d_backward_input",
               "interval_conv2d_backward_weight_point"):
        assert counts[op] == {"fused": 0, "library": 1}, counts
    assert "interval_conv2d_backward_weight" not in counts
    grads = [t.grad.clone() for t in (x_lo, x_hi, w)]
    for t in (x_lo, x_hi, w):
        t.grad = None
    r_lo, r_hi = reference.interval_conv2d(x_lo, x_hi, w, w, None, None, (1, 1), (1, 1), (1, 1),
                                           1, False)
    (r_lo.sum() * 2 + r_hi.sum()).backward()
    for a, b in zip(grads, (x_lo.grad, x_hi.grad, w.grad)):
        torch.testing.assert_close(a, b)


def test_set_algorithm_validates():
    with pytest.raises(ValueError, match="set_algorithm: name must be one of auto, fused, library"):
        set_algorithm("fast")
    assert inn_cuda.get_algorithm() == "auto"
    env = dict(os.environ, INN_CUDA_ALGORITHM="fastest")
    result = subprocess.run([sys.executable, "-c", "import inn_cuda"], env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "INN_CUDA_ALGORITHM must be one of auto, fused, library; got 'fastest'" in result.stderr


def test_algorithm_from_environment(monkeypatch):
    monkeypatch.setenv("INN_CUDA_ALGORITHM", "library")
    try:
        _algorithm._from_environment()
        assert inn_cuda.get_algorithm() == "library"
    finally:
        set_algorithm("auto")


@pytest.mark.parametrize("case,mode", [("linear", "nonneg"), ("conv2d", "point-signed"),
                                       ("conv_transpose2d", "nonneg")])
def test_opcheck_library(case, mode):
    name, xw, bias, config, nonneg, _ = operands(case, mode, torch.float64, "cpu")
    with algorithm("library"):
        torch.library.opcheck(getattr(ops, name).default, (*xw, *bias, *config, nonneg))
        y = getattr(ops, name)(*xw, *bias, *config, nonneg)
        grads = [torch.randn_like(y[0]) for _ in range(2)]
        for part in ("input", "weight"):
            torch.library.opcheck(getattr(ops, f"{name}_backward_{part}").default,
                                  (*grads, *xw, *config, nonneg))


def test_compile_library_path():
    x_lo, x_hi = random_interval((4, 8), dtype=torch.float32)
    w = torch.randn(3, 8, requires_grad=True)

    def ibp(x_lo, x_hi, w):
        y_lo, y_hi = inn_cuda.interval_linear(x_lo, x_hi, w, w)
        return (y_hi - y_lo).sum()

    compiled = torch.compile(ibp, backend="aot_eager", fullgraph=True)
    with algorithm("library"):
        reset_path_counts()
        loss = compiled(x_lo, x_hi, w)
        loss.backward()
        counts = path_counts()
    assert counts["interval_linear"]["library"] >= 1
    expected = ibp(x_lo, x_hi, w.detach())
    torch.testing.assert_close(loss, expected)
