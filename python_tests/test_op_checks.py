"""The ops' C++ argument checks (csrc/op_checks.cpp, csrc/conv_geometry.h): one regression test
per crash or silent acceptance found by fuzzing (issue 13), the reference fallback behind the same checks, the CUDA kernels' 32-bit
geometry checks (through the CPU emulation), thread-local check_bounds, and linear results that do
not depend on the inputs' memory layout."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import inn_cuda
from inn_cuda import _backend, reference

from cuda_emulation import emulated_ops
from helpers import ALL_DEVICES, random_interval

ROOT = Path(__file__).resolve().parent.parent
ops = torch.ops.inn_cuda
z = torch.zeros


def conv_operands(shape_x=(1, 2, 5, 5), shape_w=(3, 2, 3, 3)):
    x_lo, x_hi = random_interval(shape_x)
    w_lo, w_hi = random_interval(shape_w)
    return x_lo, x_hi, w_lo, w_hi


# --------------------------------------------------------------- issue 13, numbered items

def test_zero_channels_raise_or_give_the_bias():
    """Item 1 (was SIGFPE): no channels at all is an error, as in PyTorch; no input channels
    with output channels give the bias (no terms)."""
    with pytest.raises(ValueError, match="w_lo has 0 output channels"):
        inn_cuda.interval_conv2d(z(1, 0, 5, 5), z(1, 0, 5, 5), z(0, 0, 3, 3), z(0, 0, 3, 3))
    with pytest.raises(ValueError, match="w_lo has 0 output channels"):
        inn_cuda.interval_conv1d(z(1, 0, 5), z(1, 0, 5), z(0, 0, 3), z(0, 0, 3))
    b_lo, b_hi = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 4.0])
    y_lo, y_hi = inn_cuda.interval_conv2d(z(2, 0, 5, 5), z(2, 0, 5, 5), z(2, 0, 3, 3),
                                          z(2, 0, 3, 3), b_lo, b_hi)
    assert y_lo.shape == (2, 2, 3, 3)
    assert torch.equal(y_lo, b_lo.reshape(1, 2, 1, 1).expand(2, 2, 3, 3))
    assert torch.equal(y_hi, b_hi.reshape(1, 2, 1, 1).expand(2, 2, 3, 3))
    grads = ops.interval_conv2d_backward_weight(z(2, 2, 3, 3), z(2, 2, 3, 3), z(2, 0, 5, 5),
                                                z(2, 0, 5, 5), z(2, 0, 3, 3), z(2, 0, 3, 3),
                                                [1, 1], [0, 0], [1, 1], 1, False)
    assert all(g.shape == (2, 0, 3, 3) for g in grads)


def test_empty_batch_gives_zero_gradients():
    x, w = z(0, 2, 5, 5), torch.ones(3, 2, 3, 3)
    dw = ops.interval_conv2d_backward_weight(z(0, 3, 3, 3), z(0, 3, 3, 3), x, x, w, w, [1, 1],
                                             [0, 0], [1, 1], 1, False)
    assert all(torch.equal(d, torch.zeros_like(w)) for d in dw)
    wt = torch.ones(2, 3, 3, 3)
    dw = ops.interval_conv_transpose2d_backward_weight(z(0, 3, 7, 7), z(0, 3, 7, 7), x, x, wt, wt,
                                                       [1, 1], [0, 0], [0, 0], 1, [1, 1], False)
    assert all(torch.equal(d, torch.zeros_like(wt)) for d in dw)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_linear_operands_of_other_shapes_are_refused(device):
    """Item 2 (was an out-of-bounds read): every operand's shape is checked, not only x_lo's."""
    x_lo, x_hi = random_interval((6, 3), device=device)
    w_lo, w_hi = random_interval((4, 3), device=device)
    g = torch.zeros(6, 4, dtype=x_lo.dtype, device=device)
    with pytest.raises(ValueError, match=r"x_hi has shape \[2, 3\], expected \[6, 3\]"):
        ops.interval_linear(x_lo, x_hi[:2], w_lo, w_hi, None, None, False)
    with pytest.raises(ValueError, match=r"w_hi has shape \[1, 3\], expected \[4, 3\]"):
        ops.interval_linear(x_lo, x_hi, w_lo, w_hi[:1], None, None, False)
    for backward in (ops.interval_linear_backward_input, ops.interval_linear_backward_weight):
        with pytest.raises(ValueError, match=r"grad_lo has shape \[2, 4\], expected the output"):
            backward(g[:2], g, x_lo, x_hi, w_lo, w_hi, False)
        with pytest.raises(ValueError, match=r"grad_hi has shape \[6, 2\], expected the output"):
            backward(g, g[:, :2], x_lo, x_hi, w_lo, w_hi, False)
        with pytest.raises(ValueError, match=r"x_hi has shape"):
            backward(g, g, x_lo, x_hi[:1], w_lo, w_hi, False)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_bias_comes_as_a_pair_of_the_right_shape(device):
    """Item 3 (was SIGSEGV / silently dropped / broadcast)."""
    x_lo, x_hi = random_interval((6, 3), device=device)
    w_lo, w_hi = random_interval((4, 3), device=device)
    b = torch.zeros(4, dtype=x_lo.dtype, device=device)
    with pytest.raises(ValueError, match="b_lo was given without b_hi"):
        ops.interval_linear(x_lo, x_hi, w_lo, w_hi, b, None, False)
    with pytest.raises(ValueError, match="b_hi was given without b_lo"):
        ops.interval_linear(x_lo, x_hi, w_lo, w_hi, None, b, False)
    for shape in [(1,), (6, 4), (4, 1)]:
        bad = torch.zeros(shape, dtype=x_lo.dtype, device=device)
        with pytest.raises(ValueError, match=r"b_lo has shape .*, expected \(4,\)"):
            ops.interval_linear(x_lo, x_hi, w_lo, w_hi, bad, bad, False)
    xc_lo, xc_hi, wc_lo, wc_hi = (t.to(device) for t in conv_operands())
    with pytest.raises(ValueError, match="b_hi was given without b_lo"):
        ops.interval_conv2d(xc_lo, xc_hi, wc_lo, wc_hi, None, b[:3], [1, 1], [0, 0], [1, 1], 1,
                            False)
    with pytest.raises(ValueError, match=r"b_hi has shape \[4\], expected \(3,\)"):
        ops.interval_conv2d(xc_lo, xc_hi, wc_lo, wc_hi, b[:3], b, [1, 1], [0, 0], [1, 1], 1,
                            False)


@pytest.mark.parametrize("huge", [2**61, 2**62, 2**63 - 1])
def test_huge_geometry_is_an_error_not_a_wrapped_size(huge):
    """Item 4 (was SIGSEGV or nonsense): the geometry is overflow-checked."""
    x_lo, x_hi, w_lo, w_hi = conv_operands()
    g = z(1, 3, 3, 3, dtype=torch.float64)
    base = dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1])
    for key in ("dilation", "padding"):
        config = {**base, key: [huge, 1]}
        with pytest.raises(ValueError, match="interval_conv2d"):
            ops.interval_conv2d(x_lo, x_hi, w_lo, w_hi, None, None, *config.values(), 1, False)
        with pytest.raises(ValueError, match="interval_conv2d_backward_input"):
            ops.interval_conv2d_backward_input(g, g, x_lo, x_hi, w_lo, w_hi, *config.values(), 1,
                                               False)
    wt_lo, wt_hi = random_interval((2, 3, 3, 3))
    for key in ("stride", "dilation"):
        config = dict(stride=[1, 1], padding=[0, 0], output_padding=[0, 0], groups=1,
                      dilation=[1, 1])
        config[key] = [huge, 1]
        with pytest.raises(ValueError, match="interval_conv_transpose2d: .*(overflows|exceeds)"):
            ops.interval_conv_transpose2d(x_lo, x_hi, wt_lo, wt_hi, None, None, *config.values(),
                                          False)


@pytest.mark.parametrize("conv", ["conv1d", "conv2d", "conv_transpose2d"])
def test_zero_size_kernels_are_refused(conv):
    """Item 10: a kernel size 0 raises like PyTorch (was an output larger than the input)."""
    dims = 1 if conv == "conv1d" else 2
    x = z(1, 2, *[5] * dims)
    w = z(2, 2, *[3] * (dims - 1), 0)
    with pytest.raises(ValueError, match="kernel size must be >= 1"):
        getattr(inn_cuda, "interval_" + conv)(x, x, w, w)
    with pytest.raises(RuntimeError, match="kernel size"):
        getattr(F, conv)(x, w)


def test_conv_transpose2d_without_input_channels_is_a_clear_error():
    """Item 10: (was an internal reshape error)."""
    x, w = z(1, 0, 5, 5), z(0, 3, 3, 3)
    with pytest.raises(ValueError, match="w_lo has 0 input channels"):
        inn_cuda.interval_conv_transpose2d(x, x, w, w)


def test_check_bounds_is_thread_local():
    """Item 5: a thread inside check_bounds(False) does not switch the check off for others,
    and leaving it restores that thread's setting only."""
    x_lo, x_hi = torch.ones(2, 3), torch.zeros(2, 3)  # lo > hi
    w = torch.ones(4, 3)
    inside, outside_errors, release = threading.Event(), [], threading.Event()

    def lenient():
        with inn_cuda.check_bounds(False):
            inn_cuda.interval_linear(x_lo, x_hi, w, w)  # accepted: unchecked here
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=lenient)
    thread.start()
    assert inside.wait(10)
    try:
        inn_cuda.interval_linear(x_lo, x_hi, w, w)
    except ValueError as error:
        outside_errors.append(error)
    release.set()
    thread.join()
    assert len(outside_errors) == 1 and "x_lo must be <= x_hi" in str(outside_errors[0])
    with pytest.raises(ValueError, match="x_lo must be <= x_hi"):
        inn_cuda.interval_linear(x_lo, x_hi, w, w)


