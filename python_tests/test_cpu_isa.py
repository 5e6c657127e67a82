"""Choosing the CPU kernels' instruction set: the private setter the `cpu_isa` fixture uses
(inn_cuda._backend.set_cpu_isa over the op inn_cuda::_set_cpu_isa), what info() reports, and the
INN_CUDA_CPU_ISA environment variable (csrc/cpu/cpu_isa.h)."""

import os
import subprocess
import sys

import pytest
import torch

import inn_cuda
from inn_cuda import _backend

from helpers import CPU_ISAS

pytestmark = pytest.mark.skipif(_backend._C is None, reason="no compiled CPU kernels")


def test_supported_list_is_widest_first_and_ends_with_scalar():
    supported = _backend.BUILD["cpu_isas"]
    assert supported and supported[-1] == "scalar"
    assert supported == [isa for isa in CPU_ISAS if isa in supported]


def test_info_names_the_path_in_use(cpu_isa):
    assert inn_cuda.info()["cpu_isa"] == cpu_isa
    assert _backend.set_cpu_isa(cpu_isa) == cpu_isa  # returns the one active before


def test_default_restores_the_process_choice():
    own = inn_cuda.info()["cpu_isa"]
    forced = os.environ.get("INN_CUDA_CPU_ISA")
    assert own == (forced or _backend.BUILD["cpu_isas"][0])
    try:
        _backend.set_cpu_isa("scalar")
        assert _backend.set_cpu_isa("default") == "scalar"
        assert inn_cuda.info()["cpu_isa"] == own
    finally:
        _backend.set_cpu_isa(own)


def test_unknown_or_missing_isa_is_an_error_that_changes_nothing():
    own = inn_cuda.info()["cpu_isa"]
    with pytest.raises(RuntimeError, match="must be avx512, avx2 or scalar, got 'sse9'"):
        _backend.set_cpu_isa("sse9")
    assert torch.ops.inn_cuda._set_cpu_isa("default") == own
    missing = [isa for isa in CPU_ISAS if isa not in _backend.BUILD["cpu_isas"]]
    if missing:
        with pytest.raises(RuntimeError, match="but this CPU lacks"):
            _backend.set_cpu_isa(missing[0])
    assert inn_cuda.info()["cpu_isa"] == own


def run_with_isa(isa, code):
    env = dict(os.environ, INN_CUDA_CPU_ISA=isa)
    root = os.path.dirname(os.path.dirname(os.path.abspath(inn_cuda.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_environment_variable_forces_the_process_path():
    done = run_with_isa("scalar", "import inn_cuda; from inn_cuda import _backend; "
                                  "_backend.set_cpu_isa('avx2' if 'avx2' in "
                                  "_backend.BUILD['cpu_isas'] else 'scalar'); "
                                  "_backend.set_cpu_isa('default'); "
                                  "print(inn_cuda.info()['cpu_isa'])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "scalar"
    done = run_with_isa("sse9", "import inn_cuda")
    assert done.returncode != 0
    assert "INN_CUDA_CPU_ISA must be avx512, avx2 or scalar, got 'sse9'" in done.stderr
