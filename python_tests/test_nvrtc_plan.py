"""The NVRTC backend's Python port of the launchers' host code (inn_cuda/_nvrtc/problems.py:
struct mirrors, problem builders, conv geometry, launch plan and launch sequence) against the C++
original, compiled with g++ in the CUDA emulation harness (python_tests/cuda_emulation/): for the
same operands both must make the same launches in the same order (kernel, grid, depth slices,
mode, workspace) with byte-identical problem structs (every field; padding excluded). No GPU
needed."""

import ctypes

import pytest
import torch
from hypothesis import given, strategies as st

from inn_cuda._nvrtc import problems
from inn_cuda._nvrtc.problems import ELEMENTS, OP_PROBLEMS

from cuda_emulation import emulated_ops
from cuda_emulation.emulated_ops import FORWARD, INPUT_GRAD, WEIGHT_GRAD, Launch

pytestmark = pytest.mark.skipif(emulated_ops.compiler() is None,
                                reason="g++ not found: the C++ side runs in the CUDA emulation")

OPS = {FORWARD: "", INPUT_GRAD: "_backward_input", WEIGHT_GRAD: "_backward_weight"}
# fake operand addresses: g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi; outputs
POINTERS = [0x1000 * (i + 1) for i in range(8)]
OUT = (0x9000, 0xA000)
PLANS = [(132, 512), (64, 16), (1, 512), (7, 1)]  # (SMs, min_split_depth)
DTYPES = [torch.float32, torch.float64]
ELEMENT_OF = {torch.float32: ELEMENTS["float32"], torch.float64: ELEMENTS["float64"],
              torch.float16: ELEMENTS["float16"], torch.bfloat16: ELEMENTS["bfloat16"]}


@pytest.fixture(scope="module")
def kernels():
    return emulated_ops.EmulatedKernels(emulated_ops.build())


class Recorder:
    """problems.Runtime that records what run_tile_problem asks for, like the C++ recorder."""

    def __init__(self):
        self.launches = []

    def launch_tile(self, problem, element, nonneg, blocks, splits, p):
        self.launches.append(Launch("tile", blocks, splits, nonneg, bytes(p),
                                    problem.name(element)))

    def launch_reduce(self, element, blocks, out, splits):
        self.launches.append(Launch("reduce", blocks, splits, False, bytes(out), element.cxx))

    def workspace(self, nbytes):
        self.launches.append(Launch("workspace", nbytes, 0, False, b"", ""))
        return emulated_ops.RECORDED_WORKSPACE


def assert_same_launches(python, cxx, struct):
    assert [(l.kind, l.blocks, l.splits, l.nonneg, l.type_name) for l in python] == \
        [(l.kind, l.blocks, l.splits, l.nonneg, l.type_name) for l in cxx]
    for ours, theirs in zip(python, cxx):
        if ours.kind == "workspace":
            continue
        layout = struct if ours.kind == "tile" else problems.TileOutput
        assert len(ours.value) == len(theirs.value) == ctypes.sizeof(layout)
        for name, offset, size in problems.leaf_fields(layout):
            mine = int.from_bytes(ours.value[offset:offset + size], "little", signed=True)
            cxx_value = int.from_bytes(theirs.value[offset:offset + size], "little", signed=True)
            assert mine == cxx_value, f"{layout.__name__}.{name}: Python {mine}, C++ {cxx_value}"


def python_linear(op, dtype, nonneg, m, n, k, strides, sm_count, min_split_depth):
    g, x, w = (problems.IntervalMatrix(lo=POINTERS[2 * i], hi=POINTERS[2 * i + 1],
                                       row_stride=strides[2 * i], col_stride=strides[2 * i + 1])
               for i in range(3))
    if op == FORWARD:
        p = problems.linear_forward_problem(m, n, k, x, w, POINTERS[6], POINTERS[7], *OUT)
    elif op == INPUT_GRAD:
        p = problems.linear_input_grad_problem(m, n, k, g, x, w, *OUT)
    else:
        p = problems.linear_weight_grad_problem(m, n, k, g, x, w, *OUT)
    recorder = Recorder()
    problem = OP_PROBLEMS["interval_linear" + OPS[op]]
    problems.run_tile_problem(recorder, problem, ELEMENT_OF[dtype], p, nonneg, sm_count,
                              min_split_depth)
    return recorder.launches, problem.struct


LINEAR = [(1, 1, 1), (3, 5, 17), (70, 65, 33), (130, 2, 20), (0, 4, 5), (3, 4, 0), (5, 3, 2000),
          (2, 1, 100_000), (600, 600, 3), (64, 64, 1023)]


