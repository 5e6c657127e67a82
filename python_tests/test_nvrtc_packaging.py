"""The kernel sources travel with the package: setup.py's build_py copies csrc/interval_math.h and
csrc/kernels/*.cuh into the built package (inn_cuda/_kernel_sources/), exactly the files the NVRTC
backend hashes and compiles, and a program compiles from that copy alone. A checkout reads csrc/
itself."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inn_cuda._nvrtc import compiler, problems, sources

from cuda_emulation import nvrtc_check

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built_package(tmp_path_factory):
    """`setup.py build_py` run on a copy of the project (setup.py writes build/ next to it)."""
    project = tmp_path_factory.mktemp("project")
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "csrc", project / "csrc")
    shutil.copytree(ROOT / "inn_cuda", project / "inn_cuda",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    build_lib = project / "build_lib"
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build_lib)],
        cwd=project, capture_output=True, text=True, env={**os.environ, "INN_CUDA_BUILD": "cpu"},
        timeout=300)
    assert result.returncode == 0, result.stderr
    return build_lib / "inn_cuda"


def test_build_ships_the_kernel_sources(built_package):
    shipped = built_package / "_kernel_sources"
    in_tree = ROOT / "csrc"
    assert sources.source_files(shipped) == sources.source_files(in_tree)
    for relative in sources.source_files(in_tree):
        assert (shipped / relative).read_bytes() == (in_tree / relative).read_bytes()
    assert sources.source_digest(shipped) == sources.source_digest(in_tree)


def test_checkout_reads_csrc():
    assert sources.kernel_source_root() == ROOT / "csrc"
    assert not sources.PACKAGED_ROOT.exists(), "a copy in the source tree would go stale"


def test_installed_package_reads_its_copy(built_package, monkeypatch):
    monkeypatch.setattr(sources, "IN_TREE_ROOT", built_package.parent / "csrc")
    monkeypatch.setattr(sources, "PACKAGED_ROOT", built_package / "_kernel_sources")
    assert sources.kernel_source_root() == built_package / "_kernel_sources"
    monkeypatch.setattr(sources, "PACKAGED_ROOT", built_package / "nothing")
    assert sources.kernel_source_root() is None


def test_the_copy_compiles_on_its_own(built_package):
    if nvrtc_check.unavailable():
        pytest.skip(nvrtc_check.unavailable())
    program = compiler.Program(problems.OP_PROBLEMS["interval_conv2d_backward_input"],
                               problems.ELEMENTS["float16"])
    compiled = compiler.compile_program(program, "compute_80", built_package / "_kernel_sources",
                                        sources.cuda_include_dir())
    assert set(compiled.lowered) == set(program.names)
