"""Benchmark of the fused interval convolutions against the reference composition and plain
PyTorch convolutions.

For U-Net-like and DnCNN-like layers it measures, per device and dtype, the forward and the
forward+backward time and the peak extra memory of

  plain              F.conv2d / F.conv_transpose2d on point tensors (the floor),
  fused_nonneg       inn_cuda's op with input_nonneg=True,
  fused_general      inn_cuda's op with input_nonneg=False,
  reference_nonneg   inn_cuda.reference (four plain convolutions of the sign-split weights),
  reference_general  inn_cuda.reference (im2col and the exact elementwise interval product;
                     slow: full-size CPU layers run it only with --reference-general),

writes every sample to JSON (--out) and prints the times and peak memory as ratios to plain.

Timing: one warm-up call, then repeated calls until --budget-s seconds have passed (at least 3,
at most --max-repeats; a call longer than the budget is measured once); CUDA calls are timed with
CUDA events. Reported: median, min, max and interquartile range of the wall-clock time, and on
the CPU also of the process CPU time (all threads), which a loaded machine disturbs less (use it
with --threads 1, --table cpu). The interval ops run with inn_cuda.check_bounds(False): the
lo <= hi input check is not part of the kernel.

Peak memory (one separate call): on CUDA, torch.cuda.max_memory_allocated() minus the memory
allocated before the call; on the CPU, the peak of the running sum of the CPU allocator's
allocations and frees during the call, read from the torch profiler's memory events
(profile_memory=True). Both count the tensors the call allocates (outputs, gradients, buffers,
temporaries); memory a library allocates outside the PyTorch allocator is not seen.

    python benchmarks/bench_conv.py --quick                       # small shapes, < 1 min on CPU
    python benchmarks/bench_conv.py --device cuda --out conv.json # full shapes
    python benchmarks/bench_conv.py --device cpu --threads 1 --table cpu --dtype float32
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm

import inn_cuda
from inn_cuda import reference


@dataclass(frozen=True)
class Layer:
    name: str
    transposed: bool
    batch: int
    in_channels: int
    out_channels: int
    kernel: int
    size: int  # input height = width
    stride: int = 1
    padding: int = 0

    def describe(self) -> str:
        kind = "convT" if self.transposed else "conv"
        return (f"{kind} {self.in_channels}->{self.out_channels} {self.kernel}x{self.kernel}"
                f"{f' s{self.stride}' if self.stride > 1 else ''} "
                f"{self.size}x{self.size} b{self.batch}")


FULL_LAYERS = [
    Layer("unet_64x64_3x3_128px", False, 8, 64, 64, 3, 128, padding=1),
    Layer("unet_256to128_3x3_64px", False, 8, 256, 128, 3, 64, padding=1),
    Layer("unet_1x1_output_128px", False, 8, 64, 1, 1, 128),
    Layer("unet_up_128to64_2x2s2_64px", True, 8, 128, 64, 2, 64, stride=2),
    Layer("dncnn_64x64_3x3_40px", False, 64, 64, 64, 3, 40, padding=1),
]

QUICK_LAYERS = [  # the same layers, shrunk
    Layer("unet_64x64_3x3_128px", False, 2, 16, 16, 3, 16, padding=1),
    Layer("unet_256to128_3x3_64px", False, 2, 32, 16, 3, 8, padding=1),
    Layer("unet_1x1_output_128px", False, 2, 16, 1, 1, 16),
    Layer("unet_up_128to64_2x2s2_64px", True, 2, 16, 8, 2, 8, stride=2),
    Layer("dncnn_64x64_3x3_40px", False, 8, 16, 16, 3, 8, padding=1),
]

VARIANTS = ["plain", "fused_nonneg", "fused_general", "reference_nonneg", "reference_general"]


def make_inputs(layer: Layer, variant: str, device: str, dtype: torch.dtype,
                requires_grad: bool) -> dict:
    """Point operands for `plain`, interval operands otherwise (non-negative inputs for the
    nonneg variants, signed ones for the general variants)."""
    x_shape = (layer.batch, layer.in_channels, layer.size, layer.size)
    w_shape = ((layer.in_channels, layer.out_channels, layer.kernel, layer.kernel)
               if layer.transposed else
               (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel))
    scale = (layer.in_channels * layer.kernel ** 2) ** -0.5
    opts = dict(device=device, dtype=dtype)
    w = torch.randn(w_shape, **opts) * scale
    b = torch.randn(layer.out_channels, **opts) * 0.1
    x = torch.randn(x_shape, **opts)
    if variant == "plain":
        tensors = dict(x=x, w=w, b=b)
    else:
        x_lo = x.abs() if variant.endswith("nonneg") else x
        tensors = dict(x_lo=x_lo, x_hi=x_lo + 0.1 * torch.rand(x_shape, **opts),
                       w_lo=w - 0.05 * w.abs(), w_hi=w + 0.05 * w.abs(),
                       b_lo=b - 0.01, b_hi=b + 0.01)
    for t in tensors.values():
        t.requires_grad_(requires_grad)
    return tensors


def forward_fn(layer: Layer, variant: str) -> Callable[[dict], tuple]:
    conv = dict(stride=layer.stride, padding=layer.padding)
    pairs = dict(stride=(layer.stride,) * 2, padding=(layer.padding,) * 2)
    if variant == "plain":
        plain = F.conv_transpose2d if layer.transposed else F.conv2d
        return lambda t: (plain(t["x"], t["w"], t["b"], **conv),)
    nonneg = variant.endswith("nonneg")
    operands = ("x_lo", "x_hi", "w_lo", "w_hi", "b_lo", "b_hi")
    if variant.startswith("fused"):
        op = inn_cuda.interval_conv_transpose2d if layer.transposed else inn_cuda.interval_conv2d
        return lambda t: op(*(t[k] for k in operands), **conv, input_nonneg=nonneg)
    if layer.transposed:
        return lambda t: reference.interval_conv_transpose2d(
            *(t[k] for k in operands), pairs["stride"], pairs["padding"], (0, 0), 1, (1, 1),
            nonneg)
    return lambda t: reference.interval_conv2d(*(t[k] for k in operands), pairs["stride"],
                                               pairs["padding"], (1, 1), 1, nonneg)


def make_call(layer: Layer, variant: str, device: str, dtype: torch.dtype,
              backward: bool) -> Callable[[], None]:
    tensors = make_inputs(layer, variant, device, dtype, requires_grad=backward)
    forward = forward_fn(layer, variant)

    def call():
        with torch.set_grad_enabled(backward):
            outputs = forward(tensors)
            if backward:
                torch.autograd.backward(outputs, [torch.ones_like(y) for y in outputs])
                for t in tensors.values():
                    t.grad = None

    return call


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(call: Callable[[], None], device: str, budget_s: float,
              max_repeats: int) -> Tuple[List[float], List[float]]:
    """Wall-clock and process CPU milliseconds per call (CPU time: CPU runs only), after one
    warm-up call."""
    def timed() -> Tuple[float, float]:
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            return start.elapsed_time(end), float("nan")
        begin, begin_cpu = time.perf_counter(), time.process_time()
        call()
        return (time.perf_counter() - begin) * 1e3, (time.process_time() - begin_cpu) * 1e3

    warm, _ = timed()
    min_repeats = 1 if warm > budget_s * 1e3 else 3
    wall: List[float] = []
    cpu: List[float] = []
    deadline = time.perf_counter() + budget_s
    while len(wall) < max_repeats and (len(wall) < min_repeats or time.perf_counter() < deadline):
        wall_ms, cpu_ms = timed()
        wall.append(wall_ms)
        cpu.append(cpu_ms)
    return wall, cpu


def peak_memory(call: Callable[[], None], device: str) -> int:
    """Peak bytes allocated by one call on top of what was allocated before it."""
    if device == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        synchronize(device)
        return torch.cuda.max_memory_allocated() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def summarise(samples: List[float], prefix: str = "") -> dict:
    ordered = sorted(samples)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {f"{prefix}median_ms": statistics.median(ordered), f"{prefix}min_ms": ordered[0],
            f"{prefix}max_ms": ordered[-1], f"{prefix}iqr_ms": quartiles[2] - quartiles[0],
            f"{prefix}samples_ms": samples}


def served_by() -> Dict[str, Dict[str, str]]:
    return {op: inn_cuda._backend.SERVED_BY[op] for op in
            ("interval_conv2d", "interval_conv2d_backward_input",
             "interval_conv2d_backward_weight", "interval_conv_transpose2d",
             "interval_conv_transpose2d_backward_input",
             "interval_conv_transpose2d_backward_weight")}


def run(args) -> dict:
    layers = [layer for layer in (QUICK_LAYERS if args.quick else FULL_LAYERS)
              if not args.layers or layer.name in args.layers]
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            raise SystemExit("--device cuda: no GPU visible")
        devices.remove("cuda")
    jobs = []
    for device in devices:
        for dtype_name in args.dtype:
            if device == "cpu" and dtype_name in ("float16", "bfloat16"):
                continue  # CUDA-only dtypes
            for layer in layers:
                for variant in VARIANTS:
                    for backward in (False, True):
                        jobs.append((device, dtype_name, layer, variant, backward))
    results = []
    with inn_cuda.check_bounds(False):
        for device, dtype_name, layer, variant, backward in tqdm(jobs, desc="bench_conv",
                                                                 file=sys.stderr):
            entry = dict(layer=layer.name, shape=asdict(layer), device=device, dtype=dtype_name,
                         variant=variant, mode="forward_backward" if backward else "forward")
            slow = (variant == "reference_general" and device == "cpu" and not args.quick
                    and not args.reference_general)
            if slow:
                entry["skipped"] = "reference_general on full-size CPU layers needs " \
                                   "--reference-general (minutes per call)"
                results.append(entry)
                continue
            torch.manual_seed(0)
            call = make_call(layer, variant, device, getattr(torch, dtype_name), backward)
            wall, cpu = time_call(call, device, args.budget_s, args.max_repeats)
            entry.update(summarise(wall))
            if device == "cpu":
                entry.update(summarise(cpu, prefix="cpu_"))
            entry["peak_bytes"] = peak_memory(call, device)
            results.append(entry)
            del call
            if device == "cuda":
                torch.cuda.empty_cache()
    return dict(meta=metadata(args, devices), results=results)


def metadata(args, devices) -> dict:
    return dict(
        command=" ".join(sys.argv), date=time.strftime("%Y-%m-%d %H:%M:%S"),
        torch=torch.__version__, inn_cuda=inn_cuda.__version__,
        cpu_isa=inn_cuda._backend.BUILD.get("cpu_isa"), cpu_threads=torch.get_num_threads(),
        machine=platform.processor() or platform.machine(), devices=devices,
        gpu=torch.cuda.get_device_name(0) if "cuda" in devices else None,
        served_by=served_by(), quick=args.quick, budget_s=args.budget_s,
        check_bounds=False,
    )


def print_table(report: dict, stat: str = "wall") -> None:
    """One row per (device, dtype, layer, mode): plain time and memory, then every variant's time
    and peak memory as a multiple of plain's. stat "cpu": process CPU time instead of wall-clock
    for the CPU rows (robust on a loaded machine when run with --threads 1)."""
    key_ms = "cpu_median_ms" if stat == "cpu" else "median_ms"
    rows: Dict[tuple, Dict[str, dict]] = {}
    for entry in report["results"]:
        key = (entry["device"], entry["dtype"], entry["layer"], entry["mode"])
        rows.setdefault(key, {})[entry["variant"]] = entry
    others = VARIANTS[1:]
    header = (f"{'device':6} {'dtype':8} {'layer':28} {'mode':8} {'plain ms':>9} {'plain MB':>9} "
              + " ".join(f"{v:>20}" for v in others))
    print(f"median {'CPU' if stat == 'cpu' else 'wall-clock'} time and peak memory as multiples "
          f"of plain (time x / memory x)")
    print(header)
    print("-" * len(header))
    for (device, dtype, layer, mode), variants in rows.items():
        plain = variants["plain"]

        def ms(entry):
            return entry.get(key_ms, entry.get("median_ms"))

        cells = []
        for name in others:
            entry = variants.get(name, {})
            if "median_ms" not in entry:
                cells.append(f"{'skipped':>20}")
                continue
            t = ms(entry) / max(ms(plain), 1e-9)
            m = entry["peak_bytes"] / max(plain["peak_bytes"], 1)
            cells.append(f"{f'{t:.2f}x / {m:.2f}x':>20}")
        print(f"{device:6} {dtype:8} {layer:28} {'fwd' if mode == 'forward' else 'fwd+bwd':8} "
              f"{ms(plain):9.2f} {plain['peak_bytes'] / 2**20:9.1f} " + " ".join(cells))
    served = report["meta"]["served_by"]
    fallbacks = sorted({f"{op} on {dev}" for op, devs in served.items() for dev, how in devs.items()
                        if how == "reference" and dev in report["meta"]["devices"]})
    if fallbacks:
        print("note: served by the reference fallback, not a kernel: " + ", ".join(fallbacks))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="where to run (all: the CPU and, if visible, the GPU)")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                        choices=["float32", "float64", "float16", "bfloat16"])
    parser.add_argument("--quick", action="store_true", help="small shapes (< 1 min on a CPU)")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="time budget per measurement (default 0.2 s quick, 5 s CPU, 1 s CUDA)")
    parser.add_argument("--max-repeats", type=int, default=30)
    parser.add_argument("--layers", nargs="+", choices=[layer.name for layer in FULL_LAYERS],
                        help="only these layers (default: all)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for the CPU runs")
    parser.add_argument("--table", choices=["wall", "cpu"], default="wall",
                        help="the time the printed table compares (cpu: process CPU time)")
    parser.add_argument("--table-from", metavar="JSON",
                        help="only print the table of an earlier --out report")
    parser.add_argument("--reference-general", action="store_true",
                        help="also time reference_general on full-size CPU layers")
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 0.2 if args.quick else (1.0 if args.device == "cuda" else 5.0)
    if args.device == "cpu" and {"float16", "bfloat16"} & set(args.dtype):
        parser.error("float16 and bfloat16 are CUDA-only dtypes")
    if args.table_from:
        with open(args.table_from) as f:
            print_table(json.load(f), args.table)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print_table(report, args.table)


if __name__ == "__main__":
    main()