@pytest.mark.parametrize("plan", PLANS, ids=[f"sm{s}-split{d}" for s, d in PLANS])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("op", list(OPS), ids=["forward", "input_grad", "weight_grad"])
def test_linear_launches_match_cxx(kernels, op, dtype, plan):
    emulated = kernels.with_plan(*plan)
    for i, (m, n, k) in enumerate(LINEAR):
        strides = [n + i, 1, 1, m + 3, k, 1]  # g row-major, x column-major, w row-major
        for nonneg in (False, True):
            launches, struct = python_linear(op, dtype, nonneg, m, n, k, strides, *plan)
            expected = emulated.record_linear(op, dtype, nonneg, m, n, k, POINTERS, strides, OUT)
            assert_same_launches(launches, expected, struct)


def test_half_types_launch_like_float(kernels):
    """The half types accumulate in float: the same workspace sizes and kernels on __half /
    __nv_bfloat16 (when the emulation has them)."""
    if not kernels.has_half_types:
        pytest.skip("CUDA's cuda_fp16.h/cuda_bf16.h not found: half types are not emulated")
    emulated = kernels.with_plan(64, 16)
    for dtype in (torch.float16, torch.bfloat16):
        launches, struct = python_linear(WEIGHT_GRAD, dtype, True, 2000, 5, 3, [5, 1, 3, 1, 3, 1],
                                         64, 16)
        expected = emulated.record_linear(WEIGHT_GRAD, dtype, True, 2000, 5, 3, POINTERS,
                                          [5, 1, 3, 1, 3, 1], OUT)
        assert any(l.kind == "workspace" for l in expected)
        assert_same_launches(launches, expected, struct)


def test_splits_are_exercised(kernels):
    """The cases above cover split and unsplit plans (else the workspace path goes untested)."""
    launches, _ = python_linear(WEIGHT_GRAD, torch.float64, False, 5, 3, 2000, [3, 1, 2000, 1,
                                                                                2000, 1], 132, 512)
    assert [l.kind for l in launches] == ["tile"]
    launches, _ = python_linear(WEIGHT_GRAD, torch.float64, False, 2000, 3, 5, [3, 1, 5, 1, 5, 1],
                                132, 512)
    assert [l.kind for l in launches] == ["workspace", "tile", "reduce"]
    assert launches[0].blocks == 2 * launches[1].splits * 3 * 5 * 8


# ------------------------------------------------------------------------------ convolutions

def python_conv(transposed, op, dtype, nonneg, x_shape, w_shape, config, groups, sm_count,
                min_split_depth):
    if transposed:
        stride, padding, output_padding, dilation = config
        geo = problems.conv_transpose2d_geometry(x_shape, w_shape, stride, padding,
                                                 output_padding, groups, dilation)
        name = "interval_conv_transpose2d"
        builders = (problems.conv_transpose2d_forward_problem,
                    problems.conv_transpose2d_input_grad_problem,
                    problems.conv_transpose2d_weight_grad_problem)
    else:
        stride, padding, dilation = config
        geo = problems.conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
        name = "interval_conv2d"
        builders = (problems.conv2d_forward_problem, problems.conv2d_input_grad_problem,
                    problems.conv2d_weight_grad_problem)
    g, x, w = POINTERS[0:2], POINTERS[2:4], POINTERS[4:6]
    if op == FORWARD:
        p = builders[0](geo, x, w, POINTERS[6], POINTERS[7], *OUT)
    else:
        p = builders[op](geo, g, x, w, *OUT)
    recorder = Recorder()
    problem = OP_PROBLEMS[name + OPS[op]]
    problems.run_tile_problem(recorder, problem, ELEMENT_OF[dtype], p, nonneg, sm_count,
                              min_split_depth)
    return geo, recorder.launches, problem.struct


def check_conv(kernels, transposed, x_shape, w_shape, config, groups, plan, dtype):
    flat = [v for pair in config for v in pair]
    geometry = kernels.conv_geometry(transposed, x_shape, w_shape, flat, groups)
    emulated = kernels.with_plan(*plan)
    for op in OPS:
        for nonneg in (False, True):
            geo, launches, struct = python_conv(transposed, op, dtype, nonneg, x_shape, w_shape,
                                                config, groups, *plan)
            assert [geo.batch, geo.groups, geo.big_c, geo.big_h, geo.big_w, geo.small_c,
                    geo.small_h, geo.small_w, geo.kernel_h, geo.kernel_w, geo.stride_h,
                    geo.stride_w, geo.pad_h, geo.pad_w, geo.dil_h, geo.dil_w] == geometry
            expected = emulated.record_conv(transposed, op, dtype, nonneg, geometry, POINTERS,
                                            OUT)
            assert_same_launches(launches, expected, struct)


