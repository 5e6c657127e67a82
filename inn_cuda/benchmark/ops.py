"""The op benchmarks: every implementation of a layer, forward and forward+backward, per case.

Implementations (``IMPLS``):

* ``plain``: ``F.linear`` / ``F.conv2d`` / ``F.conv_transpose2d`` on point tensors: the floor,
  one ordinary layer of the same shape;
* ``fused_nonneg`` / ``fused_general``: inn_cuda's op (``torch.ops.inn_cuda``, the compiled
  kernels) with ``input_nonneg=True`` (non-negative input) / ``False`` (signed input), forced
  onto the fused kernels (``set_algorithm("fused")``);
* ``library_nonneg``: the same non-negative call forced onto the library path (ATen GEMM /
  convolution: cuBLAS / cuDNN on CUDA);
* ``point_ibp``: point weights (``w_lo`` and ``w_hi`` one tensor) and signed interval inputs,
  IBP-style, under the default ``auto`` rule (the library path);
* ``reference_nonneg`` / ``reference_general``: the same ops composed from stock PyTorch
  (:mod:`inn_cuda.reference`): four plain layers of the sign-split weights / the exact
  elementwise interval product in row chunks. ``reference_general`` is skipped above
  ``reference_general_max_macs`` (it runs at a few million multiply-adds per second on a CPU).

Timing: the implementations of one case and phase run interleaved (one call of each per round,
:func:`.timing.time_interleaved`); each row keeps the paired ratios to the others, which the
tables print (the median of the per-round ratios and its spread), and the load average.

Phases: ``forward`` (no autograd graph) and ``forward_backward`` (gradients of every input and
weight bound, and of the bias, by ``torch.autograd.grad`` with fixed random upstream gradients).
Interval ops run with ``inn_cuda.check_bounds(False)``: the ``lo <= hi`` input check is not part
of the layer.

GEMM-equivalent throughput: one GEMM-equivalent is ``W = 2 * M * N * K`` flops, the plain
layer's forward GEMM (``Case.macs`` = M * N * K). The work credited to a call is ``W`` per bound
and pass: plain forward ``W``, interval forward ``2 W`` (two bounds), plain forward+backward
``3 W`` (forward, input gradient, weight gradient), interval forward+backward ``6 W``;
throughput = work / median time. The same credit for every interval implementation, so a fused
kernel at the plain layer's GFLOP/s computes both bounds at the hardware's GEMM rate; general
mode does more arithmetic per term and shows it as lower throughput.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .. import ops as interval_ops
from .. import reference
from .._algorithm import algorithm, path_counts, reset_path_counts
from .._validation import check_bounds
from .cases import Case
from .memory import peak_bytes
from .timing import load_average, paired_ratios, repeats_for, time_interleaved, warm_up

IMPLS = ("plain", "fused_nonneg", "fused_general", "library_nonneg", "point_ibp",
         "reference_nonneg", "reference_general")
#: the inn_cuda.set_algorithm setting each implementation runs under
ALGORITHM = {"fused_nonneg": "fused", "fused_general": "fused", "library_nonneg": "library",
             "point_ibp": "auto"}
PHASES = ("forward", "forward_backward")
PLAIN = {"linear": F.linear, "conv2d": F.conv2d, "conv_transpose2d": F.conv_transpose2d}
FUSED = {"linear": interval_ops.interval_linear, "conv2d": interval_ops.interval_conv2d,
         "conv_transpose2d": interval_ops.interval_conv_transpose2d}


def gemm_work(case: Case, impl: str, phase: str) -> int:
    """Flops credited to one call (see the module docstring)."""
    bounds = 1 if impl == "plain" else 2
    passes = 1 if phase == "forward" else 3
    return 2 * case.macs * bounds * passes


def make_operands(case: Case, device: str, dtype: torch.dtype, seed: int = 0) -> dict:
    """Point and interval operands (non-negative and signed inputs) and upstream gradients,
    drawn on the CPU from ``seed`` (the same values on every device) and moved."""
    gen = torch.Generator().manual_seed(seed)
    fan_in = case.c_in * case.kernel ** 2

    def draw(shape, scale=1.0):
        return (torch.randn(shape, generator=gen) * scale).to(device, dtype)

    x, w, b = draw(case.x_shape), draw(case.w_shape, fan_in ** -0.5), draw((case.c_out,), 0.1)
    x_width = draw(case.x_shape).abs() * 0.1
    return dict(
        x=x, w=w, b=b,
        x_nonneg=(x.abs(), x.abs() + x_width), x_signed=(x, x + x_width),
        w_bounds=(w - 0.05 * w.abs(), w + 0.05 * w.abs()), b_bounds=(b - 0.01, b + 0.01),
        grad=draw(case.y_shape), grad_bounds=(draw(case.y_shape), draw(case.y_shape)))


def _layer_options(case: Case, impl: str) -> dict:
    if case.op == "linear":
        return {}
    if impl.startswith("reference"):  # the reference ops take every argument, as pairs
        pairs = dict(stride=(case.stride,) * 2, padding=(case.padding,) * 2)
        if case.op == "conv2d":
            return dict(pairs, dilation=(1, 1), groups=1)
        return dict(pairs, output_padding=(0, 0), groups=1, dilation=(1, 1))
    return dict(stride=case.stride, padding=case.padding)


def make_forward(case: Case, impl: str, operands: dict, requires_grad: bool = False):
    """``(forward, inputs, upstream gradients)``: ``forward()`` runs one implementation on its
    leaf ``inputs`` (point or interval operands) and returns its outputs as a tuple."""
    options = _layer_options(case, impl)
    if impl == "plain":
        inputs = [t.detach().requires_grad_(requires_grad)
                  for t in (operands["x"], operands["w"], operands["b"])]
        layer = PLAIN[case.op]
        return (lambda: (layer(*inputs, **options),)), inputs, (operands["grad"],)
    if impl == "point_ibp":
        inputs = [t.detach().requires_grad_(requires_grad)
                  for t in (*operands["x_signed"], operands["w"], operands["b"])]
        fused = FUSED[case.op]
        return (lambda: fused(inputs[0], inputs[1], inputs[2], inputs[2], inputs[3], inputs[3],
                              **options)), inputs, operands["grad_bounds"]
    nonneg = impl.endswith("nonneg")
    inputs = [t.detach().requires_grad_(requires_grad)
              for t in (*operands["x_nonneg" if nonneg else "x_signed"], *operands["w_bounds"],
                        *operands["b_bounds"])]
    if impl.startswith(("fused", "library")):
        fused = FUSED[case.op]
        return (lambda: fused(*inputs, **options, input_nonneg=nonneg)), inputs, \
            operands["grad_bounds"]
    composed = getattr(reference, f"interval_{case.op}")
    return (lambda: composed(*inputs, *options.values(), nonneg)), inputs, \
        operands["grad_bounds"]


def make_call(case: Case, impl: str, phase: str, operands: dict) -> Callable[[], None]:
    """A no-argument callable running one implementation's forward (and backward)."""
    backward = phase == "forward_backward"
    forward, inputs, grads = make_forward(case, impl, operands, requires_grad=backward)
    if not backward:
        def call():
            with torch.no_grad():
                forward()
        return call

    def call():
        torch.autograd.grad(forward(), inputs, grads)
    return call


