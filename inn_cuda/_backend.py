"""Loads the compiled extension and gives every op an implementation on every device.

``inn_cuda._C`` declares the ``torch.ops.inn_cuda`` ops (``csrc/ops.cpp``) and registers the
kernels it was built with. Which backend serves an op on a device follows ``INN_CUDA_BACKEND``:

* ``auto`` (default): the compiled kernel if ``_C`` has one; on CUDA, else the same kernels
  compiled at first use with NVRTC through CuPy (:mod:`inn_cuda._nvrtc`) when that can run here;
  else the pure-PyTorch reference (:mod:`inn_cuda.reference`), which warns once per op and device
  the first time it runs.
* ``compiled``: only ``_C``'s kernels. ``_C`` failing to load is an ImportError; an op ``_C`` has
  no kernel for (e.g. every CUDA op of a CPU-only build) raises a RuntimeError saying so when it
  runs.
* ``nvrtc``: CUDA ops through NVRTC, even where ``_C`` has CUDA kernels. When NVRTC cannot run
  here (no CuPy, no GPU, ...), importing still works and every CUDA op raises a RuntimeError with
  the reason when it runs. CPU ops are served as under ``auto``.
* ``reference``: the reference everywhere, ``_C`` not loaded.

:data:`SERVED_BY` and :data:`WHY` record the choice per op and device, :func:`info` reports it.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Callable, Dict, Optional, Tuple

import torch

from . import _nvrtc, reference

NAMESPACE = "inn_cuda"
BACKEND_ENV = "INN_CUDA_BACKEND"
BACKEND_CHOICES = ("auto", "compiled", "nvrtc", "reference")
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
    if choice not in BACKEND_CHOICES:
        raise ValueError(f"{BACKEND_ENV} must be one of {', '.join(BACKEND_CHOICES)}; got "
                         f"{choice!r}")
    return choice


def _load_extension(choice: str):
    """Returns (module or None, why it is missing)."""
    if choice == "reference":
        return None, f"{BACKEND_ENV}=reference"
    try:
        from . import _C
    except ImportError as error:
        if choice == "compiled":
            raise ImportError(f"{BACKEND_ENV}=compiled but inn_cuda._C cannot be loaded: "
                              f"{error}") from error
        return None, f"inn_cuda._C not loaded: {error}"
    return _C, None


CHOICE = _requested_backend()
_C, MISSING_REASON = _load_extension(CHOICE)
_definitions: Optional[torch.library.Library] = None
if _C is None:
    _definitions = torch.library.Library(NAMESPACE, "DEF")
    for _name, _schema in SCHEMAS.items():
        _definitions.define(_name + _schema)
    BUILD: dict = {"version": None, "torch_version": None, "cuda_toolkit": "", "cuda_archs": "",
                   "cpu_isa": None, "compiler": None, "kernels": {}}
else:
    BUILD = json.loads(torch.ops.inn_cuda.build_info())


def _why_no_kernel(device: str) -> str:
    if MISSING_REASON:
        return MISSING_REASON
    if device == "cuda" and not BUILD.get("cuda_toolkit"):
        return "inn_cuda._C was built without CUDA kernels"
    return f"inn_cuda._C has no {device} kernel for it"


def choose(choice: str, device: str, compiled: bool, why_not_compiled: str,
           nvrtc: Tuple[bool, Optional[str]]) -> Tuple[str, Optional[str]]:
    """The backend of one op on one device: (``compiled``, ``nvrtc``, ``reference`` or
    ``unavailable``; why not a compiled kernel, None when it is one). `compiled`: whether _C
    has the kernel; `nvrtc`: _nvrtc.status() (only read for CUDA)."""
    if choice == "reference":
        return "reference", f"{BACKEND_ENV}=reference"
    if device == "cuda" and choice == "nvrtc":
        if nvrtc[0]:
            return "nvrtc", f"{BACKEND_ENV}=nvrtc"
        return "unavailable", f"{BACKEND_ENV}=nvrtc but NVRTC cannot run here: {nvrtc[1]}"
    if compiled:
        return "compiled", None
    if choice == "compiled":
        return "unavailable", f"{BACKEND_ENV}=compiled but {why_not_compiled}"
    if device == "cuda":
        if nvrtc[0]:
            return "nvrtc", why_not_compiled
        return "reference", f"{why_not_compiled}; NVRTC cannot run here: {nvrtc[1]}"
    return "reference", why_not_compiled


_nvrtc_status: Optional[Tuple[bool, Optional[str]]] = None


def nvrtc_status() -> Tuple[bool, Optional[str]]:
    """_nvrtc.status(), probed once."""
    global _nvrtc_status
    if _nvrtc_status is None:
        _nvrtc_status = _nvrtc.status()
    return _nvrtc_status


def _compiled(op: str, device: str) -> bool:
    return op in BUILD["kernels"].get(device, ())


def _fallback(op: str, device: str, why: str) -> Callable:
    impl = reference.OPS[op]

    def run_reference(*args):
        if (op, device) not in _warned:
            _warned.add((op, device))
            warnings.warn(f"inn_cuda: {op} on {device} runs the pure-PyTorch reference "
                          f"({why}); expect it to be slow.", RuntimeWarning, stacklevel=2)
        # Contiguous like the compiled kernels (and the fake functions): the reference may
        # return transposed views.
        return tuple(t.contiguous() for t in impl(*args))

    return run_reference


def _unavailable(op: str, device: str, why: str) -> Callable:
    def refuse(*args):
        raise RuntimeError(f"inn_cuda: {op} cannot run on {device}: {why}")

    return refuse


#: op name -> device -> "compiled", "nvrtc", "reference" or "unavailable"
SERVED_BY: Dict[str, Dict[str, str]] = {}
#: op name -> device -> why it is not a compiled kernel (None where it is)
WHY: Dict[str, Dict[str, Optional[str]]] = {}
_warned = set()
_impls = torch.library.Library(NAMESPACE, "IMPL")

# Probe NVRTC only where it could serve: CUDA ops without a compiled kernel, or when forced.
_needs_nvrtc = CHOICE == "nvrtc" or (CHOICE == "auto" and not all(
    _compiled(op, "cuda") for op in SCHEMAS))
_status_for_choice = nvrtc_status() if _needs_nvrtc else (False, "not needed")
for _name in SCHEMAS:
    SERVED_BY[_name], WHY[_name] = {}, {}
    for _device in DEVICES:
        _backend, _why = choose(CHOICE, _device, _compiled(_name, _device),
                                _why_no_kernel(_device), _status_for_choice)
        SERVED_BY[_name][_device], WHY[_name][_device] = _backend, _why
        if _backend == "compiled":
            continue
        if _backend == "nvrtc":
            _impl = _nvrtc.OPS[_name]
        elif _backend == "reference":
            _impl = _fallback(_name, _device, _why)
        else:
            _impl = _unavailable(_name, _device, _why)
        with warnings.catch_warnings():
            # INN_CUDA_BACKEND=nvrtc replaces the CUDA kernels of _C, on purpose
            warnings.filterwarnings("ignore", message=".*Overriding a previously registered "
                                                      "kernel")
            _impls.impl(_name, _impl, _device.upper())

if _C is None and CHOICE != "reference":
    _cuda = sorted(set(SERVED_BY[op]["cuda"] for op in SCHEMAS))
    warnings.warn(f"inn_cuda: {MISSING_REASON}; CPU ops run their slow pure-PyTorch reference, "
                  f"CUDA ops run {' / '.join(_cuda)}. Reinstall with `pip install "
                  f"--no-build-isolation .` to build the kernels.", RuntimeWarning, stacklevel=3)


def info() -> dict:
    """What was built and what serves each op, as printed by ``inn-cuda info``."""
    import inn_cuda

    available, reason = nvrtc_status()
    return {
        "inn_cuda": inn_cuda.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "backend_requested": CHOICE,
        "extension_loaded": _C is not None,
        "extension_missing_reason": MISSING_REASON,
        "built_with_torch": BUILD.get("torch_version"),
        "cpu_isa": BUILD.get("cpu_isa"),
        "cuda_kernels_compiled": bool(BUILD.get("cuda_toolkit")),
        "cuda_toolkit": BUILD.get("cuda_toolkit") or None,
        "cuda_archs": BUILD.get("cuda_archs") or None,
        "gpu_visible": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "nvrtc": {"available": available, "unavailable_reason": reason, **_nvrtc.details()},
        "ops": SERVED_BY,
        "ops_why": WHY,
        # fused kernel or library path (inn_cuda.set_algorithm, README "Library path")
        "algorithm": _C.algorithm() if _C is not None else None,
        "paths_served": json.loads(_C.path_counts()) if _C is not None else {},
    }


def describe_backends(report: dict) -> list:
    """Lines for ``inn-cuda info`` on the CUDA backend choice (the NVRTC backend and why an op is
    not served by a compiled kernel)."""
    nvrtc = report["nvrtc"]
    lines = [f"backend requested: {report['backend_requested']} ({BACKEND_ENV})"]
    if report.get("algorithm"):
        lines.append(f"algorithm: {report['algorithm']} (INN_CUDA_ALGORITHM / set_algorithm: "
                     f"auto takes the library path for point weights everywhere and for "
                     f"input_nonneg on CUDA, the fused kernels otherwise)")
    for op, counts in sorted(report.get("paths_served", {}).items()):
        lines.append(f"  {op}: fused {counts['fused']}, library {counts['library']} calls")
    if nvrtc["available"]:
        lines.append(f"NVRTC backend: available (CuPy {nvrtc['cupy']}, NVRTC {nvrtc['nvrtc']}, "
                     f"cache {nvrtc['cache']})")
    else:
        lines.append(f"NVRTC backend: unavailable ({nvrtc['unavailable_reason']})")
    reasons = {}
    for op, per_device in report["ops_why"].items():
        for device, why in per_device.items():
            if why:
                reasons.setdefault((device, why), []).append(op)
    for (device, why), ops in sorted(reasons.items()):
        lines.append(f"  {device}: {why} ({len(ops)} op{'s' * (len(ops) > 1)})")
    return lines
