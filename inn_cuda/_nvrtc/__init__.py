"""The NVRTC backend: the CUDA kernels of ``csrc/kernels/`` compiled at first use with NVRTC
through CuPy, for installs without a CUDA compiler (README "Without a CUDA compiler: NVRTC").

``inn_cuda._backend`` registers :data:`OPS` at the CUDA dispatch key where the compiled extension
has no CUDA kernel (or ``INN_CUDA_BACKEND=nvrtc``) and :func:`status` says the backend can run.
Modules: ``problems`` (host-side port of the launch plan), ``compiler`` (NVRTC), ``cache`` (the
disk cache), ``runtime`` (loading and launching through CuPy's driver bindings), ``ops`` (the op
implementations), ``sources`` (where the kernel sources and CUDA headers are).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from . import cache, compiler, sources
from .ops import OPS

__all__ = ["OPS", "status", "details"]


def status() -> Tuple[bool, Optional[str]]:
    """(available, why not): whether CUDA ops can run through NVRTC here. Cheap: loads NVRTC
    through CuPy and looks for files; compiles nothing and starts no CUDA context."""
    problems: List[str] = []
    if torch.version.cuda is None:
        problems.append("torch was built without CUDA")
    elif not torch.cuda.is_available():
        problems.append("no GPU visible (torch.cuda.is_available() is False)")
    try:
        compiler.nvrtc_version()
    except ImportError as error:
        problems.append(f"CuPy is not installed ({error}); install it with "
                        f"`pip install inn_cuda[cupy]`")
    except Exception as error:  # noqa: BLE001 - CuPy raises several kinds when NVRTC is missing
        problems.append(f"NVRTC cannot be loaded through CuPy ({type(error).__name__}: {error})")
    if sources.kernel_source_root() is None:
        problems.append(f"the kernel sources are missing (looked in {sources.searched_roots()})")
    if sources.cuda_include_dir() is None:
        problems.append("CUDA's cuda_fp16.h and cuda_bf16.h are not found (install the "
                        "nvidia-cuda-runtime wheel, or set CUDA_HOME to a CUDA toolkit)")
    return (not problems, "; ".join(problems) or None)


def details() -> dict:
    """What the NVRTC backend would use, for ``inn-cuda info``."""
    try:
        version: Optional[str] = ".".join(map(str, compiler.nvrtc_version()))
    except Exception:  # noqa: BLE001 - reported by status()
        version = None
    try:
        import cupy

        cupy_version: Optional[str] = cupy.__version__
    except Exception:  # noqa: BLE001 - reported by status()
        cupy_version = None
    root = sources.kernel_source_root()
    include = sources.cuda_include_dir()
    return {"cupy": cupy_version, "nvrtc": version, "cache": str(cache.cache_root()),
            "kernel_sources": None if root is None else str(root),
            "cuda_headers": None if include is None else str(include)}
