"""Which implementation serves the interval ops: the fused interval kernels or the library path
(ATen GEMM / convolution, i.e. cuBLAS / cuDNN on CUDA), see README "Library path".

The choice is made inside the compiled ops (``csrc/library/``), so it also holds for direct
``torch.ops.inn_cuda.*`` calls and under ``torch.compile``. This module only sets it
(:func:`set_algorithm`, ``INN_CUDA_ALGORITHM``) and reads which path ran (:func:`path_counts`).
Without the compiled extension every op runs the reference and the setting has no effect.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Dict, Iterator

from . import _backend

ALGORITHM_ENV = "INN_CUDA_ALGORITHM"
ALGORITHMS = ("auto", "fused", "library")


def set_algorithm(name: str) -> None:
    """``"auto"`` (the documented rule), ``"fused"`` (always the fused kernels) or ``"library"``
    (the library path wherever it applies: ``input_nonneg=True`` or point weights). Process-wide."""
    if name not in ALGORITHMS:
        raise ValueError(f"set_algorithm: name must be one of {', '.join(ALGORITHMS)}, got "
                         f"{name!r}")
    if _backend._C is not None:
        _backend._C.set_algorithm(name)


def get_algorithm() -> str:
    """The current setting (``"auto"`` without the compiled extension)."""
    return _backend._C.algorithm() if _backend._C is not None else "auto"


@contextlib.contextmanager
def algorithm(name: str) -> Iterator[None]:
    """Context manager form of :func:`set_algorithm` (process-wide, not thread-local)."""
    previous = get_algorithm()
    set_algorithm(name)
    try:
        yield
    finally:
        set_algorithm(previous)


def path_counts() -> Dict[str, Dict[str, int]]:
    """Calls per op (since import or :func:`reset_path_counts`) served by the ``fused`` kernel
    and by the ``library`` path. Empty without the compiled extension."""
    return json.loads(_backend._C.path_counts()) if _backend._C is not None else {}


def reset_path_counts() -> None:
    if _backend._C is not None:
        _backend._C.reset_path_counts()


def _from_environment() -> None:
    value = os.environ.get(ALGORITHM_ENV)
    if value is None:
        return
    if value not in ALGORITHMS:
        raise ValueError(f"{ALGORITHM_ENV} must be one of {', '.join(ALGORITHMS)}; got {value!r}")
    set_algorithm(value)


_from_environment()
