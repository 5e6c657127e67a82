"""The fused interval convolutions (conv1d, conv2d, conv_transpose2d) against the reference, a
brute-force oracle of the convolution definition, containment, plain F.conv*, autograd, opcheck,
padding modes, layouts, empty batches and their validation errors."""

import itertools
import math
from dataclasses import dataclass
from typing import Tuple, Union

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, strategies as st

import inn_cuda
from inn_cuda import reference

from helpers import (ALL_DEVICES, DEVICE_DTYPES, assert_close_scaled, magnitude, random_interval,
                     sample_inside)

IntOrPair = Union[int, Tuple[int, ...]]


def pair(value: IntOrPair) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


# ------------------------------------------------------------------------------------- test cases

INTERVAL_OPS = {"conv1d": inn_cuda.interval_conv1d, "conv2d": inn_cuda.interval_conv2d,
                "conv_transpose2d": inn_cuda.interval_conv_transpose2d}
PLAIN_OPS = {"conv1d": F.conv1d, "conv2d": F.conv2d, "conv_transpose2d": F.conv_transpose2d}


@dataclass(frozen=True)
class Case:
    """One layer: kind, input and weight shapes and the torch.nn.functional arguments."""
    kind: str
    x_shape: Tuple[int, ...]
    w_shape: Tuple[int, ...]
    stride: IntOrPair = 1
    padding: Union[IntOrPair, str] = 0
    dilation: IntOrPair = 1
    groups: int = 1
    output_padding: IntOrPair = 0  # conv_transpose2d only

    def __str__(self):
        extra = f"-op{self.output_padding}" if self.kind == "conv_transpose2d" else ""
        return (f"{self.kind}-x{'x'.join(map(str, self.x_shape))}-"
                f"w{'x'.join(map(str, self.w_shape))}-s{self.stride}-p{self.padding}-"
                f"d{self.dilation}-g{self.groups}{extra}").replace(" ", "")

    @property
    def transposed(self):
        return self.kind == "conv_transpose2d"

    def kwargs(self):
        kwargs = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                      groups=self.groups)
        if self.transposed:
            kwargs["output_padding"] = self.output_padding
        return kwargs

    @property
    def out_channels(self):
        return self.w_shape[1] * self.groups if self.transposed else self.w_shape[0]

    @property
    def reduction(self):
        """An upper bound of the number of terms summed into one output."""
        if self.transposed:
            return self.x_shape[1] // self.groups * math.prod(self.w_shape[2:])
        return math.prod(self.w_shape[1:])

    def operands(self, *, nonneg, dtype, device, bias=True, generator=None):
        x_lo, x_hi = random_interval(self.x_shape, nonneg=nonneg, dtype=dtype, device=device,
                                     generator=generator)
        w_lo, w_hi = random_interval(self.w_shape, dtype=dtype, device=device, width=0.3,
                                     generator=generator)
        b_lo, b_hi = (random_interval((self.out_channels,), dtype=dtype, device=device,
                                      generator=generator) if bias else (None, None))
        return [x_lo, x_hi, w_lo, w_hi, b_lo, b_hi]

    def interval(self, operands, nonneg):
        return INTERVAL_OPS[self.kind](*operands, **self.kwargs(), input_nonneg=nonneg)

    def plain(self, x, w, b=None):
        return PLAIN_OPS[self.kind](x, w, b, **self.kwargs())

    def scale(self, operands):
        """sum |x| |w| (+ |b|) per output, the scale of rounding errors, in float64."""
        x_lo, x_hi, w_lo, w_hi, b_lo, b_hi = [None if t is None else t.double() for t in operands]
        b = None if b_lo is None else magnitude(b_lo, b_hi)
        return self.plain(magnitude(x_lo, x_hi), magnitude(w_lo, w_hi), b)

    def reference(self, operands, nonneg):
        """reference.py with explicit int pairs (conv1d as a height-1 conv2d)."""
        x_lo, x_hi, w_lo, w_hi, b_lo, b_hi = operands
        if self.transposed:
            return reference.interval_conv_transpose2d(
                x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, pair(self.stride), pair(self.padding),
                pair(self.output_padding), self.groups, pair(self.dilation), nonneg)
        if self.kind == "conv2d":
            return reference.interval_conv2d(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi,
                                             pair(self.stride), pair(self.padding),
                                             pair(self.dilation), self.groups, nonneg)
        lo, hi = reference.interval_conv2d(
            x_lo.unsqueeze(2), x_hi.unsqueeze(2), w_lo.unsqueeze(2), w_hi.unsqueeze(2), b_lo,
            b_hi, (1, self.stride), (0, self.padding), (1, self.dilation), self.groups, nonneg)
        return lo.squeeze(2), hi.squeeze(2)