def test_set_check_bounds_is_process_wide_and_check_bounds_overrides_it():
    x_lo, x_hi, w = torch.ones(2, 3), torch.zeros(2, 3), torch.ones(4, 3)
    inn_cuda.set_check_bounds(False)
    try:
        result = []
        thread = threading.Thread(target=lambda: result.append(
            inn_cuda.interval_linear(x_lo, x_hi, w, w)))
        thread.start()
        thread.join()
        assert len(result) == 1  # off in another thread too
        with inn_cuda.check_bounds(True):
            with pytest.raises(ValueError, match="x_lo must be <= x_hi"):
                inn_cuda.interval_linear(x_lo, x_hi, w, w)
    finally:
        inn_cuda.set_check_bounds(True)


def test_reference_conv_transpose2d_with_an_infinite_weight_is_finite_where_pytorch_is():
    """Item 7: no 0 * inf from zero insertion: the reference agrees with the kernels."""
    x_lo, x_hi = random_interval((1, 2, 3, 3))
    w_lo, w_hi = random_interval((2, 1, 2, 2))
    w_hi[0, 0, 0, 0] = float("inf")
    config = ((2, 2), (0, 0), (1, 1), 1, (1, 1))
    ref = reference.interval_conv_transpose2d(x_lo, x_hi, w_lo, w_hi, None, None, *config)
    kernel = ops.interval_conv_transpose2d(x_lo, x_hi, w_lo, w_hi, None, None, *config, False)
    for r, k in zip(ref, kernel):
        assert not bool(torch.isnan(r).any())
        torch.testing.assert_close(r, k, equal_nan=True)


