"""Builds the CPU emulation of the CUDA kernels (emulated_ops.cpp + the kernel headers in
csrc/kernels/) with g++ and wraps its entry points in functions with the signatures of
``inn_cuda.reference.OPS``, on CPU tensors.

The wrappers prepare operands the way the CUDA launchers in csrc/cuda/ do (contiguous conv
operands; strided 2-D linear operands), so a test that passes here exercises the same problem
builders, launch plan and kernel code that a GPU build runs.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CSRC = ROOT / "csrc"
SOURCES = [HERE / "emulated_ops.cpp", HERE / "cuda_emulation.h", CSRC / "interval_math.h",
           CSRC / "conv_geometry.h", *sorted((CSRC / "kernels").glob("*.cuh"))]
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
FORWARD, INPUT_GRAD, WEIGHT_GRAD = 0, 1, 2


def compiler() -> Optional[str]:
    return shutil.which(os.environ.get("CXX", "g++"))


def cuda_include() -> Optional[Path]:
    """CUDA's include folder, for its fp16/bf16 headers (half types are emulated only with it)."""
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "include" / "cuda_fp16.h").exists():
            return Path(home) / "include"
    return None


def build(sanitize: Optional[str] = None) -> Path:
    """Compiles the emulation into a shared library, cached in the temp folder by source hash;
    ``sanitize``: "address" or "thread" builds it under that GCC sanitizer (the process must
    preload the sanitizer's runtime, see test_cuda_emulated.py). Sanitized builds hold float32
    only: the other dtypes' kernels index memory and synchronise exactly as the float32 ones do,
    and every instantiation adds to a build that takes minutes under a sanitizer."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++) found")
    include = cuda_include()
    command = [cxx, "-O1", "-std=c++20", "-pthread", "-shared", "-fPIC", "-Wall", "-Wextra",
               "-Werror", "-Wno-unknown-pragmas", f"-I{CSRC}", f"-I{HERE}"]
    if include is not None and not sanitize:
        command += [f"-I{include}", "-DINN_KERNELS_HALF_TYPES"]
    if sanitize:
        command += [f"-fsanitize={sanitize}", "-g", "-fno-omit-frame-pointer",
                    "-DINN_EMULATION_FLOAT32_ONLY"]
    digest = hashlib.sha256(" ".join(command).encode())
    for source in SOURCES:
        digest.update(source.read_bytes())
    folder = Path(tempfile.gettempdir()) / "inn_cuda_emulation"
    library = folder / f"emulated_ops_{digest.hexdigest()[:16]}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    # One compiler run per library: a second process (a pytest-xdist worker, another session)
    # waits for the first instead of compiling the same minutes-long build beside it.
    with open(library.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not library.exists():
            partial = library.with_suffix(f".{os.getpid()}.tmp")
            result = subprocess.run(command + [str(HERE / "emulated_ops.cpp"), "-o", str(partial)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"compiling the CUDA emulation failed:\n{result.stderr}")
            os.replace(partial, library)
    return library


def _pointers(tensors: Sequence[Optional[torch.Tensor]]):
    array = (ctypes.c_void_p * len(tensors))()
    for i, t in enumerate(tensors):
        array[i] = None if t is None else t.data_ptr()
    return array


def _same_strides(lo: torch.Tensor, hi: torch.Tensor):
    """Both bounds share one set of strides in a kernel's operand view."""
    return (lo, hi) if lo.stride() == hi.stride() else (lo.contiguous(), hi.contiguous())


def _as_matrix(t: torch.Tensor, cols: int) -> torch.Tensor:
    rows = 1
    for size in t.shape[:-1]:
        rows *= size
    return t.reshape(rows, cols)