CASES = [
    Case("conv2d", (2, 3, 8, 8), (4, 3, 3, 3), padding=1),
    Case("conv2d", (3, 4, 9, 7), (6, 2, 3, 2), stride=2, padding=(1, 0), groups=2),
    Case("conv2d", (2, 6, 11, 10), (6, 1, 3, 3), stride=(2, 1), padding=2, dilation=2, groups=6),
    Case("conv2d", (1, 5, 7, 9), (3, 5, 1, 1)),
    Case("conv2d", (2, 4, 5, 6), (4, 4, 1, 1), stride=2),
    Case("conv2d", (2, 3, 6, 5), (2, 3, 4, 4), stride=3, padding=(3, 2), dilation=(1, 2)),
    Case("conv1d", (3, 4, 17), (6, 2, 3), stride=2, padding=1, groups=2),
    Case("conv1d", (2, 3, 11), (5, 3, 4), dilation=3, padding=2),
    Case("conv_transpose2d", (2, 4, 5, 5), (4, 3, 3, 3), stride=2, padding=1, output_padding=1),
    Case("conv_transpose2d", (2, 4, 6, 6), (4, 2, 2, 2), stride=2),
    Case("conv_transpose2d", (3, 6, 5, 7), (6, 2, 3, 2), stride=(3, 2), padding=(2, 1),
         output_padding=(1, 0), groups=3, dilation=(1, 2)),
    Case("conv_transpose2d", (2, 4, 4, 5), (4, 3, 3, 3), dilation=3, output_padding=(2, 1)),
    Case("conv_transpose2d", (1, 3, 7, 7), (3, 5, 1, 1)),
]

# Shapes that exercise the kernels' chunking: an image split into several pixel chunks (with a
# chunk boundary inside an image row), and 1x1 layers (identity im2col) with one image and with
# several images per chunk.
CHUNKING_CASES = [
    Case("conv2d", (2, 64, 47, 49), (2, 64, 3, 3), padding=1),
    Case("conv2d", (1, 8, 20, 21), (3, 8, 1, 1)),
    Case("conv2d", (3, 8, 20, 21), (4, 4, 1, 1), groups=2),
    Case("conv_transpose2d", (1, 2, 47, 49), (2, 64, 3, 3), stride=2, padding=1,
         output_padding=1),
    Case("conv_transpose2d", (1, 4, 9, 10), (4, 3, 1, 1), groups=2),
    Case("conv_transpose2d", (3, 4, 9, 10), (4, 3, 1, 1)),
]


def work_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def cast(operands, dtype):
    return [None if t is None else t.detach().to(dtype) for t in operands]


# ---------------------------------------------------------------------------- brute-force oracle

def _term_bounds(a, b, l, h):
    """Bounds of [a, b] * [l, h] by enumerating the four endpoint products."""
    products = (a * l, a * h, b * l, b * h)
    return min(products), max(products)


def brute_force_conv2d(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding, dilation, groups):
    """Exact interval conv2d by direct loops over the convolution definition, in float64."""
    xl, xh, wl, wh = (t.detach().cpu().double().tolist() for t in (x_lo, x_hi, w_lo, w_hi))
    batch, channels, height, width = x_lo.shape
    out_channels, per_group, kh, kw = w_lo.shape
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    lo = np.zeros((batch, out_channels, out_h, out_w))
    hi = np.zeros((batch, out_channels, out_h, out_w))
    for n, o, y, x in itertools.product(range(batch), range(out_channels), range(out_h),
                                        range(out_w)):
        first = o // (out_channels // groups) * per_group
        for c, i, j in itertools.product(range(per_group), range(kh), range(kw)):
            row, col = y * sh - ph + i * dh, x * sw - pw + j * dw
            if 0 <= row < height and 0 <= col < width:
                t_lo, t_hi = _term_bounds(wl[o][c][i][j], wh[o][c][i][j],
                                          xl[n][first + c][row][col], xh[n][first + c][row][col])
                lo[n, o, y, x] += t_lo
                hi[n, o, y, x] += t_hi
    return _with_bias(lo, hi, b_lo, b_hi)


