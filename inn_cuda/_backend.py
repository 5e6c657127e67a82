"""Loads the compiled extension and gives every op an implementation on every device.

``inn_cuda._C`` declares the ``torch.ops.inn_cuda`` ops (``csrc/ops.cpp``) and registers the
kernels it was built with. Which backend serves an op on a device follows ``INN_CUDA_BACKEND``:

* ``auto`` (default): the compiled kernel if ``_C`` has one, else the pure-PyTorch reference
  (:mod:`inn_cuda.reference`), which warns once per op and device the first time it runs.
* ``compiled``: only ``_C``'s kernels. ``_C`` failing to load is an ImportError; an op ``_C`` has
  no kernel for (e.g. every CUDA op of a CPU-only build) raises a RuntimeError saying so when it
  runs.
* ``reference``: the reference everywhere, ``_C`` not loaded.

CUDA kernels exist only compiled (``pip install`` builds them wherever a CUDA toolkit is found).
Wherever ``_C`` is loaded the reference runs behind the same C++ argument checks as the kernels
(``csrc/op_checks.cpp``, the ``_check_*`` ops). :data:`SERVED_BY` and :data:`WHY` record the
choice per op and device, :func:`info` reports it.
"""

from __future__ import annotations

import json
import warnings
from typing import Callable, Dict, Optional, Tuple

import torch

from . import reference
from ._environment import fail_import, read_choice

NAMESPACE = "inn_cuda"
BACKEND_ENV = "INN_CUDA_BACKEND"
BACKEND_CHOICES = ("auto", "compiled", "reference")
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
        # the total weight gradient of a point weight w (w_lo and w_hi one tensor)
        schemas[f"{op}_backward_weight_point"] = (
            f"(Tensor grad_lo, Tensor grad_hi, Tensor x_lo, Tensor x_hi, Tensor w, {config}) "
            f"-> Tensor")
    return schemas


SCHEMAS = _schemas()


def _requested_backend() -> str:
    return read_choice(BACKEND_ENV, BACKEND_CHOICES, "auto")


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
                   "cpu_isa": None, "cpu_isas": [], "compiler": None, "kernels": {}}
else:
    try:
        BUILD = json.loads(torch.ops.inn_cuda.build_info())
    except RuntimeError as error:  # the C++ side's check of INN_CUDA_CPU_ISA
        fail_import(error)


def _why_no_kernel(device: str) -> str:
    if MISSING_REASON:
        return MISSING_REASON
    if device == "cuda" and not BUILD.get("cuda_toolkit"):
        return "inn_cuda._C was built without CUDA kernels"
    return f"inn_cuda._C has no {device} kernel for it"


def choose(choice: str, compiled: bool, why_not_compiled: str) -> Tuple[str, Optional[str]]:
    """The backend of one op on one device: (``compiled``, ``reference`` or ``unavailable``; why
    not a compiled kernel, None when it is one). `compiled`: whether _C has the kernel."""
    if choice == "reference":
        return "reference", f"{BACKEND_ENV}=reference"
    if compiled:
        return "compiled", None
    if choice == "compiled":
        return "unavailable", f"{BACKEND_ENV}=compiled but {why_not_compiled}"
    return "reference", why_not_compiled


def _compiled(op: str, device: str) -> bool:
    return op in BUILD["kernels"].get(device, ())


def _fallback(op: str, device: str, why: str) -> Callable:
    impl = reference.OPS[op]
    # The kernels' C++ argument checks (csrc/op_checks.cpp), where _C is loaded: the reference
    # then accepts and refuses exactly what the kernels do.
    check = getattr(torch.ops.inn_cuda, "_check_" + op) if _C is not None else None

    def run_reference(*args):
        if check is not None:
            check(*args)
        if (op, device) not in _warned:
            _warned.add((op, device))
            warnings.warn(f"inn_cuda: {op} on {device} runs the pure-PyTorch reference "
                          f"({why}); expect it to be slow.", RuntimeWarning, stacklevel=2)
        # Contiguous like the compiled kernels (and the fake functions): the reference may
        # return transposed views.
        out = impl(*args)
        if isinstance(out, torch.Tensor):
            return out.contiguous()
        return tuple(t.contiguous() for t in out)

    return run_reference


