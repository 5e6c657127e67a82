"""The NVRTC backend's kernel programs compile with NVRTC (through CuPy's bindings, no GPU or
driver needed): every program the backend requests (each op's problem type on each element type,
both modes and the split reduction) for compute_80 and compute_90, a cubin for sm_90, and the
layout checks in each program reject a struct mirror that disagrees with the C++."""

import ctypes

import pytest

from inn_cuda._nvrtc import compiler, problems

from cuda_emulation import nvrtc_check

pytestmark = pytest.mark.skipif(nvrtc_check.unavailable() is not None,
                                reason=str(nvrtc_check.unavailable()))


def test_programs_cover_every_op_and_dtype():
    programs = compiler.all_programs()
    assert len(programs) == len(problems.OP_PROBLEMS) * len(problems.ELEMENTS) == 36
    names = {name for program in programs for name in program.names}
    assert len(names) == 9 * 4 * 2 + 4  # tile kernels in both modes; one reduction per dtype


@pytest.mark.slow
@pytest.mark.parametrize("target", ["compute_80", "compute_90"])
def test_every_program_compiles_to_ptx(target):
    for program, compiled in nvrtc_check.compile_all(target).items():
        assert compiled.kind == "ptx"
        text = compiled.binary.decode()
        assert f".target sm_{target[-2:]}" in text
        assert set(compiled.lowered) == set(program.names)
        for mangled in compiled.lowered.values():
            assert mangled.startswith("_Z") and f".entry {mangled}(" in text, program.label


def test_cubin_for_the_exact_architecture():
    program = compiler.Program(problems.OP_PROBLEMS["interval_conv_transpose2d"],
                               problems.ELEMENTS["bfloat16"])
    compiled = nvrtc_check.compile_program(program, "sm_90")
    assert compiled.kind == "cubin" and compiled.binary[:4] == b"\x7fELF"
    for mangled in compiled.lowered.values():
        assert mangled.encode() in compiled.binary


def test_layout_mismatch_fails_to_compile(monkeypatch):
    """A field missing from a mirror changes its size: the program's static_assert stops the
    compile (instead of a launch with shifted fields)."""

    class Truncated(problems.TileProblem):
        _fields_ = [("x", problems.IntervalMatrix)]  # LinearForward without w

    problem = problems.ProblemType("LinearForward<{T}>", "kernels/linear_problems.cuh",
                                   Truncated)
    assert ctypes.sizeof(Truncated) != ctypes.sizeof(problems.LinearForward)
    with pytest.raises(RuntimeError, match="the ctypes mirror in inn_cuda/_nvrtc/problems.py "
                                           "does not match"):
        nvrtc_check.compile_program(compiler.Program(problem, problems.ELEMENTS["float32"]),
                                    "compute_80")


def test_compile_errors_carry_the_log():
    problem = problems.ProblemType("NoSuchProblem<{T}>", "kernels/linear_problems.cuh",
                                   problems.LinearForward)
    with pytest.raises(RuntimeError, match=r"(?s)NVRTC could not compile.*NoSuchProblem"):
        nvrtc_check.compile_program(compiler.Program(problem, problems.ELEMENTS["float32"]),
                                    "compute_80")


def test_target_choice():
    supported = (75, 80, 86, 89, 90, 100, 120)
    assert compiler.target_for((9, 0), supported) == "sm_90"
    assert compiler.target_for((8, 6), supported) == "sm_86"
    assert compiler.target_for((8, 7), supported) == "compute_86"  # unknown: PTX of an older one
    assert compiler.target_for((13, 0), supported) == "compute_120"  # newer than NVRTC
    with pytest.raises(RuntimeError, match="cannot compile for compute capability 7.0"):
        compiler.target_for((7, 0), supported)
