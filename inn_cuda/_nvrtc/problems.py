"""Host side of the tile kernels for the NVRTC backend, ported from C++: ctypes mirrors of the
problem structs that the kernels take by value (``csrc/kernels/*.cuh``), the problem builders and
conv geometry (``linear_problems.cuh``, ``conv_problems.cuh``), and the launch plan and launch
sequence (``tile_runner.cuh``).

The compiled launchers run the C++ originals on the host; without a CUDA compiler this port does
their job, so it must stay a line-by-line translation. ``python_tests/test_nvrtc_plan.py`` checks
it against the C++ (compiled with g++ in the CUDA emulation harness): the same launches in the same
order, with byte-identical problem structs. Every runtime program also static_asserts the struct
sizes written here (:func:`layout_asserts`), so a field added in C++ but not here fails to compile
instead of launching with a shifted struct.

No torch and no CUDA here: pointers are plain integers, the runtime is passed in.
"""

from __future__ import annotations

import ctypes
from ctypes import c_int, c_longlong, c_void_p
from dataclasses import dataclass
from typing import Dict, List, Protocol, Tuple

index_t = c_longlong

# tile_runner.cuh / interval_tile_kernel.cuh constants
TILE_ROWS = 64
TILE_COLS = 64
TILE_DEPTH = 16
TILE_THREADS = 256
MIN_SPLIT_DEPTH = 512
MAX_SPLITS = 64
TARGET_BLOCKS_PER_SM = 2
MAX_GRID_X = 0x7FFFFFFF

# interval_tile_kernel.cuh: TermKind
FORWARD, INPUT_GRAD, WEIGHT_GRAD = "kForward", "kInputGrad", "kWeightGrad"


# ------------------------------------------------------------------------- C integer semantics

