"""Builds the compiled extension ``inn_cuda._C``.

Environment switches (README "Building"):
  INN_CUDA_BUILD=auto|cpu|cuda   auto (default): CUDA kernels whenever torch has CUDA and a CUDA
                                 toolkit is found, GPU or not; cpu: never; cuda: always, or fail.
  CUDA_HOME / CUDA_PATH          the toolkit; otherwise /usr/local/cuda, otherwise nvcc on PATH.
  TORCH_CUDA_ARCH_LIST           target archs; default: the visible GPUs, or 8.0;9.0+PTX when none.
  MAX_JOBS                       parallel compile jobs (ninja).
"""

import glob
import os
import re
import shutil

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0+PTX"


def find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return home
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else None


def read_version():
    with open(os.path.join(ROOT, "inn_cuda", "_version.py")) as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


MODE = os.environ.get("INN_CUDA_BUILD", "auto").lower()
if MODE not in ("auto", "cpu", "cuda"):
    raise SystemExit(f"INN_CUDA_BUILD must be auto, cpu or cuda, got {MODE!r}")
CUDA_HOME = find_cuda_home()
if CUDA_HOME:
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported and guesses wrong otherwise.
    os.environ["CUDA_HOME"] = CUDA_HOME

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

WITH_CUDA = MODE != "cpu" and torch.version.cuda is not None and CUDA_HOME is not None
if MODE == "cuda" and not WITH_CUDA:
    raise SystemExit(
        "INN_CUDA_BUILD=cuda but the CUDA kernels cannot be built: "
        + ("torch has no CUDA support (torch.version.cuda is None)" if torch.version.cuda is None
           else "no CUDA toolkit found (set CUDA_HOME, or install one at /usr/local/cuda)"))
if WITH_CUDA and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
    os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
ARCHS = os.environ.get("TORCH_CUDA_ARCH_LIST", "visible GPUs") if WITH_CUDA else ""


def write_build_config():
    """A header with what this build is, for `inn-cuda info` (macros with ';' do not survive
    the shell that ninja runs)."""
    folder = os.path.join(ROOT, "build", "generated")
    os.makedirs(folder, exist_ok=True)
    toolkit = torch.version.cuda if WITH_CUDA else ""
    lines = [
        "#pragma once",
        f'#define INN_CUDA_VERSION "{read_version()}"',
        f'#define INN_TORCH_VERSION "{torch.__version__}"',
        f'#define INN_CUDA_TOOLKIT "{toolkit}"',
        f'#define INN_CUDA_ARCHS "{ARCHS}"',
    ]
    path = os.path.join(folder, "inn_build_config.h")
    text = "\n".join(lines) + "\n"
    if not os.path.exists(path) or open(path).read() != text:  # keep ninja's cache valid
        with open(path, "w") as f:
            f.write(text)
    return folder


def extension():
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp") +
                     glob.glob("csrc/library/*.cpp"))
    cxx_flags = ["-O3", "-fopenmp", "-Wall", "-Wno-unknown-pragmas"]
    kwargs = dict(
        name="inn_cuda._C",
        include_dirs=[os.path.join(ROOT, "csrc"), write_build_config()],
        extra_link_args=["-fopenmp"],
    )
    if not WITH_CUDA:
        return CppExtension(sources=sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)
    # The CUDA files take minutes each (every tile configuration for every dtype, mode and op):
    # listed first, ninja starts them first and the C++ files fill the other jobs; --threads
    # compiles a file's target archs side by side, so the last CUDA file does not finish on one
    # core while the others idle.
    sources = sorted(glob.glob("csrc/cuda/*.cu")) + sources
    nvcc_flags = ["-O3", "-lineinfo", "--expt-relaxed-constexpr", "--threads=0"]
    return CUDAExtension(sources=sources, define_macros=[("INN_WITH_CUDA", None)],
                         extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, **kwargs)


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
