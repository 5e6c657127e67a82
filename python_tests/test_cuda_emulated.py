"""The CUDA kernels of csrc/kernels/, compiled with g++ and run on the CPU through an emulation of
the CUDA execution model (cuda_emulation/), against the reference: every op (linear, conv2d,
conv_transpose2d; forward, input and weight gradients), both modes, float32/float64 (and
float16/bfloat16 when CUDA's headers are installed), edge tiles, depth splits, groups, stride,
padding, dilation and output_padding. This verifies the kernel logic without a GPU; it does not
replace running the compiled kernels on one (the device-parametrised op tests do that)."""

import pytest
import torch
import torch.nn.functional as F

from inn_cuda import reference

from bound_oracle import check, conv_terms, linear_terms, with_infinities
from cuda_emulation import emulated_ops
from helpers import assert_close_scaled, random_interval

# One xdist group: every test here loads the same emulation build (built once, minutes), so
# `pytest -n N --dist loadgroup` runs them on one worker while the others take the rest.
pytestmark = [
    pytest.mark.skipif(emulated_ops.compiler() is None,
                       reason="g++ not found: the CUDA kernel emulation needs a C++20 "
                               "host compiler"),
    pytest.mark.xdist_group("cuda_emulation"),
]

# (op, x shape, w shape, config after the bias). Shapes cross the 64 x 64 output tile and the
# 16-deep depth step, and leave partial tiles. These run in the tile configuration the launch plan
# chooses; test_cuda_emulated_tiles.py runs every configuration.
LINEAR = [  # x, w
    ((1, 1), (1, 1)),
    ((3, 17), (5, 17)),
    ((70, 33), (65, 33)),
    ((2, 33, 7), (3, 7)),
    ((130, 20), (2, 20)),
]
CONV2D = [  # x, w, stride, padding, dilation, groups
    ((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 4, 7, 5), (6, 2, 3, 2), (2, 1), (0, 1), (1, 2), 2),
    ((2, 6, 6, 6), (6, 2, 3, 3), (2, 2), (1, 1), (1, 1), 3),
    ((1, 2, 9, 9), (70, 2, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((1, 3, 11, 10), (5, 3, 2, 3), (3, 2), (2, 0), (2, 1), 1),
    ((2, 2, 1, 7), (3, 2, 1, 3), (2, 2), (0, 1), (1, 2), 1),  # a stride phase without pixels
]
CONV_TRANSPOSE2D = [  # x, w, stride, padding, output_padding, groups, dilation
    ((2, 3, 4, 5), (3, 4, 3, 3), (1, 1), (1, 1), (0, 0), 1, (1, 1)),
    ((1, 4, 3, 4), (4, 3, 3, 2), (2, 2), (1, 0), (1, 1), 2, (1, 1)),
    ((2, 6, 3, 3), (6, 2, 3, 3), (2, 3), (0, 1), (1, 2), 3, (1, 1)),
    ((1, 2, 5, 5), (2, 70, 1, 1), (1, 1), (0, 0), (0, 0), 1, (1, 1)),
    ((1, 3, 4, 3), (3, 2, 2, 3), (3, 2), (1, 0), (2, 1), 1, (2, 1)),
    ((2, 2, 3, 4), (2, 3, 3, 3), (2, 2), (1, 2), (1, 0), 1, (2, 2)),  # phases without taps
]
CASES = ([pytest.param("interval_linear", x, w, (), id=f"linear-{i}")
          for i, (x, w) in enumerate(LINEAR)]
         + [pytest.param("interval_conv2d", x, w, cfg, id=f"conv2d-{i}")
            for i, (x, w, *cfg) in enumerate(CONV2D)]
         + [pytest.param("interval_conv_transpose2d", x, w, cfg, id=f"conv_transpose2d-{i}")
            for i, (x, w, *cfg) in enumerate(CONV_TRANSPOSE2D)])
MODES = [pytest.param(False, id="general"), pytest.param(True, id="nonneg")]
HALF_TYPES = [torch.float16, torch.bfloat16]


@pytest.fixture(scope="module")
def kernels():
    return emulated_ops.EmulatedKernels(emulated_ops.build())


def plain_op(op, config):
    """The point (non-interval) layer, for tolerance scales."""
    if op == "interval_linear":
        return lambda x, w: F.linear(x, w)
    if op == "interval_conv2d":
        return lambda x, w: F.conv2d(x, w, None, *config)
    stride, padding, output_padding, groups, dilation = config
    return lambda x, w: F.conv_transpose2d(x, w, None, stride, padding, output_padding, groups,
                                           dilation)


def reductions(op, x_shape, w_shape, config, y_shape):
    """Terms per output element of the forward, input gradient and weight gradient."""
    if op == "interval_linear":
        return w_shape[1], w_shape[0], int(torch.tensor(x_shape[:-1]).prod())
    taps = w_shape[2] * w_shape[3]
    if op == "interval_conv2d":
        groups = config[3]
        return (w_shape[1] * taps, w_shape[0] // groups * taps,
                y_shape[0] * y_shape[2] * y_shape[3])
    groups = config[3]
    return w_shape[0] // groups * taps, w_shape[1] * taps, x_shape[0] * x_shape[2] * x_shape[3]


def make_operands(op, x_shape, w_shape, config, *, nonneg, dtype, integer=False, seed=0):
    """(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, g_lo, g_hi). Integer operands make every product and
    sum exact, with many exact ties between candidates and zero bounds."""
    gen = torch.Generator().manual_seed(seed)
    out_channels = w_shape[0] if op != "interval_conv_transpose2d" else w_shape[1] * config[3]
    if integer:
        def interval(shape, low):
            a = torch.randint(low, 3, shape, generator=gen, dtype=torch.float64)
            b = torch.randint(low, 3, shape, generator=gen, dtype=torch.float64)
            return torch.minimum(a, b), torch.maximum(a, b)
        x = interval(x_shape, 0 if nonneg else -2)
        w = interval(w_shape, -2)
        b = interval((out_channels,), -2)
    else:
        x = random_interval(x_shape, nonneg=nonneg, generator=gen)
        w = random_interval(w_shape, width=0.3, generator=gen)
        b = random_interval((out_channels,), generator=gen)
    y_shape = reference.OPS[op](x[0], x[1], w[0], w[1], None, None, *config, nonneg)[0].shape
    if integer:
        g = [torch.randint(-2, 3, y_shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    else:
        g = [torch.randn(y_shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    return [t.to(dtype) for t in (*x, *w, *b, *g)]


def run_all(kernels, op, operands, config, nonneg):
    """Forward (with bias), input gradient and weight gradient: from the kernels and from the
    reference evaluated in the kernels' accumulation dtype (so both select the same candidates)."""
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, g_lo, g_hi = operands
    work = torch.float32 if x_lo.dtype in HALF_TYPES else x_lo.dtype
    got, expected = [], []
    for suffix, args in (("", (x_lo, x_hi, w_lo, w_hi, b_lo, b_hi)),
                         ("_backward_input", (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi)),
                         ("_backward_weight", (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi))):
        got.append(getattr(kernels, op + suffix)(*args, *config, nonneg))
        expected.append(reference.OPS[op + suffix](*[t.to(work) for t in args], *config, nonneg))
    return got, expected


def check_scaled(op, x_shape, w_shape, config, operands, got, expected):
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, g_lo, g_hi = [t.double() for t in operands]
    x_mag = torch.maximum(x_lo.abs(), x_hi.abs()).requires_grad_()
    w_mag = torch.maximum(w_lo.abs(), w_hi.abs()).requires_grad_()
    y_mag = plain_op(op, config)(x_mag, w_mag)
    bias_shape = (1, -1) + (1, 1) * (op != "interval_linear")
    forward_scale = y_mag.detach() + torch.maximum(b_lo.abs(), b_hi.abs()).reshape(
        bias_shape[:y_mag.dim()])
    input_scale, weight_scale = torch.autograd.grad(y_mag, (x_mag, w_mag),
                                                    g_lo.abs() + g_hi.abs())
    dtype = operands[0].dtype
    terms = reductions(op, x_shape, w_shape, config, y_mag.shape)
    for pair, ref_pair, scale, count in zip(got, expected,
                                            (forward_scale, input_scale, weight_scale), terms):
        for value, ref in zip(pair, ref_pair):
            assert value.dtype == dtype
            assert_close_scaled(value, ref, scale, dtype, count)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("op,x_shape,w_shape,config", CASES)
def test_matches_reference(kernels, op, x_shape, w_shape, config, nonneg, dtype):
    operands = make_operands(op, x_shape, w_shape, config, nonneg=nonneg, dtype=dtype)
    got, expected = run_all(kernels, op, operands, config, nonneg)
    check_scaled(op, x_shape, w_shape, config, operands, got, expected)


@pytest.mark.parametrize("dtype,plan", [  # the split plan does not depend on the dtype
    pytest.param(torch.float32, (132, 512), id="float32"),
    pytest.param(torch.float64, (132, 512), id="float64"),
    pytest.param(torch.float64, (64, 16), id="float64-depth-splits")])
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("op,x_shape,w_shape,config", CASES)
def test_integer_operands_exact(kernels, op, x_shape, w_shape, config, nonneg, dtype, plan):
    """Exact sums: every candidate selection (ties: the l candidate; zero counts non-negative) and
    every gradient route must agree with the reference bit for bit, also when the depth is split
    over blocks (the (64 SMs, 16-term slices) plan splits every reduction longer than 31)."""
    operands = make_operands(op, x_shape, w_shape, config, nonneg=nonneg, dtype=dtype,
                             integer=True, seed=1)
    got, expected = run_all(kernels.with_plan(*plan), op, operands, config, nonneg)
    for pair, ref_pair in zip(got, expected):
        for value, ref in zip(pair, ref_pair):
            torch.testing.assert_close(value, ref, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("op,x_shape,w_shape,config",
                         [CASES[2], CASES[len(LINEAR) + 1], CASES[len(LINEAR) + len(CONV2D) + 1]])
def test_half_types(kernels, op, x_shape, w_shape, config, nonneg, dtype):
    if not kernels.has_half_types:
        pytest.skip("CUDA's cuda_fp16.h/cuda_bf16.h not found: half types are not emulated")
    operands = make_operands(op, x_shape, w_shape, config, nonneg=nonneg, dtype=dtype)
    got, expected = run_all(kernels, op, operands, config, nonneg)
    check_scaled(op, x_shape, w_shape, config, operands, got, expected)


def test_plan_splits_depth_only_when_blocks_are_scarce(kernels):
    """Depth splits happen where intended (so the split cases above do split), and a long weight
    gradient reduction comes out identical (integers) with and without them."""
    # (rows, cols, depth) of the weight gradients of CASES, under the split-forcing plan
    forcing = kernels.with_plan(64, 16)
    assert forcing.plan_splits(5, 17, 3) == 1  # linear-1: 3 rows
    assert forcing.plan_splits(65, 33, 70) == 3  # linear-2: 70 rows in 32-deep slices
    assert forcing.plan_splits(4, 27, 60) == 2  # conv2d-0: batch x pixels = 2 * 5 * 6
    assert kernels.plan_splits(64, 64, 10**6) == 64  # one tile, a long reduction: capped
    assert kernels.plan_splits(512, 512, 10**6) == 5  # 64 tiles on 132 SMs
    assert kernels.plan_splits(1024, 1024, 10**6) == 1  # 256 tiles fill 132 SMs
    assert kernels.plan_splits(64, 64, 1023) == 1  # too short to split
    assert kernels.plan_splits(64, 64, 0) == 1
    op, x_shape, w_shape = "interval_linear", (2000, 5), (3, 5)
    assert kernels.plan_splits(3, 5, 2000) == 3
    operands = make_operands(op, x_shape, w_shape, (), nonneg=False, dtype=torch.float64,
                             integer=True)
    x_lo, x_hi, w_lo, w_hi, _, _, g_lo, g_hi = operands
    split = kernels.interval_linear_backward_weight(g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, False)
    single = kernels.with_plan(1, 512).interval_linear_backward_weight(g_lo, g_hi, x_lo, x_hi,
                                                                       w_lo, w_hi, False)
    for a, b in zip(split, single):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_strided_linear_operands(kernels):
    """Transposed batch dims, a transposed weight, and bounds with different strides."""
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, g_lo, g_hi = make_operands(
        "interval_linear", (6, 10, 8), (12, 8), (), nonneg=False, dtype=torch.float64,
        integer=True)
    xt_lo, xt_hi = x_lo.transpose(0, 1), x_hi.transpose(0, 1).contiguous()
    wt_lo, wt_hi = w_lo.T.contiguous().T, w_hi.T.contiguous().T
    gt_lo, gt_hi = g_lo.transpose(0, 1), g_hi.transpose(0, 1)
    args = [(xt_lo, xt_hi, wt_lo, wt_hi, b_lo, b_hi),
            (gt_lo, gt_hi, xt_lo, xt_hi, wt_lo, wt_hi),
            (gt_lo, gt_hi, xt_lo, xt_hi, wt_lo, wt_hi)]
    for suffix, arg in zip(("", "_backward_input", "_backward_weight"), args):
        got = getattr(kernels, "interval_linear" + suffix)(*arg, False)
        expected = reference.OPS["interval_linear" + suffix](*arg, False)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_empty_batch_and_zero_depth(kernels):
    w_lo, w_hi = torch.zeros(4, 0), torch.zeros(4, 0)
    b_lo, b_hi = torch.arange(4.0), torch.arange(4.0) + 1
    x0 = torch.zeros(3, 0)
    y_lo, y_hi = kernels.interval_linear(x0, x0, w_lo, w_hi, b_lo, b_hi, False)
    torch.testing.assert_close(y_lo, b_lo.expand(3, 4))  # K = 0: the bias
    torch.testing.assert_close(y_hi, b_hi.expand(3, 4))
    y_lo, _ = kernels.interval_linear(x0, x0, w_lo, w_hi, None, None, False)
    assert bool((y_lo == 0).all())
    # an empty batch: empty outputs, zero weight gradients (a launch over an empty reduction)
    x_lo, x_hi = torch.zeros(0, 5), torch.zeros(0, 5)
    w_lo, w_hi = -torch.ones(3, 5), torch.ones(3, 5)
    g = torch.zeros(0, 3)
    assert kernels.interval_linear(x_lo, x_hi, w_lo, w_hi, None, None, False)[0].shape == (0, 3)
    dw_lo, dw_hi = kernels.interval_linear_backward_weight(g, g, x_lo, x_hi, w_lo, w_hi, True)
    assert bool((dw_lo == 0).all()) and bool((dw_hi == 0).all())
    cfg = ((1, 1), (1, 1), (1, 1), 1)
    x_lo, x_hi = torch.zeros(0, 2, 4, 4), torch.zeros(0, 2, 4, 4)
    w_lo, w_hi = -torch.ones(3, 2, 3, 3), torch.ones(3, 2, 3, 3)
    g = torch.zeros(0, 3, 4, 4)
    assert kernels.interval_conv2d(x_lo, x_hi, w_lo, w_hi, None, None, *cfg)[0].shape == \
        (0, 3, 4, 4)
    dw_lo, dw_hi = kernels.interval_conv2d_backward_weight(g, g, x_lo, x_hi, w_lo, w_hi, *cfg,
                                                           False)
    assert bool((dw_lo == 0).all()) and bool((dw_hi == 0).all())


@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("op,x_shape,w_shape,config", [CASES[1], CASES[len(LINEAR)],
                                                        CASES[len(LINEAR) + len(CONV2D) + 1]])
def test_nan_propagates_like_the_reference(kernels, nonneg, op, x_shape, w_shape, config):
    """A NaN input element reaches every output it feeds. So does a NaN weight element in linear
    and conv2d, where zero padding is a zero-valued term as in the general-mode reference (which is
    the oracle: the nonneg-mode reference calls F.conv2d, which skips padded taps). A
    conv_transpose2d output has no term at all where no input pixel maps (stride phases), so there
    a NaN weight does not reach the outputs the reference's inserted zeros would carry it to."""
    x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, _, _ = make_operands(
        op, x_shape, w_shape, config, nonneg=nonneg, dtype=torch.float32)
    x_lo.view(-1)[1] = x_hi.view(-1)[1] = float("nan")
    if op != "interval_conv_transpose2d":
        w_lo.view(-1)[-1] = w_hi.view(-1)[-1] = float("nan")
    got = getattr(kernels, op)(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, *config, nonneg)
    expected = reference.OPS[op](x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, *config, False)
    for a, b in zip(got, expected):
        assert bool(a.isnan().any()) and not bool(a.isnan().all())
        assert torch.equal(a.isnan(), b.isnan())



@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("op,x_shape,w_shape,config",
                         [c for c in CASES if len(c.values[1]) != 3 and c.values[1][0] > 1])
def test_zero_times_inf_is_zero(kernels, op, x_shape, w_shape, config, nonneg):
    """The kernel templates follow the 0 * inf = 0 bound convention (interval_math.h mul_bound)
    in the forward and both gradients: exact against the brute-force float64 oracle on integer
    operands with exact zeros and infinite bounds in the input, the weight and the gradient."""
    name = op.removeprefix("interval_")
    terms = (linear_terms(x_shape[0], w_shape[0], x_shape[1]) if name == "linear"
             else conv_terms(name, x_shape, w_shape, config))
    operands = with_infinities(x_shape, w_shape, terms[3], nonneg=nonneg, dtype=torch.float32,
                               seed=sum(x_shape) + sum(w_shape), share=0.1)
    check(kernels, op, terms, list(config), operands, nonneg)


@pytest.mark.parametrize("plan", [(132, 512), (64, 16)], ids=["one-slice", "split-depth"])
def test_guarded_launch_runs_only_when_the_flag_is_set(kernels, plan):
    """TileOutput::run_if (the library path's rerun of the fused kernel when an operand was not
    finite): a false flag leaves the output untouched, a true one computes it, with and without
    depth splits."""
    emulated = kernels.with_plan(*plan)
    x_lo, x_hi = random_interval((5, 40), nonneg=True, dtype=torch.float32)
    w_lo, w_hi = random_interval((3, 40), dtype=torch.float32)
    expected = emulated.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=True)
    try:
        emulated.lib.emu_set_guard(0)
        skipped = emulated.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=True)
        emulated.lib.emu_set_guard(1)
        ran = emulated.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=True)
    finally:
        emulated.lib.emu_set_guard(-1)
    for r, e in zip(ran, expected):
        torch.testing.assert_close(r, e, rtol=0, atol=0)
    for s, e in zip(skipped, expected):
        assert not torch.equal(s, e)  # left as allocated (torch.empty), not computed


SANITIZED_RUN = """
import sys, torch
sys.path.insert(0, {tests!r})
from cuda_emulation import emulated_ops
from helpers import random_interval
kernels = emulated_ops.EmulatedKernels(emulated_ops.build({sanitize!r})).with_plan(64, 16)
conv = ((2, 1), (1, 1), (1, 2), 2)
transposed = ((2, 2), (0, 1), (1, 0), 1, (1, 1))
for tile in [None, *range(len(kernels.tile_configs()))]:  # the chosen one, then every one
    emulated = kernels.with_tile(tile)
    for nonneg in (False, True):
        x_lo, x_hi = random_interval((7, 100), nonneg=nonneg, dtype=torch.float32)
        w_lo, w_hi = random_interval((5, 100), dtype=torch.float32)
        y = emulated.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=nonneg)  # depth split
        g = [torch.randn_like(y[0]) for _ in range(2)]
        emulated.interval_linear_backward_weight(*g, x_lo, x_hi, w_lo, w_hi, nonneg)
        x_lo, x_hi = random_interval((2, 4, 9, 7), nonneg=nonneg, dtype=torch.float32)
        w_lo, w_hi = random_interval((6, 2, 3, 3), dtype=torch.float32)
        y = emulated.interval_conv2d(x_lo, x_hi, w_lo, w_hi, None, None, *conv, nonneg)
        g = [torch.randn_like(y[0]) for _ in range(2)]
        emulated.interval_conv2d_backward_input(*g, x_lo, x_hi, w_lo, w_hi, *conv, nonneg)
        emulated.interval_conv2d_backward_weight(*g, x_lo, x_hi, w_lo, w_hi, *conv, nonneg)
        x_lo, x_hi = random_interval((2, 3, 4, 5), nonneg=nonneg, dtype=torch.float32)
        w_lo, w_hi = random_interval((3, 2, 2, 3), dtype=torch.float32)
        emulated.interval_conv_transpose2d(x_lo, x_hi, w_lo, w_hi, None, None, *transposed,
                                           nonneg)
print("done")
"""


@pytest.mark.slow
# Each sanitized build (minutes) in its own xdist group, so workers build them side by side.
@pytest.mark.parametrize("sanitize", [
    pytest.param(s, marks=pytest.mark.xdist_group(f"cuda_emulation_{s}"))
    for s in ("address", "thread")])
def test_emulation_under_sanitizer(sanitize):
    """The kernels' emulation (threads of a block as host threads, shared memory, barriers)
    built with -fsanitize=address / thread, in every tile configuration (tile_config.cuh), on
    cases that split the depth and read the conv problems' depth tables (all three conv index
    maps): no out-of-bounds access, no data race between the emulated threads. Only the
    emulation is instrumented (TSan ignores the uninstrumented Python and torch)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    runtime = subprocess.run([emulated_ops.compiler(), f"-print-file-name=lib{sanitize[0]}san.so"],
                             capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(runtime) or not os.path.exists(runtime):
        pytest.skip(f"no {sanitize} sanitizer runtime for {emulated_ops.compiler()}")
    tests = str(Path(__file__).parent)
    env = dict(os.environ, LD_PRELOAD=runtime, ASAN_OPTIONS="detect_leaks=0",
               TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=1",
               OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", SANITIZED_RUN.format(tests=tests,
                                                                         sanitize=sanitize)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-3000:]
    assert "Sanitizer" not in result.stderr, result.stderr[-3000:]