def _unavailable(op: str, device: str, why: str) -> Callable:
    def refuse(*args):
        raise RuntimeError(f"inn_cuda: {op} cannot run on {device}: {why}")

    return refuse


#: op name -> device -> "compiled", "reference" or "unavailable"
SERVED_BY: Dict[str, Dict[str, str]] = {}
#: op name -> device -> why it is not a compiled kernel (None where it is)
WHY: Dict[str, Dict[str, Optional[str]]] = {}
_warned = set()
_impls = torch.library.Library(NAMESPACE, "IMPL")

for _name in SCHEMAS:
    SERVED_BY[_name], WHY[_name] = {}, {}
    for _device in DEVICES:
        _backend, _why = choose(CHOICE, _compiled(_name, _device), _why_no_kernel(_device))
        SERVED_BY[_name][_device], WHY[_name][_device] = _backend, _why
        if _backend == "compiled":
            continue
        _impl = (_fallback(_name, _device, _why) if _backend == "reference"
                 else _unavailable(_name, _device, _why))
        _impls.impl(_name, _impl, _device.upper())

if _C is None and CHOICE != "reference":
    warnings.warn(f"inn_cuda: {MISSING_REASON}; every op runs its slow pure-PyTorch reference. "
                  f"Reinstall with `pip install --no-build-isolation .` to build the kernels.",
                  RuntimeWarning, stacklevel=3)


def set_cpu_isa(isa: str) -> str:
    """Private (tests and benchmarks): routes the compiled CPU kernels to one instruction set,
    ``"avx512"``, ``"avx2"``, ``"scalar"`` or ``"default"`` (the process's own choice:
    ``INN_CUDA_CPU_ISA``, else the widest the CPU supports), and returns the one active before.
    Asking for an instruction set this CPU lacks (``BUILD["cpu_isas"]`` lists those it has) is
    a RuntimeError that changes nothing. Not for use while kernels run on other threads."""
    if _C is None:
        raise RuntimeError(f"inn_cuda: no compiled CPU kernels to route ({MISSING_REASON})")
    previous = BUILD["cpu_isa"]
    BUILD["cpu_isa"] = torch.ops.inn_cuda._set_cpu_isa(isa)
    return previous


def info() -> dict:
    """What was built and what serves each op, as printed by ``inn-cuda info``."""
    import inn_cuda

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
        "ops": SERVED_BY,
        "ops_why": WHY,
        # fused kernel or library path (inn_cuda.set_algorithm, README "Library path")
        "algorithm": _C.algorithm() if _C is not None else None,
        "paths_served": json.loads(_C.path_counts()) if _C is not None else {},
    }


def describe_backends(report: dict) -> list:
    """Lines for ``inn-cuda info`` on the backend choice: why an op is not served by a compiled
    kernel."""
    lines = [f"backend requested: {report['backend_requested']} ({BACKEND_ENV})"]
    if report.get("algorithm"):
        lines.append(f"algorithm: {report['algorithm']} (INN_CUDA_ALGORITHM / set_algorithm: "
                     f"auto takes the library path for point weights everywhere and for "
                     f"input_nonneg on CUDA, the fused kernels otherwise)")
    for op, counts in sorted(report.get("paths_served", {}).items()):
        lines.append(f"  {op}: fused {counts['fused']}, library {counts['library']} calls")
    reasons = {}
    for op, per_device in report["ops_why"].items():
        for device, why in per_device.items():
            if why:
                reasons.setdefault((device, why), []).append(op)
    for (device, why), ops in sorted(reasons.items()):
        lines.append(f"  {device}: {why} ({len(ops)} op{'s' * (len(ops) > 1)})")
    return lines