def brute_force_conv_transpose2d(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding,
                                 output_padding, groups, dilation):
    """Exact interval conv_transpose2d: every input pixel scatters its terms into the output."""
    xl, xh, wl, wh = (t.detach().cpu().double().tolist() for t in (x_lo, x_hi, w_lo, w_hi))
    batch, channels, height, width = x_lo.shape
    _, out_per_group, kh, kw = w_lo.shape
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    (oph, opw) = pair(output_padding)
    out_h = (height - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    out_w = (width - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    lo = np.zeros((batch, out_per_group * groups, out_h, out_w))
    hi = np.zeros((batch, out_per_group * groups, out_h, out_w))
    in_per_group = channels // groups
    for n, c, y, x in itertools.product(range(batch), range(channels), range(height),
                                        range(width)):
        for o, i, j in itertools.product(range(out_per_group), range(kh), range(kw)):
            row, col = y * sh - ph + i * dh, x * sw - pw + j * dw
            if 0 <= row < out_h and 0 <= col < out_w:
                t_lo, t_hi = _term_bounds(wl[c][o][i][j], wh[c][o][i][j], xl[n][c][y][x],
                                          xh[n][c][y][x])
                out = c // in_per_group * out_per_group + o
                lo[n, out, row, col] += t_lo
                hi[n, out, row, col] += t_hi
    return _with_bias(lo, hi, b_lo, b_hi)


def _with_bias(lo, hi, b_lo, b_hi):
    if b_lo is not None:
        lo += b_lo.detach().cpu().double().numpy()[None, :, None, None]
        hi += b_hi.detach().cpu().double().numpy()[None, :, None, None]
    return torch.from_numpy(lo), torch.from_numpy(hi)


def brute_force(case, operands):
    if case.transposed:
        return brute_force_conv_transpose2d(*operands, case.stride, case.padding,
                                            case.output_padding, case.groups, case.dilation)
    if case.kind == "conv2d":
        return brute_force_conv2d(*operands, case.stride, case.padding, case.dilation,
                                  case.groups)
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi = operands
    lo, hi = brute_force_conv2d(x_lo.unsqueeze(2), x_hi.unsqueeze(2), w_lo.unsqueeze(2),
                                w_hi.unsqueeze(2), b_lo, b_hi, (1, case.stride),
                                (0, case.padding), (1, case.dilation), case.groups)
    return lo.squeeze(2), hi.squeeze(2)


# --------------------------------------------------------------------------- kernel vs reference

@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_reference(device, dtype, nonneg, case):
    operands = case.operands(nonneg=nonneg, dtype=dtype, device=device)
    y_lo, y_hi = case.interval(operands, nonneg)
    r_lo, r_hi = case.reference(cast(operands, work_dtype(dtype)), nonneg)
    assert y_lo.dtype == dtype and y_lo.device.type == device
    scale = case.scale(operands)
    assert_close_scaled(y_lo, r_lo, scale, dtype, case.reduction)
    assert_close_scaled(y_hi, r_hi, scale, dtype, case.reduction)


def check_backward(case, operands, nonneg, dtype):
    """Gradients of all six operands through the op's autograd (the *_backward_* kernels and
    the bias sums) against autograd through the reference, with per-element scales."""
    operands = [t.requires_grad_() for t in operands]
    y_lo, y_hi = case.interval(operands, nonneg)
    g_lo, g_hi = torch.randn_like(y_lo), torch.randn_like(y_hi)
    grads = torch.autograd.grad((y_lo, y_hi), operands, (g_lo, g_hi))
    work = work_dtype(dtype)
    expected = reference.vjp(lambda *ops: case.reference(ops, nonneg), cast(operands, work),
                             range(6), g_lo.to(work), g_hi.to(work))
    # The backward ops are linear in |g|, |x| and |w|: differentiating the plain convolution of
    # the magnitudes gives sum |g| |w| per input element and sum |g| |x| per weight element.
    g_mag = (g_lo.abs() + g_hi.abs()).double()
    with torch.enable_grad():
        x_mag = magnitude(*operands[:2]).detach().double().requires_grad_()
        w_mag = magnitude(*operands[2:4]).detach().double().requires_grad_()
        x_scale, w_scale = torch.autograd.grad(case.plain(x_mag, w_mag), (x_mag, w_mag), g_mag)
    b_scale = g_mag.sum([d for d in range(g_mag.dim()) if d != 1])
    pixels = g_lo.numel() // g_lo.shape[1]
    x_terms = case.out_channels * math.prod(case.w_shape[2:])
    scales = [x_scale] * 2 + [w_scale] * 2 + [b_scale] * 2
    for grad, exp, scale, reduction in zip(grads, expected, scales,
                                           [x_terms] * 2 + [pixels] * 4):
        assert_close_scaled(grad, exp, scale, dtype, reduction)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_reference(device, dtype, nonneg, case):
    check_backward(case, case.operands(nonneg=nonneg, dtype=dtype, device=device), nonneg, dtype)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("case", CHUNKING_CASES, ids=str)
def test_chunked_shapes_match_reference(device, nonneg, case):
    operands = case.operands(nonneg=nonneg, dtype=torch.float64, device=device)
    y_lo, y_hi = case.interval(operands, nonneg)
    r_lo, r_hi = case.reference(operands, nonneg)
    scale = case.scale(operands)
    assert_close_scaled(y_lo, r_lo, scale, torch.float64, case.reduction)
    assert_close_scaled(y_hi, r_hi, scale, torch.float64, case.reduction)
    check_backward(case, operands, nonneg, torch.float64)


# ---------------------------------------------------------------------------- brute-force oracle

ORACLE_CASES = [
    Case("conv2d", (2, 2, 4, 5), (3, 2, 2, 2), padding=1),
    Case("conv2d", (1, 4, 5, 5), (4, 2, 3, 2), stride=2, padding=(1, 2), dilation=(2, 1),
         groups=2),
    Case("conv1d", (2, 3, 7), (2, 3, 3), stride=2, padding=1),
    Case("conv_transpose2d", (2, 2, 3, 3), (2, 2, 3, 3), stride=2, padding=1, output_padding=1),
    Case("conv_transpose2d", (1, 4, 3, 4), (4, 1, 2, 3), stride=(1, 2), padding=(0, 1),
         groups=2, dilation=(2, 1), output_padding=(1, 0)),
]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("case", ORACLE_CASES, ids=str)
def test_brute_force_oracle(device, nonneg, case):
    operands = case.operands(nonneg=nonneg, dtype=torch.float64, device=device)
    y_lo, y_hi = case.interval(operands, nonneg)
    o_lo, o_hi = brute_force(case, operands)
    torch.testing.assert_close(y_lo.cpu(), o_lo, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_hi.cpu(), o_hi, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ containment

@pytest.mark.parametrize("device", ALL_DEVICES)
@given(data=st.data(), transposed=st.booleans(), nonneg=st.booleans(), bias=st.booleans(),
       groups=st.integers(1, 3), in_per_group=st.integers(1, 2), out_per_group=st.integers(1, 2),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       size=st.tuples(st.integers(1, 6), st.integers(1, 6)), batch=st.integers(1, 2),
       seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_containment(device, data, transposed, nonneg, bias, groups, in_per_group, out_per_group,
                     kernel, stride, padding, dilation, size, batch, seed, dtype):
    x_shape = (batch, in_per_group * groups, *size)
    if transposed:
        output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1))
                               for s, d in zip(stride, dilation))
        out = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1 for n, s, p, d, k, o in
               zip(size, stride, padding, dilation, kernel, output_padding)]
        case = Case("conv_transpose2d", x_shape, (x_shape[1], out_per_group, *kernel), stride,
                    padding, dilation, groups, output_padding)
    else:
        out = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, s, p, d, k in
               zip(size, stride, padding, dilation, kernel)]
        case = Case("conv2d", x_shape, (out_per_group * groups, in_per_group, *kernel), stride,
                    padding, dilation, groups)
    assume(min(out) >= 1)
    gen = torch.Generator().manual_seed(seed)
    operands = case.operands(nonneg=nonneg, dtype=dtype, device="cpu", bias=bias, generator=gen)
    y_lo, y_hi = case.interval([None if t is None else t.to(device) for t in operands], nonneg)
    tol = 2 * (case.reduction + 4) * torch.finfo(dtype).eps * case.scale(operands)
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi = operands
    for _ in range(6):
        x = sample_inside(x_lo, x_hi, gen).double()
        w = sample_inside(w_lo, w_hi, gen).double()
        b = sample_inside(b_lo, b_hi, gen).double() if bias else None
        y = case.plain(x, w, b)
        assert bool((y >= y_lo.cpu().double() - tol).all()), "point output below the lower bound"
        assert bool((y <= y_hi.cpu().double() + tol).all()), "point output above the upper bound"


