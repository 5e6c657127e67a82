"""Peak memory of one benchmark call, beyond what was allocated before it.

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
  ``memory_allocated()`` before the call (synchronised on both sides): every tensor the call
  allocates through PyTorch's caching allocator (outputs, gradients, temporaries, kernel
  workspaces taken from the allocator).
* CPU: the peak of the running sum of the CPU allocator's allocations and frees during the
  call, from the torch profiler's memory events (``profile_memory=True``). It counts the same
  kind of tensors as on CUDA; memory a library takes outside PyTorch's allocator (oneDNN
  scratchpads, the fused kernels' small per-thread packing buffers) is not seen.

Run it on a warmed-up call: one-time allocations (library handles, caches) would be counted.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def peak_bytes(call: Callable[[], object], device: str) -> int:
    if torch.device(device).type == "cuda":
        return _cuda_peak_bytes(call)
    return _cpu_peak_bytes(call)


def _cuda_peak_bytes(call: Callable[[], object]) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _cpu_peak_bytes(call: Callable[[], object]) -> int:
    # Without this, kineto logs two lines to stderr for every profiler session (read when the
    # profiler first starts in this process; a value the user set is kept).
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak
