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

Comparisons (:func:`time_interleaved`): the implementations being compared are timed in rounds,
one call of each per round (A B C, A B C, ...; the order rotates each round so that no
implementation always follows the same one). Load from other processes that comes and goes
then lands on every implementation of a round alike, and :func:`paired_ratios` (the ratio of
each round's two samples, summarised) cancels it; a ratio of medians of separately timed blocks
does not. :func:`busy` says when the machine's load average makes even absolute times
unreliable.

The clocks are parameters so that the statistics can be tested on a fake clock.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

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


def time_interleaved(calls: Mapping[str, Callable[[], object]], device: str, repeats: int, *,
                     clock: Callable[[], float] = time.perf_counter,
                     cpu_clock: Callable[[], float] = time.process_time) -> Dict[str, Timing]:
    """``repeats`` rounds of one timed call of each (already warmed-up) implementation; round
    ``r`` starts at implementation ``r mod len(calls)``. Sample ``i`` of every implementation
    comes from round ``i`` (the pairing :func:`paired_ratios` relies on)."""
    names = list(calls)
    wall: Dict[str, List[float]] = {name: [] for name in names}
    cpu: Dict[str, List[float]] = {name: [] for name in names}
    cuda = _is_cuda(device)
    for r in range(repeats):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            if cuda:
                wall[name] += _cuda_event_samples(calls[name], 1)
                continue
            start, start_cpu = clock(), cpu_clock()
            calls[name]()
            wall[name].append(clock() - start)
            cpu[name].append(cpu_clock() - start_cpu)
    if cuda:
        return {n: Timing(summarize(wall[n]), None, wall[n], None) for n in names}
    return {n: Timing(summarize(wall[n]), summarize(cpu[n]), wall[n], cpu[n]) for n in names}


def paired_ratios(samples: Sequence[float], baseline: Sequence[float]) -> Stats:
    """Summary of ``samples[i] / baseline[i]``: per-round ratios of two interleaved
    implementations (see :func:`time_interleaved`)."""
    if len(samples) != len(baseline):
        raise ValueError(f"paired_ratios: expected samples of equal length, got {len(samples)} "
                         f"and {len(baseline)}")
    return summarize([a / b for a, b in zip(samples, baseline) if b > 0])


def load_average() -> Optional[float]:
    """The 1-minute load average, or None where the system has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def busy(load: Optional[float], cpus: Optional[int] = None) -> bool:
    """Whether a load average means other work competes for the cores: above half of them
    (then wall-clock times are inflated and only paired ratios are comparable)."""
    cpus = cpus or os.cpu_count() or 1
    return load is not None and load > 0.5 * cpus


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
