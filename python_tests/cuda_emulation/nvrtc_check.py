"""Compiles the kernel headers of csrc/kernels/ with NVRTC (no GPU needed), as the planned runtime
compilation backend will: proof that they need neither torch nor host-only code."""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path
from typing import List, Optional, Sequence

from .emulated_ops import CSRC, cuda_include

HEADERS = ["kernels/linear_problems.cuh", "kernels/conv_problems.cuh"]


def find_nvrtc() -> Optional[Path]:
    """libnvrtc from the CUDA toolkit or from the nvidia-cuda-nvrtc wheel that torch depends on."""
    folders = []
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            folders += [Path(home) / "lib64", Path(home) / "lib"]
    try:
        import nvidia  # the namespace package of NVIDIA's wheels

        for root in nvidia.__path__:
            folders += [Path(p) for p in glob.glob(os.path.join(root, "*", "lib"))]
    except ImportError:
        pass
    for folder in folders:
        found = sorted(folder.glob("libnvrtc.so*"))
        found = [f for f in found if ".alt." not in f.name]
        if found:
            return found[0]
    return None


def _load(library: Path) -> ctypes.CDLL:
    # NVRTC opens its builtins library by name; load it first from the same folder.
    for builtins in sorted(library.parent.glob("libnvrtc-builtins.so*")):
        if ".alt." not in builtins.name:
            ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
            break
    return ctypes.CDLL(str(library))


def compile_kernels(names: Sequence[str], arch: str = "compute_80") -> List[str]:
    """Compiles the kernel headers to PTX for `arch`, instantiating the kernels named (C++ name
    expressions); returns their mangled names. Raises RuntimeError with NVRTC's log on failure."""
    library = find_nvrtc()
    if library is None:
        raise RuntimeError("libnvrtc not found")
    nvrtc = _load(library)
    program = ctypes.c_void_p()
    source = "".join(f'#include "{h}"\n' for h in HEADERS).encode()
    status = nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, b"inn_kernels.cu", 0, None,
                                      None)
    if status != 0:
        raise RuntimeError(f"nvrtcCreateProgram failed ({status})")
    try:
        for name in names:
            nvrtc.nvrtcAddNameExpression(program, name.encode())
        options = [b"--std=c++17", f"-I{CSRC}".encode(), f"--gpu-architecture={arch}".encode()]
        include = cuda_include()
        if include is not None:
            options.append(f"-I{include}".encode())
        status = nvrtc.nvrtcCompileProgram(program, len(options),
                                           (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
        if status != 0:
            raise RuntimeError(f"NVRTC failed ({status}):\n{log.value.decode(errors='replace')}")
        lowered = []
        for name in names:
            mangled = ctypes.c_char_p()
            nvrtc.nvrtcGetLoweredName(program, name.encode(), ctypes.byref(mangled))
            lowered.append(mangled.value.decode() if mangled.value else "")
        return lowered
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