def _under_algorithm(call: Callable[[], None], name: str) -> Callable[[], None]:
    """``call`` run under ``inn_cuda.set_algorithm(name)`` (restored after each call), so the
    interleaved rounds can alternate implementations that force different paths."""
    def run():
        with algorithm(name):
            call()
    return run


def skip_reason(case: Case, impl: str, reference_general_max_macs: int) -> Optional[str]:
    if impl == "reference_general" and case.macs > reference_general_max_macs:
        return (f"reference general mode skipped above {reference_general_max_macs:.3g} "
                f"multiply-adds (this case: {case.macs:.3g})")
    return None


def run_case(case: Case, device: str, dtype: torch.dtype, *, impls: Sequence[str] = IMPLS,
             phases: Sequence[str] = PHASES, budget_s: float, min_repeats: int,
             max_repeats: int, reference_general_max_macs: int) -> List[Dict]:
    """One result dict per (impl, phase): the timing statistics (seconds), throughput, peak
    memory and the paired ratios to every other implementation of the phase (``ratio_to``,
    ``cpu_ratio_to``: see :func:`.timing.time_interleaved`), or ``skipped`` with the reason.
    The implementations of a phase are timed interleaved, ``budget_s`` each."""
    operands = make_operands(case, device, dtype)
    rows = []
    for phase in phases:
        phase_rows, calls, firsts = {}, {}, []
        for impl in impls:
            row = dict(op=case.op, group=case.group, case=case.name, shape=case.as_dict(),
                       device=device, dtype=str(dtype).replace("torch.", ""), impl=impl,
                       phase=phase, work_flops=gemm_work(case, impl, phase))
            phase_rows[impl] = row
            reason = skip_reason(case, impl, reference_general_max_macs)
            if reason:
                row["skipped"] = reason
                continue
            calls[impl] = _under_algorithm(make_call(case, impl, phase, operands),
                                           ALGORITHM.get(impl, "auto"))
            with check_bounds(False):
                reset_path_counts()
                # warm-up (library handles, caches) before the memory and time measurements
                firsts.append(warm_up(calls[impl], device))
                row["peak_bytes"] = peak_bytes(calls[impl], device)
                if impl in ALGORITHM:  # which path served the inn_cuda ops (fused / library)
                    row["path"] = {op: max(c, key=c.get) for op, c in path_counts().items()}
        if calls:
            repeats = repeats_for(sum(firsts), budget_s=budget_s * len(calls),
                                  min_repeats=min_repeats, max_repeats=max_repeats)
            load = load_average()
            with check_bounds(False):
                timings = time_interleaved(calls, device, repeats)
            for impl, timing in timings.items():
                row = phase_rows[impl]
                row["load_1min"] = load
                row["time_s"] = timing.wall.as_dict()
                row["time_samples_s"] = timing.wall_samples
                row["ratio_to"] = {other: paired_ratios(timing.wall_samples,
                                                        t.wall_samples).as_dict()
                                   for other, t in timings.items() if other != impl}
                if timing.cpu is not None:
                    row["cpu_time_s"] = timing.cpu.as_dict()
                    row["cpu_time_samples_s"] = timing.cpu_samples
                    row["cpu_ratio_to"] = {other: paired_ratios(timing.cpu_samples,
                                                                t.cpu_samples).as_dict()
                                           for other, t in timings.items() if other != impl}
                row["gflops"] = row["work_flops"] / timing.wall.median / 1e9
        rows += phase_rows.values()
        del calls
    if torch.device(device).type == "cuda":
        del operands
        torch.cuda.empty_cache()
    return rows


def dtypes_for(device: str, requested: Optional[Iterable[str]] = None) -> List[torch.dtype]:
    """float32 everywhere, float16 and bfloat16 on CUDA too; ``requested`` narrows the list
    (float64 is available on request)."""
    names = list(requested) if requested else (
        ["float32", "float16", "bfloat16"] if torch.device(device).type == "cuda" else ["float32"])
    if torch.device(device).type == "cpu":
        names = [n for n in names if n not in ("float16", "bfloat16")]  # CUDA-only dtypes
    return [getattr(torch, n) for n in names]
