"""Timing of one benchmark call over repeats, and the summary statistics of the samples.

Protocol (:func:`time_call`, or its three steps when something else runs between them): one
untimed warm-up call (:func:`warm_up`) whose duration sizes the repeats (:func:`repeats_for`:
``clamp(budget_s / warm-up, min_repeats, max_repeats)``), then the timed calls
(:func:`time_repeats`).

* CPU: wall-clock per call from ``time.perf_counter`` and, alongside, the process CPU time
  (``time.process_time``: all threads of this process). On a machine shared with other work the
  wall-clock time grows with the load while the CPU time grows much less, so both are kept.
* CUDA: a CUDA event pair around every call, recorded after a ``torch.cuda.synchronize()`` (the
  GPU is idle when the start event is reached, so one interval is one call, launch gaps
  included); the elapsed times are read after a final synchronize. No CPU time.

The clocks are parameters so that the statistics can be tested on a fake clock.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Sequence

import torch


@dataclass(frozen=True)
class Stats:
    """Summary of timing samples (seconds): median, quartiles (inclusive method), extremes."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median: the printed "±" figure."""
        return self.iqr / self.median if self.median > 0 else float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples: Sequence[float]) -> Stats:
    if not samples:
        raise ValueError("summarize: expected at least one sample, got none")
    ordered = sorted(samples)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return Stats(median=statistics.median(ordered), q1=q1, q3=q3, min=ordered[0],
                 max=ordered[-1], n=len(ordered))


@dataclass(frozen=True)
class Timing:
    """``wall``: per-call wall-clock seconds (CUDA: event time); ``cpu``: per-call process CPU
    seconds (CPU device only, else None); the raw samples for the JSON report."""

    wall: Stats
    cpu: Optional[Stats]
    wall_samples: List[float]
    cpu_samples: Optional[List[float]]


def _is_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"


def warm_up(call: Callable[[], object], device: str,
            clock: Callable[[], float] = time.perf_counter) -> float:
    """One untimed call (synchronised); returns its duration, which sizes the repeats."""
    sync = torch.cuda.synchronize if _is_cuda(device) else (lambda: None)
    sync()
    start = clock()
    call()
    sync()
    return clock() - start


def repeats_for(first_s: float, *, budget_s: float, min_repeats: int = 3,
                max_repeats: int = 30) -> int:
    """As many calls as fit ``budget_s`` at the warm-up's pace, within the bounds."""
    if not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"expected 1 <= min_repeats <= max_repeats, got {min_repeats} and "
                         f"{max_repeats}")
    return max(min_repeats, min(max_repeats, int(budget_s / max(first_s, 1e-9))))


def time_repeats(call: Callable[[], object], device: str, repeats: int, *,
                 clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time) -> Timing:
    """``repeats`` timed calls of an already warmed-up ``call``."""
    if _is_cuda(device):
        wall = _cuda_event_samples(call, repeats)
        return Timing(summarize(wall), None, wall, None)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = clock(), cpu_clock()
        call()
        wall.append(clock() - start)
        cpu.append(cpu_clock() - start_cpu)
    return Timing(summarize(wall), summarize(cpu), wall, cpu)


def time_call(call: Callable[[], object], device: str, *, budget_s: float,
              min_repeats: int = 3, max_repeats: int = 30,
              clock: Callable[[], float] = time.perf_counter,
              cpu_clock: Callable[[], float] = time.process_time) -> Timing:
    """Warm-up, then the repeats that fit the budget (the whole protocol in one call)."""
    first = warm_up(call, device, clock)
    repeats = repeats_for(first, budget_s=budget_s, min_repeats=min_repeats,
                          max_repeats=max_repeats)
    return time_repeats(call, device, repeats, clock=clock, cpu_clock=cpu_clock)


def _cuda_event_samples(call: Callable[[], object], repeats: int) -> List[float]:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for start, end in zip(starts, ends):
        torch.cuda.synchronize()
        start.record()
        call()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1e3 for start, end in zip(starts, ends)]