@pytest.mark.parametrize("bad", [1.5, "2", (1, 1.5), True, [1, None]])
def test_non_integer_geometry_names_the_argument(bad):
    """stride=1.5 gave "'float' object is not iterable"."""
    x_lo, x_hi, w_lo, w_hi = conv_operands()
    with pytest.raises(ValueError, match=r"interval_conv2d: stride must be an int or"):
        inn_cuda.interval_conv2d(x_lo, x_hi, w_lo, w_hi, stride=bad)


# ----------------------------------------------------------- layout independence (linear)

@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
def test_linear_results_do_not_depend_on_the_layout(device, nonneg):
    """Contiguous, transposed and column-strided operands give bit-identical results (the CPU
    GEMM chose other paths for non-unit column strides)."""
    def layouts(t):
        strided = torch.empty(*t.shape[:-1], 3 * t.shape[-1], dtype=t.dtype, device=device)
        strided[..., ::3] = t
        return [t, t.T.contiguous().T, strided[..., ::3]]

    for m in (3, 40):
        x_lo, x_hi = random_interval((m, 37), nonneg=nonneg, dtype=torch.float32, device=device)
        w_lo, w_hi = random_interval((29, 37), dtype=torch.float32, device=device)
        g_lo, g_hi = random_interval((m, 29), dtype=torch.float32, device=device)
        expected = [ops.interval_linear(x_lo, x_hi, w_lo, w_hi, None, None, nonneg),
                    ops.interval_linear_backward_input(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi,
                                                       nonneg),
                    ops.interval_linear_backward_weight(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi,
                                                        nonneg)]
        for xs in zip(layouts(x_lo), layouts(x_hi)):
            for ws in zip(layouts(w_lo), layouts(w_hi)):
                for gs in zip(layouts(g_lo), layouts(g_hi)):
                    got = [ops.interval_linear(*xs, *ws, None, None, nonneg),
                           ops.interval_linear_backward_input(*gs, *xs, *ws, nonneg),
                           ops.interval_linear_backward_weight(*gs, *xs, *ws, nonneg)]
                    for e, a in zip(expected, got):
                        assert torch.equal(e[0], a[0]) and torch.equal(e[1], a[1])