# ------------------------------------------------------------------------- against plain PyTorch

@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[6], CASES[8], CASES[10]], ids=str)
def test_zero_width_equals_plain_conv(device, dtype, case):
    x = torch.randn(case.x_shape, dtype=dtype, device=device)
    w = torch.randn(case.w_shape, dtype=dtype, device=device)
    b = torch.randn(case.out_channels, dtype=dtype, device=device)
    y_lo, y_hi = case.interval([x, x, w, w, b, b], False)
    # The plain convolution in full precision: no TF32 in cuDNN (half types: in float32).
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        expected = case.plain(*cast([x, w, b], work_dtype(dtype)))
    scale = case.scale([x, x, w, w, b, b])
    assert_close_scaled(y_lo, expected, scale, dtype, case.reduction)
    assert_close_scaled(y_hi, expected, scale, dtype, case.reduction)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("case", [CASES[1], CASES[7], CASES[10]], ids=str)
def test_nonneg_mode_equals_general_mode_on_nonneg_inputs(device, dtype, case):
    operands = case.operands(nonneg=True, dtype=dtype, device=device)
    fast = case.interval(operands, True)
    general = case.interval(operands, False)
    scale = case.scale(operands)
    for a, b in zip(fast, general):
        assert_close_scaled(a, b.double(), scale, dtype, case.reduction)