CONV2D = [  # x, w, (stride, padding, dilation), groups
    ((2, 3, 5, 6), (4, 3, 3, 3), ((1, 1), (1, 1), (1, 1)), 1),
    ((1, 4, 7, 5), (6, 2, 3, 2), ((2, 1), (0, 1), (1, 2)), 2),
    ((2, 6, 6, 6), (6, 2, 3, 3), ((2, 2), (1, 1), (1, 1)), 3),
    ((2, 2, 1, 7), (3, 2, 1, 3), ((2, 2), (0, 1), (1, 2)), 1),  # a stride phase without pixels
    ((0, 2, 4, 4), (3, 2, 3, 3), ((1, 1), (1, 1), (1, 1)), 1),  # empty batch
    ((4, 64, 32, 32), (64, 64, 3, 3), ((1, 1), (1, 1), (1, 1)), 1),  # long depth
    ((1, 8, 40, 40), (8, 1, 5, 5), ((3, 2), (2, 2), (2, 1)), 8),
]
CONV_TRANSPOSE2D = [  # x, w, (stride, padding, output_padding, dilation), groups
    ((2, 3, 4, 5), (3, 4, 3, 3), ((1, 1), (1, 1), (0, 0), (1, 1)), 1),
    ((1, 4, 3, 4), (4, 3, 3, 2), ((2, 2), (1, 0), (1, 1), (1, 1)), 2),
    ((2, 6, 3, 3), (6, 2, 3, 3), ((2, 3), (0, 1), (1, 2), (1, 1)), 3),
    ((2, 2, 3, 4), (2, 3, 3, 3), ((2, 2), (1, 2), (1, 0), (2, 2)), 1),  # phases without taps
    ((4, 64, 16, 16), (64, 32, 2, 2), ((2, 2), (0, 0), (0, 0), (1, 1)), 1),
    ((1, 6, 9, 7), (6, 1, 4, 3), ((3, 4), (1, 2), (2, 1), (1, 2)), 6),
]


@pytest.mark.parametrize("plan", PLANS[:2], ids=[f"sm{s}-split{d}" for s, d in PLANS[:2]])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", range(len(CONV2D)))
def test_conv2d_launches_match_cxx(kernels, case, dtype, plan):
    x_shape, w_shape, config, groups = CONV2D[case]
    check_conv(kernels, False, x_shape, w_shape, config, groups, plan, dtype)


@pytest.mark.parametrize("plan", PLANS[:2], ids=[f"sm{s}-split{d}" for s, d in PLANS[:2]])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", range(len(CONV_TRANSPOSE2D)))
def test_conv_transpose2d_launches_match_cxx(kernels, case, dtype, plan):
    x_shape, w_shape, config, groups = CONV_TRANSPOSE2D[case]
    check_conv(kernels, True, x_shape, w_shape, config, groups, plan, dtype)


@st.composite
def conv_cases(draw, transposed):
    groups = draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    batch, c_in, c_out = draw(st.integers(0, 3)), groups * draw(st.integers(1, 3)), \
        groups * draw(st.integers(1, 3))
    plan = draw(st.sampled_from(PLANS))
    if transposed:
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                               for s, d in zip(stride, dilation))
        out = [problems.conv_transpose_output_size(size[i], kernel[i], stride[i], padding[i],
                                                   output_padding[i], dilation[i])
               for i in range(2)]
        if min(out) < 1:
            padding = (0, 0)
        return ((batch, c_in, *size), (c_in, c_out // groups, *kernel),
                (stride, padding, output_padding, dilation), groups, plan)
    size = tuple(max(s, d * (k - 1) + 1 - 2 * p)
                 for s, d, k, p in zip(size, dilation, kernel, padding))
    return ((batch, c_in, *size), (c_out, c_in // groups, *kernel), (stride, padding, dilation),
            groups, plan)


@given(case=conv_cases(False))
def test_random_conv2d_launches_match_cxx(kernels, case):
    x_shape, w_shape, config, groups, plan = case
    check_conv(kernels, False, x_shape, w_shape, config, groups, plan, torch.float32)


@given(case=conv_cases(True))
def test_random_conv_transpose2d_launches_match_cxx(kernels, case):
    x_shape, w_shape, config, groups, plan = case
    check_conv(kernels, True, x_shape, w_shape, config, groups, plan, torch.float64)


# --------------------------------------------------------------------------- struct mirrors

def test_mirror_defaults_match_cxx(kernels):
    """A freshly built problem equals C++'s (default member initialisers included): the
    unused own operand and bias of a conv2d forward are null, bias_inner/_channels set."""
    _, launches, struct = python_conv(False, FORWARD, torch.float32, False, (1, 1, 1, 1),
                                      (1, 1, 1, 1), ((1, 1), (0, 0), (1, 1)), 1, 132, 512)
    p = struct.from_buffer_copy(launches[0].value)
    assert p.own.lo is None and p.own.hi is None
    assert (p.out.split_lo, p.out.bias_inner, p.out.bias_channels, p.shape.splits) == \
        (None, 1, 1, 1)


def test_c_integer_semantics():
    assert [problems.c_div(a, b) for a, b in [(7, 2), (-7, 2), (7, -2), (-1, 2)]] == \
        [3, -3, -3, 0]
    assert [problems.c_mod(a, b) for a, b in [(7, 3), (-7, 3), (-1, 2), (0, 5)]] == \
        [1, -1, -1, 0]