class EmulatedKernels:
    """The CUDA kernels, run on the CPU. ``sm_count`` and ``min_split_depth`` feed the launch plan
    (small values force depth splits on tiny shapes); ``with_tile`` forces a tile configuration
    (its number in tile_config.cuh's ``Tile`` order; None: the launchers' choice, choose_tile)."""

    def __init__(self, library: Path, sm_count: int = 132, min_split_depth: int = 512):
        self.lib = ctypes.CDLL(str(library))
        self.lib.emu_last_error.restype = ctypes.c_char_p
        self.sm_count = sm_count
        self.min_split_depth = min_split_depth
        self.tile: Optional[int] = None
        self.has_half_types = bool(self.lib.emu_has_half_types())

    def with_plan(self, sm_count: int, min_split_depth: int) -> "EmulatedKernels":
        return self._with(sm_count=sm_count, min_split_depth=min_split_depth)

    def with_tile(self, tile: Optional[int]) -> "EmulatedKernels":
        return self._with(tile=tile)

    def _with(self, **settings) -> "EmulatedKernels":
        other = object.__new__(EmulatedKernels)
        other.__dict__.update(self.__dict__, **settings)
        return other

    @property
    def _tile_arg(self) -> int:
        return -1 if self.tile is None else self.tile

    def tile_configs(self) -> List[Tuple[int, int, int]]:
        """(rows, cols, depth) of every tile configuration, by number (tile_config.cuh)."""
        configs = []
        for tile in range(self.lib.emu_tile_count()):
            dims = (ctypes.c_int * 3)()
            self.lib.emu_tile_dims(tile, dims)
            configs.append(tuple(dims))
        return configs

    def chosen_tile(self, rows: int, cols: int, depth: int) -> Tuple[int, int, int]:
        """(rows, cols, depth) of the configuration choose_tile picks for a problem this size."""
        tile = self.lib.emu_choose_tile(ctypes.c_longlong(rows), ctypes.c_longlong(cols),
                                        ctypes.c_longlong(depth))
        return self.tile_configs()[tile]

    def last_tile(self) -> Tuple[int, int, int]:
        """(rows, cols, depth) of the tile configuration the last kernel launch ran."""
        dims = (ctypes.c_int * 3)()
        self.lib.emu_last_tile(dims)
        return tuple(dims)

    def plan_splits(self, rows: int, cols: int, depth: int, groups: int = 1) -> int:
        """Depth slices of a tile problem under this plan and tile (tile_runner.cuh: plan_tiles)."""
        return self.lib.emu_plan_splits(ctypes.c_longlong(rows), ctypes.c_longlong(cols),
                                        ctypes.c_longlong(depth), groups, self.sm_count,
                                        ctypes.c_longlong(self.min_split_depth), self._tile_arg)

    def _check(self, status: int) -> None:
        if status != 0:
            raise RuntimeError(f"emulated launch failed: {self.lib.emu_last_error().decode()}")

    def conv_geometry(self, transposed: bool, x_shape, w_shape, config, groups) -> List[int]:
        """The launchers' ConvGeometry (16 numbers, emu_conv_geometry's order). config: stride,
        padding, dilation (conv2d); stride, padding, output_padding, dilation (transposed)."""
        return self._geometry(transposed, x_shape, w_shape, config, groups)[0]

    # ------------------------------------------------------------------------------- linear

    def _linear(self, op, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, nonneg, out_shape):
        n, k = w_lo.shape
        x_lo, x_hi = _same_strides(_as_matrix(x_lo, k), _as_matrix(x_hi, k))
        w_lo, w_hi = _same_strides(w_lo, w_hi)
        m = x_lo.shape[0]
        if g_lo is not None:
            g_lo, g_hi = _same_strides(_as_matrix(g_lo, n), _as_matrix(g_hi, n))
        strides = (ctypes.c_longlong * 6)(*(g_lo.stride() if g_lo is not None else (0, 0)),
                                          *x_lo.stride(), *w_lo.stride())
        bias = [None, None] if b_lo is None else [b_lo.contiguous(), b_hi.contiguous()]
        ins = [g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *bias]
        out_lo = torch.empty(out_shape, dtype=x_lo.dtype)
        out_hi = torch.empty(out_shape, dtype=x_lo.dtype)
        self._check(self.lib.emu_linear(
            op, DTYPE_CODES[x_lo.dtype], int(nonneg), self.sm_count,
            ctypes.c_longlong(self.min_split_depth), self._tile_arg, ctypes.c_longlong(m),
            ctypes.c_longlong(n), ctypes.c_longlong(k), _pointers(ins), strides,
            ctypes.c_void_p(out_lo.data_ptr()), ctypes.c_void_p(out_hi.data_ptr())))
        return out_lo, out_hi

    def interval_linear(self, x_lo, x_hi, w_lo, w_hi, b_lo=None, b_hi=None, input_nonneg=False):
        shape = (*x_lo.shape[:-1], w_lo.shape[0])
        return self._linear(FORWARD, None, None, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi,
                            input_nonneg, shape)

    def interval_linear_backward_input(self, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg):
        return self._linear(INPUT_GRAD, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, None, None,
                            input_nonneg, x_lo.shape)

    def interval_linear_backward_weight(self, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg):
        return self._linear(WEIGHT_GRAD, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, None, None,
                            input_nonneg, w_lo.shape)

    # ---------------------------------------------------------------------------- convolutions

    def _conv(self, transposed, op, geometry, ins, nonneg, out_shape, dtype):
        ins = [None if t is None else t.contiguous() for t in ins] + [None] * (8 - len(ins))
        out_lo = torch.empty(out_shape, dtype=dtype)
        out_hi = torch.empty(out_shape, dtype=dtype)
        self._check(self.lib.emu_conv(
            int(transposed), op, DTYPE_CODES[dtype], int(nonneg), self.sm_count,
            ctypes.c_longlong(self.min_split_depth), self._tile_arg,
            (ctypes.c_longlong * 16)(*geometry), _pointers(ins),
            ctypes.c_void_p(out_lo.data_ptr()), ctypes.c_void_p(out_hi.data_ptr())))
        return out_lo, out_hi

    def _geometry(self, transposed, x_shape, w_shape, config, groups):
        """The launchers' geometry (conv_problems.cuh) and the output shape it implies."""
        geometry = (ctypes.c_longlong * 16)()
        status = self.lib.emu_conv_geometry(int(transposed), (ctypes.c_longlong * 4)(*x_shape),
                                            (ctypes.c_longlong * 4)(*w_shape),
                                            (ctypes.c_longlong * len(config))(*config),
                                            ctypes.c_longlong(groups), geometry)
        if status != 0:
            raise ValueError(self.lib.emu_last_error().decode())
        batch, _, big_c, big_h, big_w, small_c, small_h, small_w = geometry[:8]
        y_shape = (batch, big_c, big_h, big_w) if transposed else (batch, small_c, small_h,
                                                                   small_w)
        return list(geometry), y_shape

    def _conv2d_geometry(self, x_shape, w_shape, stride, padding, dilation, groups):
        return self._geometry(False, x_shape, w_shape, (*stride, *padding, *dilation), groups)

    def interval_conv2d(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding, dilation,
                        groups, input_nonneg=False):
        geometry, y_shape = self._conv2d_geometry(x_lo.shape, w_lo.shape, stride, padding,
                                                  dilation, groups)
        return self._conv(False, FORWARD, geometry, [None, None, x_lo, x_hi, w_lo, w_hi, b_lo,
                                                     b_hi], input_nonneg, y_shape, x_lo.dtype)

    def interval_conv2d_backward_input(self, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, stride, padding,
                                       dilation, groups, input_nonneg):
        geometry, _ = self._conv2d_geometry(x_lo.shape, w_lo.shape, stride, padding, dilation,
                                            groups)
        return self._conv(False, INPUT_GRAD, geometry, [g_lo, g_hi, x_lo, x_hi, w_lo, w_hi],
                          input_nonneg, x_lo.shape, x_lo.dtype)

    def interval_conv2d_backward_weight(self, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, stride,
                                        padding, dilation, groups, input_nonneg):
        geometry, _ = self._conv2d_geometry(x_lo.shape, w_lo.shape, stride, padding, dilation,
                                            groups)
        return self._conv(False, WEIGHT_GRAD, geometry, [g_lo, g_hi, x_lo, x_hi, w_lo, w_hi],
                          input_nonneg, w_lo.shape, x_lo.dtype)

    def _conv_transpose2d_geometry(self, x_shape, w_shape, stride, padding, output_padding,
                                   groups, dilation):
        return self._geometry(True, x_shape, w_shape,
                              (*stride, *padding, *output_padding, *dilation), groups)

    def interval_conv_transpose2d(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding,
                                  output_padding, groups, dilation, input_nonneg=False):
        geometry, y_shape = self._conv_transpose2d_geometry(
            x_lo.shape, w_lo.shape, stride, padding, output_padding, groups, dilation)
        return self._conv(True, FORWARD, geometry, [None, None, x_lo, x_hi, w_lo, w_hi, b_lo,
                                                    b_hi], input_nonneg, y_shape, x_lo.dtype)

    def interval_conv_transpose2d_backward_input(self, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, stride,
                                                 padding, output_padding, groups, dilation,
                                                 input_nonneg):
        geometry, _ = self._conv_transpose2d_geometry(x_lo.shape, w_lo.shape, stride, padding,
                                                      output_padding, groups, dilation)
        return self._conv(True, INPUT_GRAD, geometry, [g_lo, g_hi, x_lo, x_hi, w_lo, w_hi],
                          input_nonneg, x_lo.shape, x_lo.dtype)

    def interval_conv_transpose2d_backward_weight(self, g_lo, g_hi, x_lo, x_hi, w_lo, w_hi,
                                                  stride, padding, output_padding, groups,
                                                  dilation, input_nonneg):
        geometry, _ = self._conv_transpose2d_geometry(x_lo.shape, w_lo.shape, stride, padding,
                                                      output_padding, groups, dilation)
        return self._conv(True, WEIGHT_GRAD, geometry, [g_lo, g_hi, x_lo, x_hi, w_lo, w_hi],
                          input_nonneg, w_lo.shape, x_lo.dtype)
