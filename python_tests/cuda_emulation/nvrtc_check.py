"""Compiles the kernel programs of the NVRTC backend (inn_cuda/_nvrtc) with NVRTC through CuPy's
bindings, as the backend does at run time but without a GPU: proof that the kernel headers need
neither torch nor host-only code, and that every instantiation the backend requests compiles."""

from __future__ import annotations

from typing import Dict, Optional

from inn_cuda._nvrtc import compiler, sources
from inn_cuda._nvrtc.compiler import Compiled, Program


def unavailable() -> Optional[str]:
    """Why NVRTC cannot be run here (None when it can)."""
    try:
        compiler.nvrtc_version()
    except Exception as error:  # noqa: BLE001 - ImportError without CuPy, others without NVRTC
        return f"NVRTC through CuPy is unavailable: {type(error).__name__}: {error}"
    if sources.kernel_source_root() is None:
        return f"kernel sources not found in {sources.searched_roots()}"
    if sources.cuda_include_dir() is None:
        return "CUDA's cuda_fp16.h/cuda_bf16.h not found"
    return None


def compile_program(program: Program, target: str) -> Compiled:
    return compiler.compile_program(program, target, sources.kernel_source_root(),
                                    sources.cuda_include_dir())


def compile_all(target: str) -> Dict[Program, Compiled]:
    """Every program of the backend (compiler.all_programs()) compiled for `target`."""
    return {program: compile_program(program, target) for program in compiler.all_programs()}