# ---------------------------------------------------------------------------------- autograd, ops

GRADCHECK_CASES = [
    Case("conv2d", (1, 4, 5, 4), (4, 2, 3, 2), stride=2, padding=1, groups=2),
    Case("conv2d", (2, 2, 5, 5), (2, 2, 2, 2), dilation=2, padding=(0, 1)),
    Case("conv1d", (2, 2, 6), (3, 2, 3), stride=2, padding=1),
    Case("conv_transpose2d", (1, 4, 3, 3), (4, 1, 2, 3), stride=2, padding=(1, 0),
         output_padding=1, groups=2),
]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=str)
def test_gradcheck(device, nonneg, case):
    operands = [t.requires_grad_() for t in
                case.operands(nonneg=nonneg, dtype=torch.float64, device=device)]
    assert torch.autograd.gradcheck(lambda *ops: case.interval(ops, nonneg), operands)


def op_config(case):
    """The explicit trailing arguments of the torch.ops.inn_cuda schema of a 2-D case."""
    if case.transposed:
        return [pair(case.stride), pair(case.padding), pair(case.output_padding), case.groups,
                pair(case.dilation)]
    return [pair(case.stride), pair(case.padding), pair(case.dilation), case.groups]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("case", [GRADCHECK_CASES[0], GRADCHECK_CASES[3]], ids=str)
def test_opcheck(device, nonneg, case):
    operands = [t.requires_grad_() for t in
                case.operands(nonneg=nonneg, dtype=torch.float32, device=device)]
    name = "interval_" + case.kind
    config = op_config(case) + [nonneg]
    torch.library.opcheck(getattr(torch.ops.inn_cuda, name).default, (*operands, *config))
    y_lo, _ = case.interval(operands, nonneg)
    grads = [torch.randn(y_lo.shape, device=device) for _ in range(2)]
    for part in ("input", "weight"):
        op = getattr(torch.ops.inn_cuda, f"{name}_backward_{part}").default
        torch.library.opcheck(op, (*grads, *[t.detach() for t in operands[:4]], *config))


# ----------------------------------------------------------------------- padding modes, layouts

@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("kernel,dilation", [((3, 3), 1), ((2, 4), 1), ((3, 2), (2, 3)),
                                             ((4, 4), 2)])
