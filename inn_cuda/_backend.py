"""Loads the compiled extension and gives every op an implementation on every device.

``inn_cuda._C`` declares the ``torch.ops.inn_cuda`` ops (``csrc/ops.cpp``) and registers the
kernels it was built with. Wherever a kernel is missing (no extension at all, a CPU-only build on
a GPU machine, ``INN_CUDA_BACKEND=reference``) the pure-PyTorch implementation from
:mod:`inn_cuda.reference` is registered in its place and warns once per op and device the first
time it runs. :func:`info` reports which backend serves each op.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Dict, Optional

import torch

from . import reference

NAMESPACE = "inn_cuda"
BACKEND_ENV = "INN_CUDA_BACKEND"
DEVICES = ("cpu", "cuda")

_FORWARD_CONFIG = {
    "interval_linear": "bool input_nonneg",
    "interval_conv2d": "int[2] stride, int[2] padding, int[2] dilation, int groups, "
                       "bool input_nonneg",
    "interval_conv_transpose2d": "int[2] stride, int[2] padding, int[2] output_padding, "
                                 "int groups, int[2] dilation, bool input_nonneg",
}


def _schemas() -> Dict[str, str]:
    """The op schemas, identical to those declared in csrc/ops.cpp (checked by a test)."""
    schemas = {}
    for op, config in _FORWARD_CONFIG.items():
        schemas[op] = (f"(Tensor x_lo, Tensor x_hi, Tensor w_lo, Tensor w_hi, Tensor? b_lo, "
                       f"Tensor? b_hi, {config}) -> (Tensor, Tensor)")
        for part in ("input", "weight"):
            schemas[f"{op}_backward_{part}"] = (
                f"(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, Tensor w_lo, "
                f"Tensor w_hi, {config}) -> (Tensor, Tensor)")
    return schemas


SCHEMAS = _schemas()


def _requested_backend() -> str:
    choice = os.environ.get(BACKEND_ENV, "auto").lower()
    if choice not in ("auto", "compiled", "reference"):
        raise ValueError(f"{BACKEND_ENV} must be one of auto, compiled, reference; got {choice!r}")
    return choice


def _load_extension():
    """Returns (module or None, why it is missing)."""
    choice = _requested_backend()
    if choice == "reference":
        return None, f"{BACKEND_ENV}=reference"
    try:
        from . import _C
    except ImportError as error:
        if choice == "compiled":
            raise ImportError(f"{BACKEND_ENV}=compiled but inn_cuda._C cannot be loaded: "
                              f"{error}") from error
        warnings.warn(f"inn_cuda: the compiled extension inn_cuda._C could not be loaded "
                      f"({error}); every op runs its slow pure-PyTorch reference. Reinstall with "
                      f"`pip install --no-build-isolation .` to build the kernels.",
                      RuntimeWarning, stacklevel=3)
        return None, f"inn_cuda._C not loaded: {error}"
    return _C, None


_C, MISSING_REASON = _load_extension()
_definitions: Optional[torch.library.Library] = None
if _C is None:
    _definitions = torch.library.Library(NAMESPACE, "DEF")
    for _name, _schema in SCHEMAS.items():
        _definitions.define(_name + _schema)
    BUILD: dict = {"version": None, "torch_version": None, "cuda_toolkit": "", "cuda_archs": "",
                   "cpu_isa": None, "compiler": None, "kernels": {}}
else:
    BUILD = json.loads(torch.ops.inn_cuda.build_info())

#: op name -> device -> "compiled" or "reference"
SERVED_BY: Dict[str, Dict[str, str]] = {}
_warned = set()
_fallbacks = torch.library.Library(NAMESPACE, "IMPL")


def _why_no_kernel(device: str) -> str:
    if MISSING_REASON:
        return MISSING_REASON
    if device == "cuda" and not BUILD.get("cuda_toolkit"):
        return "inn_cuda._C was built without CUDA kernels"
    return f"inn_cuda._C has no {device} kernel for it"


def _fallback(op: str, device: str):
    impl = reference.OPS[op]

    def run_reference(*args):
        if (op, device) not in _warned:
            _warned.add((op, device))
            warnings.warn(f"inn_cuda: {op} on {device} runs the pure-PyTorch reference "
                          f"({_why_no_kernel(device)}); expect it to be slow.",
                          RuntimeWarning, stacklevel=2)
        # Contiguous like the compiled kernels (and the fake functions): the reference may
        # return transposed views.
        return tuple(t.contiguous() for t in impl(*args))

    return run_reference


for _name in SCHEMAS:
    SERVED_BY[_name] = {}
    for _device in DEVICES:
        if _name in BUILD["kernels"].get(_device, ()):
            SERVED_BY[_name][_device] = "compiled"
        else:
            SERVED_BY[_name][_device] = "reference"
            _fallbacks.impl(_name, _fallback(_name, _device), _device.upper())


def info() -> dict:
    """What was built and what serves each op, as printed by ``inn-cuda info``."""
    import inn_cuda

    return {
        "inn_cuda": inn_cuda.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "extension_loaded": _C is not None,
        "extension_missing_reason": MISSING_REASON,
        "built_with_torch": BUILD.get("torch_version"),
        "cpu_isa": BUILD.get("cpu_isa"),
        "cuda_kernels_compiled": bool(BUILD.get("cuda_toolkit")),
        "cuda_toolkit": BUILD.get("cuda_toolkit") or None,
        "cuda_archs": BUILD.get("cuda_archs") or None,
        "gpu_visible": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "ops": SERVED_BY,
    }
