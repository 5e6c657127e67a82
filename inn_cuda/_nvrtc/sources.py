"""Where the NVRTC backend finds what it compiles: the kernel sources (``csrc/interval_math.h`` and
``csrc/kernels/*.cuh``) and CUDA's fp16/bf16 headers.

The kernel sources have one home, ``csrc/`` in the repository. A checkout or an editable install
reads ``csrc/`` next to the package; a wheel ships a copy made at build time (``setup.py``:
``inn_cuda/_kernel_sources/``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import List, Optional

PACKAGE = Path(__file__).resolve().parent.parent
#: csrc/ of a checkout (in-tree use and editable installs)
IN_TREE_ROOT = PACKAGE.parent / "csrc"
#: the copy inside an installed package (same layout as csrc/)
PACKAGED_ROOT = PACKAGE / "_kernel_sources"
MARKER = Path("kernels") / "interval_tile_kernel.cuh"


def kernel_source_root() -> Optional[Path]:
    """The folder holding interval_math.h and kernels/*.cuh, or None."""
    for root in (IN_TREE_ROOT, PACKAGED_ROOT):
        if (root / MARKER).is_file():
            return root
    return None


def searched_roots() -> str:
    return f"{IN_TREE_ROOT} and {PACKAGED_ROOT}"


def source_files(root: Path) -> List[Path]:
    """The kernel sources under `root`, relative to it, in a fixed order."""
    return [Path("interval_math.h")] + sorted(p.relative_to(root)
                                              for p in (root / "kernels").glob("*.cuh"))


def source_digest(root: Path) -> str:
    """sha256 over the names and contents of every kernel source."""
    digest = hashlib.sha256()
    for relative in source_files(root):
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update((root / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def cuda_include_dir() -> Optional[Path]:
    """A folder with CUDA's cuda_fp16.h and cuda_bf16.h (NVRTC does not bring them): the
    nvidia-cuda-runtime wheel (found by cuda-pathfinder, a CuPy dependency), else a toolkit at
    CUDA_HOME, CUDA_PATH or /usr/local/cuda."""
    candidates = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory

        found = find_nvidia_header_directory("cudart")
        if found:
            candidates.append(Path(found))
    except Exception:  # noqa: BLE001 - an old or broken pathfinder: try the toolkit folders
        pass
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates.append(Path(home) / "include")
    for folder in candidates:
        if (folder / "cuda_fp16.h").is_file() and (folder / "cuda_bf16.h").is_file():
            return folder
    return None
