"""Loads compiled programs onto a GPU and launches their kernels on torch's current CUDA stream,
through CuPy's CUDA driver bindings (``cupy_backends.cuda.api``).

A program is compiled (or read from the disk cache) and loaded once per process and device, the
first time one of its kernels runs there. Kernels take their problem struct by value, so a launch
passes the address of the ctypes mirror (inn_cuda/_nvrtc/problems.py) as the kernel parameter;
the driver copies it at launch.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Dict, Iterator, List, Tuple

import torch

from . import cache, compiler, problems, sources
from .compiler import Program

_lock = threading.Lock()
#: (device index, program) -> kernel name expression -> CUfunction
_loaded: Dict[Tuple[int, Program], Dict[str, int]] = {}


def _driver():
    from cupy_backends.cuda.api import driver

    return driver


@contextlib.contextmanager
def on_device(index: int) -> Iterator[None]:
    """torch's device guard, plus the device's primary context made current on this thread for
    the driver calls (a thread torch has not used the device from, such as an autograd worker,
    may have none)."""
    from cupy_backends.cuda.api import runtime as cuda_runtime

    with torch.cuda.device(index):
        cuda_runtime.setDevice(index)
        yield


def _load(index: int, program: Program) -> Dict[str, int]:
    source_root = sources.kernel_source_root()
    include_dir = sources.cuda_include_dir()
    if source_root is None or include_dir is None:  # checked by _nvrtc.status() at import
        raise RuntimeError("inn_cuda: the NVRTC backend lost its kernel sources or CUDA headers "
                           "since import")
    target = compiler.target_for(torch.cuda.get_device_capability(index),
                                 compiler.nvrtc().getSupportedArchs())
    compiled = cache.compiled_program(program, target, source_root=source_root,
                                      include_dir=include_dir)
    # the driver reads PTX as a NUL-terminated string
    image = compiled.binary + b"\0" if compiled.kind == "ptx" else compiled.binary
    driver = _driver()
    module = driver.moduleLoadData(image)
    return {name: driver.moduleGetFunction(module, compiled.lowered[name])
            for name in program.names}


def kernels(index: int, program: Program) -> Dict[str, int]:
    """The program's kernels on device `index` (call under on_device(index))."""
    key = (index, program)
    found = _loaded.get(key)
    if found is None:
        with _lock:
            found = _loaded.get(key)
            if found is None:
                found = _loaded[key] = _load(index, program)
    return found


class TorchStreamRuntime:
    """The Runtime of problems.run_tile_problem on one CUDA device: launches on torch's current
    stream there, workspaces from torch's caching allocator (freed with the runtime; the allocator
    hands their memory only to later work on this stream, so the kernels queued still see it)."""

    def __init__(self, like: torch.Tensor):
        self.like = like
        self.index = like.device.index
        self.stream = torch.cuda.current_stream(self.index).cuda_stream
        self.sm_count = torch.cuda.get_device_properties(self.index).multi_processor_count
        self._workspaces: List[torch.Tensor] = []
        self._program: Program = None  # set by launch_tile; its program has the reduction too

    def launch_tile(self, problem: problems.ProblemType, element: problems.Element, nonneg: bool,
                    blocks: int, splits: int, p: problems.TileProblem) -> None:
        self._program = Program(problem, element)
        function = kernels(self.index, self._program)[problem.tile_kernel(element, nonneg)]
        self._launch(function, blocks, splits, [p])

    def launch_reduce(self, element: problems.Element, blocks: int, out: problems.TileOutput,
                      splits: int) -> None:
        function = kernels(self.index, self._program)[problems.reduce_kernel(element)]
        self._launch(function, blocks, 1, [out, ctypes.c_int(splits)])

    def workspace(self, nbytes: int) -> int:
        self._workspaces.append(torch.empty(nbytes, dtype=torch.uint8, device=self.like.device))
        return self._workspaces[-1].data_ptr()

    def _launch(self, function: int, grid_x: int, grid_y: int, args) -> None:
        params = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        _driver().launchKernel(function, grid_x, grid_y, 1, problems.TILE_THREADS, 1, 1, 0,
                               self.stream, ctypes.addressof(params), 0)
