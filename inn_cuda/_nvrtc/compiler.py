"""NVRTC compilation of the kernel programs through CuPy's NVRTC bindings
(``cupy_backends.cuda.libs.nvrtc``), which need neither a GPU nor a driver.

A program is one problem type on one element type (csrc/kernels/): its tile kernel in both modes
(general and ``input_nonneg``) and the split reduction, as the compiled launcher of that op
instantiates them. Its source includes the problem's header and static_asserts the struct sizes
that inn_cuda/_nvrtc/problems.py mirrors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from . import problems
from .problems import Element, ProblemType

# As the compiled extension's nvcc build (setup.py: -O3 -lineinfo; NVRTC optimises by default).
BASE_OPTIONS = ("--std=c++17", "-lineinfo")


@dataclass(frozen=True)
class Program:
    problem: ProblemType
    element: Element

    @property
    def names(self) -> Tuple[str, str, str]:
        """The kernels, as C++ name expressions: tile kernel (nonneg, general), reduction."""
        return (self.problem.tile_kernel(self.element, True),
                self.problem.tile_kernel(self.element, False),
                problems.reduce_kernel(self.element))

    @property
    def source(self) -> str:
        return (f"// inn_cuda NVRTC program: {self.problem.name(self.element)}\n"
                f'#include "{self.problem.header}"\n'
                + problems.layout_asserts(self.problem, self.element))

    @property
    def label(self) -> str:
        return self.problem.name(self.element).replace("inn::kernels::", "")


def all_programs() -> List[Program]:
    """Every program the backend compiles: each op's problem type on each element type."""
    return [Program(problem, element) for problem in problems.OP_PROBLEMS.values()
            for element in problems.ELEMENTS.values()]


@dataclass(frozen=True)
class Compiled:
    """A compiled program: the binary (a cubin for an sm_ target, PTX for a compute_ one) and the
    mangled name of every kernel."""
    binary: bytes
    kind: str  # "cubin" or "ptx"
    lowered: Dict[str, str]
    log: str


def nvrtc():
    """CuPy's NVRTC bindings (ImportError without CuPy)."""
    from cupy_backends.cuda.libs import nvrtc as bindings

    return bindings


def nvrtc_version() -> Tuple[int, int]:
    return tuple(nvrtc().getVersion())


def target_for(capability: Tuple[int, int], supported: Sequence[int]) -> str:
    """What to compile for a GPU of this compute capability: a cubin (sm_XY) when NVRTC knows the
    architecture; PTX for the newest older one it knows otherwise (the driver compiles it for the
    GPU when it loads it). Raises RuntimeError for a GPU older than everything NVRTC supports."""
    arch = capability[0] * 10 + capability[1]
    if arch in supported:
        return f"sm_{arch}"
    older = [a for a in supported if a < arch]
    if not older:
        raise RuntimeError(f"inn_cuda: this NVRTC ({'.'.join(map(str, nvrtc_version()))}) cannot "
                           f"compile for compute capability {capability[0]}.{capability[1]}; it "
                           f"supports sm_{min(supported)} and newer")
    return f"compute_{max(older)}"


def options(target: str, source_root: Path, include_dir: Path) -> List[str]:
    return [*BASE_OPTIONS, f"--gpu-architecture={target}", f"-I{source_root}", f"-I{include_dir}"]


def compile_program(program: Program, target: str, source_root: Path,
                    include_dir: Path) -> Compiled:
    """Compiles `program` for `target` (sm_XY: cubin, compute_XY: PTX). Raises RuntimeError with
    NVRTC's log when it fails."""
    bindings = nvrtc()
    handle = bindings.createProgram(program.source, f"inn_{program.label}.cu", [], [])
    try:
        for name in program.names:
            bindings.addNameExpression(handle, name)
        try:
            bindings.compileProgram(handle, options(target, source_root, include_dir))
        except bindings.NVRTCError as error:
            raise RuntimeError(f"inn_cuda: NVRTC could not compile {program.label} for {target} "
                               f"({error}):\n{bindings.getProgramLog(handle)}") from error
        cubin = target.startswith("sm_")
        binary = bindings.getCUBIN(handle) if cubin else bindings.getPTX(handle)
        lowered = {name: bindings.getLoweredName(handle, name) for name in program.names}
        return Compiled(binary, "cubin" if cubin else "ptx", lowered,
                        bindings.getProgramLog(handle))
    finally:
        bindings.destroyProgram(handle)