def test_padding_same(device, kernel, dilation):
    case = Case("conv2d", (2, 2, 7, 6), (3, 2, *kernel), padding="same", dilation=dilation)
    x = torch.randn(case.x_shape, dtype=torch.float64, device=device)
    w = torch.randn(case.w_shape, dtype=torch.float64, device=device)
    y_lo, y_hi = case.interval([x, x, w, w, None, None], False)
    expected = case.plain(x, w)
    assert y_lo.shape == expected.shape == (2, 3, 7, 6)
    torch.testing.assert_close(y_lo, expected)
    torch.testing.assert_close(y_hi, expected)
    # An interval input: the same as the oracle on the explicitly padded input.
    operands = case.operands(nonneg=False, dtype=torch.float64, device=device)
    y_lo, y_hi = case.interval(operands, False)
    totals = [d * (k - 1) for d, k in zip(pair(dilation), kernel)]
    pads = [totals[1] // 2, totals[1] - totals[1] // 2, totals[0] // 2, totals[0] - totals[0] // 2]
    padded = [F.pad(t, pads) for t in operands[:2]] + operands[2:]
    o_lo, o_hi = brute_force_conv2d(*padded, 1, 0, dilation, 1)
    torch.testing.assert_close(y_lo.cpu(), o_lo, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_hi.cpu(), o_hi, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv1d_padding_modes(device, padding):
    case = Case("conv1d", (2, 3, 10), (4, 3, 4), padding=padding, dilation=2)
    x = torch.randn(case.x_shape, dtype=torch.float64, device=device)
    w = torch.randn(case.w_shape, dtype=torch.float64, device=device)
    y_lo, y_hi = case.interval([x, x, w, w, None, None], False)
    expected = case.plain(x, w)
    assert y_lo.shape == expected.shape
    torch.testing.assert_close(y_lo, expected)
    torch.testing.assert_close(y_hi, expected)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_padding_valid_equals_zero_padding(device):
    case = Case("conv2d", (2, 3, 7, 6), (4, 3, 3, 2), padding="valid", stride=2)
    operands = case.operands(nonneg=False, dtype=torch.float64, device=device)
    explicit = Case("conv2d", case.x_shape, case.w_shape, padding=0, stride=2)
    for a, b in zip(case.interval(operands, False), explicit.interval(operands, False)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("case", [CASES[0], CASES[8]], ids=str)
def test_channels_last_input(device, case):
    operands = case.operands(nonneg=False, dtype=torch.float64, device=device)
    strided = [t.to(memory_format=torch.channels_last) if t.dim() == 4 else t for t in operands]
    assert not strided[0].is_contiguous() and not strided[2].is_contiguous()
    leaves = [[t.clone().requires_grad_() for t in ops] for ops in (operands, strided)]
    outputs = [case.interval(ops, False) for ops in leaves]
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b)
    for ops, out in zip(leaves, outputs):
        (out[0].sum() + 2 * out[1].sum()).backward()
    for a, b in zip(*leaves):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("case", [Case("conv2d", (0, 4, 5, 5), (6, 2, 3, 3), groups=2, padding=1),
                                  Case("conv1d", (0, 2, 5), (3, 2, 2)),
                                  Case("conv_transpose2d", (0, 4, 3, 3), (4, 3, 2, 2), stride=2)],
                         ids=str)
def test_empty_batch(device, nonneg, case):
    operands = [t.requires_grad_() for t in
                case.operands(nonneg=nonneg, dtype=torch.float32, device=device)]
    y_lo, y_hi = case.interval(operands, nonneg)
    expected_shape = case.plain(operands[0].detach(), operands[2].detach()).shape
    assert y_lo.shape == y_hi.shape == expected_shape and expected_shape[0] == 0
    (y_lo.sum() + y_hi.sum()).backward()
    assert operands[0].grad.shape == operands[0].shape
    for t in operands[2:]:
        assert bool((t.grad == 0).all())


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
def test_nan_propagates(device, nonneg):
    case = Case("conv2d", (1, 2, 6, 6), (3, 2, 3, 3), padding=1)
    x_lo, x_hi, w_lo, w_hi, _, _ = case.operands(nonneg=nonneg, dtype=torch.float32,
                                                 device=device)
    x_lo[0, 1, 2, 2] = x_hi[0, 1, 2, 2] = float("nan")
    y_lo, y_hi = case.interval([x_lo, x_hi, w_lo, w_hi, None, None], nonneg)
    reached = torch.zeros(1, 3, 6, 6, dtype=torch.bool, device=device)
    reached[:, :, 1:4, 1:4] = True
    for y in (y_lo, y_hi):
        assert bool(y[reached].isnan().all()) and bool(y[~reached].isfinite().all())


@pytest.mark.skipif(not torch.cuda.is_available()
                    or torch.cuda.get_device_properties(0).total_memory < 40 * 2**30,
                    reason="needs a GPU with 40 GiB")
def test_more_than_2_31_input_elements_cuda():
    x = torch.rand(1, 2, 32769, 32768, device="cuda")  # x_lo, x_hi: 2**31 + 65536 elements
    w = torch.rand(1, 2, 1, 1, device="cuda") - 0.5
    y_lo, y_hi = inn_cuda.interval_conv2d(x, x, w, w, input_nonneg=True)
    expected = F.conv2d(x[:, :, -2:].double(), w.double())
    torch.testing.assert_close(y_lo[:, :, -2:].double(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y_hi[:, :, -2:].double(), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------- validation

def conv2d_operands():
    x_lo, x_hi = random_interval((2, 4, 6, 6), dtype=torch.float32)
    w_lo, w_hi = random_interval((6, 2, 3, 3), dtype=torch.float32)
    b_lo, b_hi = random_interval((6,), dtype=torch.float32)
    return dict(x_lo=x_lo, x_hi=x_hi, w_lo=w_lo, w_hi=w_hi, b_lo=b_lo, b_hi=b_hi, groups=2)


CONV2D_ERRORS = [
    (lambda o: o.update(x_lo=o["x_lo"][0], x_hi=o["x_hi"][0]), r"x_lo must have 4 dims"),
    (lambda o: o.update(w_lo=o["w_lo"][0], w_hi=o["w_hi"][0]), r"w_lo must have 4 dims"),
    (lambda o: o.update(x_hi=o["x_hi"][:, :, :5]),
     r"x_hi has shape \(2, 4, 5, 6\), expected \(2, 4, 6, 6\)"),
    (lambda o: o.update(groups=1), r"x_lo has 4 channels, expected 2 \(weight in-channels 2 x "
                                   r"groups 1\)"),
    (lambda o: o.update(w_lo=o["w_lo"][:5], w_hi=o["w_hi"][:5], b_lo=o["b_lo"][:5],
                        b_hi=o["b_hi"][:5]), r"5 output channels are not divisible by groups 2"),
    (lambda o: o.update(groups=0), r"groups must be a positive int, got 0"),
    (lambda o: o.update(stride=0), r"stride must be >= 1, got 0"),
    (lambda o: o.update(stride=(1, 2, 3)), r"stride must be an int or 2 ints"),
    (lambda o: o.update(padding=-1), r"padding must be >= 0, got -1"),
    (lambda o: o.update(padding="full"), r"padding must be an int, 2 ints, 'valid' or 'same'"),
    (lambda o: o.update(padding="same", stride=2), r"padding='same' requires stride 1"),
    (lambda o: o.update(dilation=(1, 0)), r"dilation must be >= 1"),
    (lambda o: o.update(dilation=3), r"input size 6 \(padded by 0 on each side\) is smaller "
                                     r"than the dilated kernel 7"),
    (lambda o: o.update(w_hi=o["w_hi"].double()), r"w_hi has dtype torch.float64, expected "
                                                  r"torch.float32"),
    (lambda o: o.update(b_lo=o["b_lo"][:3], b_hi=o["b_hi"][:3]), r"b_lo has shape \(3,\), "
                                                                 r"expected \(6,\)"),
    (lambda o: o.update(x_lo=o["x_hi"] + 1), r"x_lo must be <= x_hi elementwise"),
    (lambda o: o.update(w_lo=o["w_hi"] + 1), r"w_lo must be <= w_hi elementwise"),
    (lambda o: o.update(input_nonneg=True), r"input_nonneg=True requires x_lo >= 0"),
    (lambda o: o.update(x_lo=o["x_lo"].half(), x_hi=o["x_hi"].half(), w_lo=o["w_lo"].half(),
                        w_hi=o["w_hi"].half(), b_lo=None, b_hi=None),
     r"on cpu the supported dtypes are float32, float64"),
]


@pytest.mark.parametrize("mutate,message", CONV2D_ERRORS)
def test_conv2d_validation_errors(mutate, message):
    operands = conv2d_operands()
    operands["x_lo"] = operands["x_lo"] - 5  # signed, for the input_nonneg case
    mutate(operands)
    with pytest.raises((ValueError, TypeError), match=message):
        inn_cuda.interval_conv2d(**operands)


def test_device_mismatch_is_an_error():
    o = conv2d_operands()
    with pytest.raises(ValueError, match=r"w_lo is on meta, expected cpu like x_lo"):
        inn_cuda.interval_conv2d(o["x_lo"], o["x_hi"], o["w_lo"].to("meta"), o["w_hi"].to("meta"),
                                 groups=2)


def conv1d_operands():
    x_lo, x_hi = random_interval((2, 3, 8), dtype=torch.float32)
    w_lo, w_hi = random_interval((4, 3, 3), dtype=torch.float32)
    return dict(x_lo=x_lo, x_hi=x_hi, w_lo=w_lo, w_hi=w_hi)


CONV1D_ERRORS = [
    (lambda o: o.update(x_lo=o["x_lo"][None], x_hi=o["x_hi"][None]), r"x_lo must have 3 dims"),
    (lambda o: o.update(w_lo=o["w_lo"][..., None], w_hi=o["w_hi"][..., None]),
     r"w_lo must have 3 dims"),
    (lambda o: o.update(stride=(1, 1)), r"stride must be an int or 1 ints"),
    (lambda o: o.update(padding=-2), r"padding must be >= 0"),
    (lambda o: o.update(dilation=4), r"input size 8 .* smaller than the dilated kernel 9"),
    (lambda o: o.update(x_lo=o["x_lo"].double()), r"x_hi has dtype torch.float32, expected "
                                                  r"torch.float64"),
]


@pytest.mark.parametrize("mutate,message", CONV1D_ERRORS)
def test_conv1d_validation_errors(mutate, message):
    operands = conv1d_operands()
    mutate(operands)
    with pytest.raises((ValueError, TypeError), match=message):
        inn_cuda.interval_conv1d(**operands)


def conv_transpose2d_operands():
    x_lo, x_hi = random_interval((2, 4, 3, 3), dtype=torch.float32)
    w_lo, w_hi = random_interval((4, 3, 3, 3), dtype=torch.float32)
    return dict(x_lo=x_lo, x_hi=x_hi, w_lo=w_lo, w_hi=w_hi, stride=2)


CONV_TRANSPOSE2D_ERRORS = [
    (lambda o: o.update(x_lo=o["x_lo"][0], x_hi=o["x_hi"][0]), r"x_lo must have 4 dims"),
    (lambda o: o.update(w_lo=o["w_lo"][0], w_hi=o["w_hi"][0]), r"w_lo must have 4 dims"),
    (lambda o: o.update(w_lo=o["w_lo"][:3], w_hi=o["w_hi"][:3]),
     r"x_lo has 4 channels, expected 3 \(w_lo.shape\[0\]\), divisible by groups 1"),
    (lambda o: o.update(groups=3), r"x_lo has 4 channels, expected 4 .* divisible by groups 3"),
    (lambda o: o.update(groups=-1), r"groups must be a positive int"),
    (lambda o: o.update(stride=0), r"stride must be >= 1"),
    (lambda o: o.update(padding=(1, -1)), r"padding must be >= 0"),
    (lambda o: o.update(output_padding=2), r"output_padding \(2, 2\) must be smaller than stride "
                                           r"\(2, 2\) or dilation \(1, 1\)"),
    (lambda o: o.update(padding=4), "padding 4 leaves no output pixels for input size 3"),
    (lambda o: o.update(b_lo=torch.zeros(4), b_hi=torch.zeros(4)),
     r"b_lo has shape \(4,\), expected \(3,\)"),
    (lambda o: o.update(w_hi=o["w_hi"].double()), r"w_hi has dtype torch.float64"),
    (lambda o: o.update(x_hi=o["x_lo"] - 1), r"x_lo must be <= x_hi elementwise"),
]


@pytest.mark.parametrize("mutate,message", CONV_TRANSPOSE2D_ERRORS)
def test_conv_transpose2d_validation_errors(mutate, message):
    operands = conv_transpose2d_operands()
    mutate(operands)
    with pytest.raises((ValueError, TypeError), match=message):
        inn_cuda.interval_conv_transpose2d(**operands)


@pytest.mark.skipif("interval_conv2d" not in inn_cuda._backend.BUILD["kernels"].get("cpu", ()),
                    reason="no compiled CPU conv kernels")
def test_kernels_check_shapes_when_called_directly():
    """torch.ops.inn_cuda bypasses the Python checks; the kernels refuse what they cannot index."""
    o = conv2d_operands()
    ops = torch.ops.inn_cuda
    args = (o["x_lo"], o["x_hi"], o["w_lo"], o["w_hi"], None, None)
    with pytest.raises(ValueError, match=r"x_lo has 4 channels, expected 6"):
        ops.interval_conv2d(*args, (1, 1), (0, 0), (1, 1), 3, False)
    with pytest.raises(ValueError, match=r"smaller than the dilated kernel"):
        ops.interval_conv2d(*args, (1, 1), (0, 0), (4, 4), 2, False)
    grad = torch.zeros(2, 6, 3, 3)
    with pytest.raises(ValueError, match=r"grad_lo has shape \[2, 6, 3, 3\], expected the output shape"):
        ops.interval_conv2d_backward_weight(grad, grad, *args[:4], (1, 1), (0, 0), (1, 1), 2,
                                            False)
    with pytest.raises(ValueError, match=r"output_padding .* smaller than stride .* or dilation"):
        w = torch.zeros(4, 2, 3, 3)
        ops.interval_conv_transpose2d(o["x_lo"], o["x_hi"], w, w, None, None, (1, 1), (0, 0),
                                      (1, 1), 1, (1, 1), False)
