"""Argument checks of the public op functions: every error names the argument, what was expected
and what came.

The ``lo <= hi`` check reads every element (and synchronises with the GPU); switch it off for
the whole process with :func:`set_check_bounds` or ``INN_CUDA_CHECK_BOUNDS=0``, or for a block of
code in one thread with the :func:`check_bounds` context manager. It is skipped while
``torch.compile`` traces, where data-dependent checks would break the graph.
"""

from __future__ import annotations

import contextlib
import operator
import threading
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch

from ._environment import read_flag

_check_bounds = read_flag("INN_CUDA_CHECK_BOUNDS", default=True)
_thread = threading.local()  # .check_bounds: this thread's override inside check_bounds()

CPU_DTYPES = (torch.float32, torch.float64)
CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def set_check_bounds(enabled: bool) -> None:
    """Turn the elementwise ``lo <= hi`` check of every op on or off (default on), for the whole
    process: every thread, except inside a :func:`check_bounds` block, which overrides it."""
    global _check_bounds
    _check_bounds = bool(enabled)


def check_bounds_enabled() -> bool:
    override = getattr(_thread, "check_bounds", None)
    return _check_bounds if override is None else override


@contextlib.contextmanager
def check_bounds(enabled: bool) -> Iterator[None]:
    """Turn the ``lo <= hi`` check on or off inside the block, in this thread only (blocks nest;
    other threads keep their own setting)."""
    previous = getattr(_thread, "check_bounds", None)
    _thread.check_bounds = bool(enabled)
    try:
        yield
    finally:
        _thread.check_bounds = previous


def is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def check_tensors(op: str, named: Sequence[Tuple[str, Optional[torch.Tensor]]]) -> None:
    """All given tensors are floating tensors of one dtype and device allowed for that device;
    the first one sets the expectation."""
    first_name, first = named[0]
    for name, t in named:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != first.dtype:
            raise ValueError(f"{op}: {name} has dtype {t.dtype}, expected {first.dtype} like "
                             f"{first_name} (mixed dtypes are not cast silently)")
        if t.device != first.device:
            raise ValueError(f"{op}: {name} is on {t.device}, expected {first.device} like "
                             f"{first_name}")
    allowed = CUDA_DTYPES if first.device.type == "cuda" else CPU_DTYPES
    if first.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise ValueError(f"{op}: {first_name} has dtype {first.dtype}; on {first.device.type} "
                         f"the supported dtypes are {names}")


def values_checked(t: torch.Tensor) -> bool:
    """Whether the elementwise checks run for an op on ``t``: enabled, not while
    ``torch.compile`` traces, and not while a CUDA graph is being captured (a host read of
    device data is not allowed there)."""
    if not check_bounds_enabled() or is_compiling():
        return False
    return not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def check_pair(op: str, lo_name: str, lo: torch.Tensor, hi_name: str, hi: torch.Tensor,
               values: bool = True) -> None:
    """Same shape, and (``values``, if enabled) ``lo <= hi`` elementwise. NaN passes."""
    if hi.shape != lo.shape:
        raise ValueError(f"{op}: {hi_name} has shape {tuple(hi.shape)}, expected "
                         f"{tuple(lo.shape)} like {lo_name}")
    if values:
        check_values(op, [(lo_name, lo, hi_name, hi)])


def _pair_error(op, lo_name, lo, hi_name, hi) -> Optional[str]:
    bad = lo > hi
    if not bool(bad.any()):
        return None
    count = int(bad.sum())
    index = tuple(int(i) for i in torch.nonzero(bad)[0])
    return (f"{op}: {lo_name} must be <= {hi_name} elementwise; {count} of {lo.numel()} elements "
            f"are not (first at index {index}: {float(lo[index])} > {float(hi[index])}). "
            f"Disable this check with inn_cuda.set_check_bounds(False).")


def check_values(op: str, pairs: Sequence[Tuple[str, torch.Tensor, str, torch.Tensor]],
                 nonneg: Optional[Tuple[str, torch.Tensor]] = None) -> None:
    """The elementwise checks of one call (``lo <= hi`` of every pair given, ``x >= 0`` for
    ``nonneg``), with ONE host synchronisation for all of them (none when they are off, see
    :func:`values_checked`); the detailed message is worked out only when one fails."""
    pairs = [p for p in pairs if p[1] is not None and p[1] is not p[3] and p[1].numel()]
    if not pairs and (nonneg is None or not nonneg[1].numel()):
        return
    if not values_checked(pairs[0][1] if pairs else nonneg[1]):
        return
    flags = [(lo > hi).any() for _, lo, _, hi in pairs]
    if nonneg is not None and nonneg[1].numel():
        flags.append((nonneg[1] < 0).any())
    if not bool(torch.stack(flags).any()):
        return
    for pair in pairs:
        message = _pair_error(op, *pair)
        if message:
            raise ValueError(message)
    name, x = nonneg
    raise ValueError(f"{op}: input_nonneg=True requires {name} >= 0, but its minimum is "
                     f"{float(x.min())}; use input_nonneg=False for signed inputs")


def check_bias(op: str, b_lo: Optional[torch.Tensor], b_hi: Optional[torch.Tensor],
               channels: int) -> None:
    """Given as a pair or not at all, one entry per channel (values: :func:`check_values`)."""
    if (b_lo is None) != (b_hi is None):
        given, missing = ("b_lo", "b_hi") if b_hi is None else ("b_hi", "b_lo")
        raise ValueError(f"{op}: {given} was given without {missing}; pass both or neither")
    if b_lo is None:
        return
    if b_lo.shape != (channels,):
        raise ValueError(f"{op}: b_lo has shape {tuple(b_lo.shape)}, expected ({channels},) "
                         f"(one entry per output channel of the weight)")
    check_pair(op, "b_lo", b_lo, "b_hi", b_hi, values=False)


def check_rank(op: str, name: str, t: torch.Tensor, rank: int, layout: str) -> None:
    if t.dim() != rank:
        raise ValueError(f"{op}: {name} must have {rank} dims {layout}, got shape "
                         f"{tuple(t.shape)}")


IntOrPair = Union[int, Sequence[int]]


def _as_int(op: str, name: str, value, whole) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{op}: {name} must be an int or a sequence of ints, got {whole!r}")
    return operator.index(value)


def as_tuple(op: str, name: str, value: IntOrPair, size: int, minimum: int) -> Tuple[int, ...]:
    """An int or a sequence of ``size`` ints, each >= minimum, as a tuple."""
    if isinstance(value, (list, tuple, torch.Size)):
        values = tuple(_as_int(op, name, v, value) for v in value)
    else:
        values = (_as_int(op, name, value, value),) * size
    if len(values) != size:
        raise ValueError(f"{op}: {name} must be an int or {size} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return values