def c_div(a: int, b: int) -> int:
    """C++ integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def c_mod(a: int, b: int) -> int:
    """C++ remainder (takes the sign of the dividend)."""
    return a - b * c_div(a, b)


def ceil_div(a: int, b: int) -> int:
    return c_div(a + b - 1, b)


# -------------------------------------------------------------------------------- struct mirrors

class _Struct(ctypes.Structure):
    """A mirror of a C++ struct: the C++ default member initialisers live in ``_defaults``;
    nested mirrors start from their own defaults."""

    _defaults: Dict[str, int] = {}

    def __init__(self, **values):
        super().__init__()
        for cls in reversed(type(self).__mro__):
            for name, kind in cls.__dict__.get("_fields_", ()):
                if isinstance(kind, type) and issubclass(kind, _Struct):
                    setattr(self, name, kind())
            for name, value in cls.__dict__.get("_defaults", {}).items():
                setattr(self, name, value)
        for name, value in values.items():
            setattr(self, name, value)


class TileShape(_Struct):
    _fields_ = [("rows", index_t), ("cols", index_t), ("depth", index_t), ("groups", c_int),
                ("row_tiles", index_t), ("col_tiles", index_t), ("splits", c_int),
                ("chunk", index_t)]
    _defaults = {"groups": 1, "splits": 1}


class TileOutput(_Struct):
    """TileOutput<T>: the layout does not depend on T (pointers only)."""
    _fields_ = [("lo", c_void_p), ("hi", c_void_p), ("split_lo", c_void_p), ("split_hi", c_void_p),
                ("bias_lo", c_void_p), ("bias_hi", c_void_p), ("numel", index_t),
                ("bias_inner", index_t), ("bias_channels", index_t), ("run_if", c_void_p)]
    _defaults = {"bias_inner": 1, "bias_channels": 1}


class IntervalPointer(_Struct):
    _fields_ = [("lo", c_void_p), ("hi", c_void_p)]


class IntervalMatrix(_Struct):
    _fields_ = [("lo", c_void_p), ("hi", c_void_p), ("row_stride", index_t),
                ("col_stride", index_t)]


class ConvGeometry(_Struct):
    _fields_ = [("batch", index_t), ("groups", c_int), ("big_c", c_int), ("big_h", c_int),
                ("big_w", c_int), ("small_c", c_int), ("small_h", c_int), ("small_w", c_int),
                ("kernel_h", c_int), ("kernel_w", c_int), ("stride_h", c_int),
                ("stride_w", c_int), ("pad_h", c_int), ("pad_w", c_int), ("dil_h", c_int),
                ("dil_w", c_int)]
    _defaults = {"groups": 1, "kernel_h": 1, "kernel_w": 1, "stride_h": 1, "stride_w": 1,
                 "dil_h": 1, "dil_w": 1}

    # the INN_HD helpers of ConvGeometry
    def big_per_group(self) -> int:
        return c_div(self.big_c, self.groups)

    def small_per_group(self) -> int:
        return c_div(self.small_c, self.groups)

    def taps(self) -> int:
        return self.kernel_h * self.kernel_w

    def big_pixels(self) -> int:
        return self.big_h * self.big_w

    def small_pixels(self) -> int:
        return self.small_h * self.small_w


class TileProblem(_Struct):
    _fields_ = [("shape", TileShape), ("out", TileOutput)]


class LinearForward(TileProblem):
    _fields_ = [("x", IntervalMatrix), ("w", IntervalMatrix)]


class LinearInputGrad(TileProblem):
    _fields_ = [("grad", IntervalMatrix), ("x", IntervalMatrix), ("w", IntervalMatrix)]


class LinearWeightGrad(TileProblem):
    _fields_ = [("grad", IntervalMatrix), ("x", IntervalMatrix), ("w", IntervalMatrix)]


class ConvSmallOut(TileProblem):
    _fields_ = [("geo", ConvGeometry), ("weight", IntervalPointer), ("big", IntervalPointer),
                ("own", IntervalPointer)]


class ConvBigOut(TileProblem):
    _fields_ = [("geo", ConvGeometry), ("weight", IntervalPointer), ("small", IntervalPointer),
                ("own", IntervalPointer)]


class ConvWeightOut(TileProblem):
    _fields_ = [("geo", ConvGeometry), ("small", IntervalPointer), ("big", IntervalPointer),
                ("own", IntervalPointer)]


def leaf_fields(struct: type, base: int = 0) -> List[Tuple[str, int, int]]:
    """(dotted name, offset, size) of every scalar field of a mirror, in layout order: the bytes
    that are not padding."""
    leaves = []
    for cls in reversed(struct.__mro__):
        for name, kind in cls.__dict__.get("_fields_", ()):
            offset = getattr(struct, name).offset + base
            if isinstance(kind, type) and issubclass(kind, _Struct):
                leaves += [(f"{name}.{n}", o, s) for n, o, s in leaf_fields(kind, offset)]
            else:
                leaves.append((name, offset, ctypes.sizeof(kind)))
    return leaves


# ----------------------------------------------------------------------------- element types

@dataclass(frozen=True)
class Element:
    """A kernel element type: its C++ name and the size of its accumulator (acc_t<T>)."""
    cxx: str
    acc_bytes: int


ELEMENTS = {
    "float32": Element("float", 4),
    "float64": Element("double", 8),
    "float16": Element("__half", 4),
    "bfloat16": Element("__nv_bfloat16", 4),
}


# ----------------------------------------------------------------------------- problem types

@dataclass(frozen=True)
class ProblemType:
    """One tile problem type: its C++ template ({T}: the element type), the header declaring it
    and its mirror."""
    cxx: str
    header: str
    struct: type

    def name(self, element: Element) -> str:
        return "inn::kernels::" + self.cxx.format(T=element.cxx)

    def tile_kernel(self, element: Element, nonneg: bool) -> str:
        return (f"inn::kernels::interval_tile_kernel<{self.name(element)}, "
                f"{'true' if nonneg else 'false'}>")


def reduce_kernel(element: Element) -> str:
    return f"inn::kernels::split_reduce_kernel<{element.cxx}>"


def _conv(template: str, struct: type) -> ProblemType:
    return ProblemType(template, "kernels/conv_problems.cuh", struct)


#: op name -> the problem type its launcher runs (csrc/cuda/*.cu)
OP_PROBLEMS: Dict[str, ProblemType] = {
    "interval_linear": ProblemType("LinearForward<{T}>", "kernels/linear_problems.cuh",
                                   LinearForward),
    "interval_linear_backward_input": ProblemType("LinearInputGrad<{T}>",
                                                  "kernels/linear_problems.cuh",
                                                  LinearInputGrad),
    "interval_linear_backward_weight": ProblemType("LinearWeightGrad<{T}>",
                                                   "kernels/linear_problems.cuh",
                                                   LinearWeightGrad),
    "interval_conv2d": _conv("ConvSmallOut<{T}, inn::kernels::TermKind::kForward>",
                             ConvSmallOut),
    "interval_conv2d_backward_input": _conv("ConvBigOut<{T}, inn::kernels::TermKind::kInputGrad>",
                                            ConvBigOut),
    "interval_conv2d_backward_weight": _conv("ConvWeightOut<{T}, true>", ConvWeightOut),
    "interval_conv_transpose2d": _conv("ConvBigOut<{T}, inn::kernels::TermKind::kForward>",
                                       ConvBigOut),
    "interval_conv_transpose2d_backward_input": _conv(
        "ConvSmallOut<{T}, inn::kernels::TermKind::kInputGrad>", ConvSmallOut),
    "interval_conv_transpose2d_backward_weight": _conv("ConvWeightOut<{T}, false>",
                                                       ConvWeightOut),
}


def layout_asserts(problem: ProblemType, element: Element) -> str:
    """C++ static_asserts that the mirrors of this problem have the C++ sizes."""
    checks = [(problem.name(element), problem.struct),
              (f"inn::kernels::TileOutput<{element.cxx}>", TileOutput),
              ("inn::kernels::TileShape", TileShape)]
    return "".join(
        f'static_assert(sizeof({name}) == {ctypes.sizeof(struct)} && alignof({name}) == '
        f'{ctypes.alignment(struct)}, "{name}: the ctypes mirror in inn_cuda/_nvrtc/problems.py '
        f'does not match the C++ struct");\n' for name, struct in checks)


# ------------------------------------------------------------------------- linear builders

def linear_forward_problem(M, N, K, x: IntervalMatrix, w: IntervalMatrix, bias_lo, bias_hi,
                           y_lo, y_hi) -> LinearForward:
    p = LinearForward()
    p.shape.rows, p.shape.cols, p.shape.depth = M, N, K
    p.x, p.w = x, w
    p.out.lo, p.out.hi = y_lo, y_hi
    p.out.numel = M * N
    p.out.bias_lo, p.out.bias_hi = bias_lo, bias_hi
    p.out.bias_channels = N
    return p


def linear_input_grad_problem(M, N, K, grad: IntervalMatrix, x: IntervalMatrix,
                              w: IntervalMatrix, dx_lo, dx_hi) -> LinearInputGrad:
    p = LinearInputGrad()
    p.shape.rows, p.shape.cols, p.shape.depth = M, K, N
    p.grad, p.x, p.w = grad, x, w
    p.out.lo, p.out.hi = dx_lo, dx_hi
    p.out.numel = M * K
    return p


def linear_weight_grad_problem(M, N, K, grad: IntervalMatrix, x: IntervalMatrix,
                               w: IntervalMatrix, dw_lo, dw_hi) -> LinearWeightGrad:
    p = LinearWeightGrad()
    p.shape.rows, p.shape.cols, p.shape.depth = N, K, M
    p.grad, p.x, p.w = grad, x, w
    p.out.lo, p.out.hi = dw_lo, dw_hi
    p.out.numel = N * K
    return p


# --------------------------------------------------------------------------- conv geometry

def conv_output_size(size, kernel, stride, padding, dilation) -> int:
    return c_div(size + 2 * padding - dilation * (kernel - 1) - 1, stride) + 1


def conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation) -> int:
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _set_kernel_config(geo: ConvGeometry, w, stride, padding, dilation, groups) -> None:
    geo.groups = groups
    geo.kernel_h, geo.kernel_w = w[2], w[3]
    geo.stride_h, geo.stride_w = stride
    geo.pad_h, geo.pad_w = padding
    geo.dil_h, geo.dil_w = dilation


def conv2d_geometry(x, w, stride, padding, dilation, groups) -> ConvGeometry:
    """x (N, C, H, W) is the big image, w (C_out, C / groups, kh, kw), y the small one."""
    geo = ConvGeometry()
    _set_kernel_config(geo, w, stride, padding, dilation, groups)
    geo.batch = x[0]
    geo.big_c, geo.big_h, geo.big_w = x[1], x[2], x[3]
    geo.small_c = w[0]
    geo.small_h = conv_output_size(x[2], w[2], stride[0], padding[0], dilation[0])
    geo.small_w = conv_output_size(x[3], w[3], stride[1], padding[1], dilation[1])
    return geo


def conv_transpose2d_geometry(x, w, stride, padding, output_padding, groups,
                              dilation) -> ConvGeometry:
    """x (N, C_in, H, W) is the small image, w (C_in, C_out / groups, kh, kw), y the big one."""
    geo = ConvGeometry()
    _set_kernel_config(geo, w, stride, padding, dilation, groups)
    geo.batch = x[0]
    geo.small_c, geo.small_h, geo.small_w = x[1], x[2], x[3]
    geo.big_c = w[1] * groups
    geo.big_h = conv_transpose_output_size(x[2], w[2], stride[0], padding[0], output_padding[0],
                                           dilation[0])
    geo.big_w = conv_transpose_output_size(x[3], w[3], stride[1], padding[1], output_padding[1],
                                           dilation[1])
    return geo


# ConvBigOut's stride phases (INN_HD functions of conv_problems.cuh, used by its builder)

def taps_of_phase(phase, kernel, stride, dilation) -> Tuple[int, int, int]:
    """(first, step, count): the kernel taps k with k * dilation = phase (mod stride)."""
    step = 1
    while c_mod(step * dilation, stride) != 0:
        step += 1
    first = 0
    while first < step and c_mod(first * dilation, stride) != phase:
        first += 1
    if first == step or first >= kernel:
        return 0, step, 0
    return first, step, c_div(kernel - first + step - 1, step)


def pixels_of_phase(phase, size, stride, pad) -> Tuple[int, int]:
    """(first, count): the big pixels b = first + i * stride with (b + pad) % stride = phase."""
    first = c_mod(c_mod(phase - pad, stride) + stride, stride)
    return first, (c_div(size - first + stride - 1, stride) if first < size else 0)


def _big_out_extents(geo: ConvGeometry, phase: int) -> Tuple[int, int]:
    """ConvBigOut::cols and ::depth of the context of block group `phase` (group 0)."""
    phases = geo.stride_h * geo.stride_w
    phase = c_mod(phase, phases)
    phase_h, phase_w = c_div(phase, geo.stride_w), c_mod(phase, geo.stride_w)
    taps_h = taps_of_phase(phase_h, geo.kernel_h, geo.stride_h, geo.dil_h)
    taps_w = taps_of_phase(phase_w, geo.kernel_w, geo.stride_w, geo.dil_w)
    rows = pixels_of_phase(phase_h, geo.big_h, geo.stride_h, geo.pad_h)
    cols = pixels_of_phase(phase_w, geo.big_w, geo.stride_w, geo.pad_w)
    return geo.batch * rows[1] * cols[1], geo.small_per_group() * taps_h[2] * taps_w[2]


# ---------------------------------------------------------------------------- conv builders

def _conv_problem(struct, geo: ConvGeometry, rows, cols, depth):
    p = struct()
    p.geo = geo
    p.shape.rows, p.shape.cols, p.shape.depth = rows, cols, depth
    p.shape.groups = geo.groups
    p.out.numel = geo.groups * rows * cols
    return p


def _pointer(pair) -> IntervalPointer:
    return pair if isinstance(pair, IntervalPointer) else IntervalPointer(lo=pair[0], hi=pair[1])


def conv_small_out_problem(geo, weight, big, own, out_lo, out_hi) -> ConvSmallOut:
    p = _conv_problem(ConvSmallOut, geo, geo.small_per_group(), geo.batch * geo.small_pixels(),
                      geo.big_per_group() * geo.taps())
    p.weight, p.big, p.own = _pointer(weight), _pointer(big), _pointer(own)
    p.out.lo, p.out.hi = out_lo, out_hi
    p.out.bias_inner = geo.small_pixels()
    p.out.bias_channels = geo.small_c
    return p


def conv_big_out_problem(geo, weight, small, own, out_lo, out_hi) -> ConvBigOut:
    p = _conv_problem(ConvBigOut, geo, geo.big_per_group(), 0, 0)
    # one block group per (group, stride phase); the shape holds the largest phase's extents
    phases = geo.stride_h * geo.stride_w
    p.shape.groups = geo.groups * phases
    for phase in range(phases):
        cols, depth = _big_out_extents(geo, phase)
        p.shape.cols = max(p.shape.cols, cols)
        p.shape.depth = max(p.shape.depth, depth)
    p.out.numel = geo.batch * geo.big_c * geo.big_pixels()
    p.weight, p.small, p.own = _pointer(weight), _pointer(small), _pointer(own)
    p.out.lo, p.out.hi = out_lo, out_hi
    p.out.bias_inner = geo.big_pixels()
    p.out.bias_channels = geo.big_c
    return p


def conv_weight_out_problem(geo, small, big, weight, out_lo, out_hi) -> ConvWeightOut:
    p = _conv_problem(ConvWeightOut, geo, geo.small_per_group(), geo.big_per_group() * geo.taps(),
                      geo.batch * geo.small_pixels())
    p.small, p.big, p.own = _pointer(small), _pointer(big), _pointer(weight)
    p.out.lo, p.out.hi = out_lo, out_hi
    return p


# The six conv ops. conv2d: big = x, small = y; conv_transpose2d: big = y, small = x.
# Operands are (lo, hi) pointer pairs; `nothing` stands for an unused IntervalPointer.

_NOTHING = (None, None)


def conv2d_forward_problem(geo, x, w, bias_lo, bias_hi, y_lo, y_hi) -> ConvSmallOut:
    p = conv_small_out_problem(geo, w, x, _NOTHING, y_lo, y_hi)
    p.out.bias_lo, p.out.bias_hi = bias_lo, bias_hi
    return p


def conv2d_input_grad_problem(geo, grad, x, w, dx_lo, dx_hi) -> ConvBigOut:
    return conv_big_out_problem(geo, w, grad, x, dx_lo, dx_hi)


def conv2d_weight_grad_problem(geo, grad, x, w, dw_lo, dw_hi) -> ConvWeightOut:
    return conv_weight_out_problem(geo, grad, x, w, dw_lo, dw_hi)


def conv_transpose2d_forward_problem(geo, x, w, bias_lo, bias_hi, y_lo, y_hi) -> ConvBigOut:
    p = conv_big_out_problem(geo, w, x, _NOTHING, y_lo, y_hi)
    p.out.bias_lo, p.out.bias_hi = bias_lo, bias_hi
    return p


def conv_transpose2d_input_grad_problem(geo, grad, x, w, dx_lo, dx_hi) -> ConvSmallOut:
    return conv_small_out_problem(geo, w, grad, x, dx_lo, dx_hi)


def conv_transpose2d_weight_grad_problem(geo, grad, x, w, dw_lo, dw_hi) -> ConvWeightOut:
    return conv_weight_out_problem(geo, x, grad, w, dw_lo, dw_hi)


# ------------------------------------------------------------------- launch plan and sequence

def plan_tiles(shape: TileShape, sm_count: int, min_split_depth: int = MIN_SPLIT_DEPTH) -> None:
    """Fills the tile counts and the depth slicing of `shape` (rows, cols, depth, groups given):
    the depth is split only when the tiles alone leave SMs idle, each slice keeping at least
    min_split_depth terms."""
    shape.row_tiles = ceil_div(shape.rows, TILE_ROWS)
    shape.col_tiles = ceil_div(shape.cols, TILE_COLS)
    tiles = shape.row_tiles * shape.col_tiles * shape.groups
    target = sm_count * TARGET_BLOCKS_PER_SM
    splits = 1
    if 0 < tiles < sm_count and min_split_depth > 0 and shape.depth >= 2 * min_split_depth:
        splits = min(ceil_div(target, tiles), c_div(shape.depth, min_split_depth), MAX_SPLITS)
    shape.chunk = ceil_div(ceil_div(shape.depth, splits), TILE_DEPTH) * TILE_DEPTH
    shape.splits = ceil_div(shape.depth, shape.chunk) if shape.chunk > 0 else 1


def reduce_blocks(numel: int, sm_count: int) -> int:
    return min(ceil_div(numel, TILE_THREADS), sm_count * 8)


class Runtime(Protocol):
    """What run_tile_problem launches through (tile_runner.cuh's Runtime)."""

    def launch_tile(self, problem: ProblemType, element: Element, nonneg: bool, blocks: int,
                    splits: int, p: TileProblem) -> None: ...

    def launch_reduce(self, element: Element, blocks: int, out: TileOutput,
                      splits: int) -> None: ...

    def workspace(self, nbytes: int) -> int: ...


def run_tile_problem(rt: Runtime, problem: ProblemType, element: Element, p: TileProblem,
                     input_nonneg: bool, sm_count: int,
                     min_split_depth: int = MIN_SPLIT_DEPTH) -> None:
    """Plans and launches one problem: nothing for an empty output; a zero depth still launches,
    so the output is the bias (or zero)."""
    if p.out.numel == 0:
        return
    plan_tiles(p.shape, sm_count, min_split_depth)
    blocks = p.shape.row_tiles * p.shape.col_tiles * p.shape.groups
    if blocks > MAX_GRID_X:
        raise RuntimeError("inn_cuda: the output has too many tiles for one kernel launch")
    if p.shape.splits > 1:
        slice_ = p.shape.splits * p.out.numel
        partial = rt.workspace(2 * slice_ * element.acc_bytes)
        p.out.split_lo = partial
        p.out.split_hi = partial + slice_ * element.acc_bytes
    rt.launch_tile(problem, element, bool(input_nonneg), blocks, p.shape.splits, p)
    if p.shape.splits > 1:
        rt.launch_reduce(element, reduce_blocks(p.out.numel, sm_count), p.out, p.shape.splits)