# ------------------------------------------------------------- the checks on every backend

def test_reference_fallback_runs_the_kernels_checks():
    """The reference, where it serves an op, refuses what the kernels refuse, with their
    message."""
    run = _backend._fallback("interval_linear", "cpu", "a test")
    x, w, b = torch.zeros(4, 3), torch.zeros(5, 3), torch.zeros(5)
    with pytest.raises(ValueError, match="b_lo was given without b_hi"):
        run(x, x, w, w, b, None, False)
    with pytest.raises(ValueError, match=r"x_hi has shape \[2, 3\]"):
        run(x, x[:2], w, w, None, None, False)
    conv = _backend._fallback("interval_conv_transpose2d", "cpu", "a test")
    x, w = z(1, 2, 3, 3), z(2, 1, 3, 3)
    with pytest.raises(ValueError, match="overflows"):
        conv(x, x, w, w, None, None, [2**62, 1], [0, 0], [0, 0], 1, [1, 1], False)


def test_an_invalid_backend_choice_names_the_variable():
    env = {**os.environ, "INN_CUDA_BACKEND": "nvrtc",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", "import inn_cuda"], capture_output=True,
                            text=True, env=env, timeout=300, cwd=ROOT)
    assert result.returncode != 0
    assert ("environment variable INN_CUDA_BACKEND must be one of auto, compiled, reference; "
            "got 'nvrtc'") in result.stderr


@pytest.mark.skipif(emulated_ops.compiler() is None, reason="g++ not found")
@pytest.mark.xdist_group("cuda_emulation")  # the emulation build test_cuda_emulated.py loads
def test_cuda_kernel_geometry_refuses_what_32_bit_indices_cannot_hold():
    """conv_geometry.h's kernel_geometry, as the CUDA launchers call it (here through the CPU
    emulation, which compiles the same header)."""
    kernels = emulated_ops.EmulatedKernels(emulated_ops.build())
    conv = (1, 1, 0, 0, 1, 1)  # stride, padding, dilation
    assert kernels.conv_geometry(False, (2, 3, 8, 9), (4, 3, 3, 3), conv, 1)[:8] == [
        2, 1, 3, 8, 9, 4, 6, 7]
    with pytest.raises(ValueError, match="pixels per image .* 32-bit"):
        kernels.conv_geometry(False, (1, 1, 2**16, 2**16), (1, 1, 1, 1), conv, 1)
    with pytest.raises(ValueError, match="channels x kernel taps .* 32-bit"):
        kernels.conv_geometry(False, (1, 2**20, 64, 64), (1, 2**20, 64, 64), conv, 1)
    with pytest.raises(ValueError, match="exceeds the CUDA kernels. 32-bit"):
        kernels.conv_geometry(False, (1, 1, 2**32, 1), (1, 1, 2, 1), (1, 1, 0, 0, 2**31, 1), 1)
    with pytest.raises(ValueError, match="overflows 64-bit"):
        kernels.conv_geometry(True, (1, 1, 3, 3), (1, 1, 2, 2), (2**62, 1, 0, 0, 0, 0, 1, 1), 1)
