"""Benchmark of the fused interval linear layer against the reference composition and plain
F.linear (the floor: one ordinary GEMM of the same shape).

For every shape (batch x K -> N), device and dtype it times the forward and forward+backward
(gradients for x and w of both bounds) of:
    plain          torch.nn.functional.linear on point tensors
    fused_nonneg   inn_cuda.interval_linear(..., input_nonneg=True)
    fused_general  inn_cuda.interval_linear(..., input_nonneg=False)
    ref_nonneg     inn_cuda.reference.interval_linear(..., input_nonneg=True)  (4 library GEMMs)
    ref_general    inn_cuda.reference.interval_linear(..., input_nonneg=False) (elementwise; only
                   on small problems, it needs seconds per call on big ones)
and reports medians, the spread (interquartile range / median) and peak memory, a table of
ratios (fused / reference of the same mode, fused / plain) and, with --out, a JSON file.

Timing: after warm-up, the median of --repeats calls (CUDA: CUDA events around each call, after a
synchronize). Bound checks of the inputs are switched off (inn_cuda.check_bounds(False)) so the
layer itself is timed. CPU timings are sensitive to other load on the machine: the script prints
the load average (os.getloadavg) at the start and end of each device.

Peak memory of one forward+backward beyond its inputs. CUDA: torch.cuda.max_memory_allocated()
minus what was allocated before. CPU: each (shape, implementation) runs in a fresh subprocess
(glibc told to return every block of 64 KiB or more to the system on free, so freed memory is
not silently reused): one warm-up call, then the kernel's peak-RSS mark is reset (5 written to
/proc/self/clear_refs) and VmHWM - VmRSS after a second call is reported: outputs, gradients and
temporaries, to the page. Memory kept from call to call (the fused kernels' per-thread packing
buffers, at most a few MiB; library caches) is allocated in the warm-up and not counted.
"nan" where /proc does not allow the measurement.

    PYTHONPATH=. python benchmarks/bench_linear.py [--quick] [--device cpu|cuda|all] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import inn_cuda
from inn_cuda import reference

SHAPES = [  # (batch, K, N)
    (1024, 1024, 1024),
    (8, 1024, 1024),
    (64, 784, 512),      # MLP layer, MNIST-sized input
    (4096, 256, 256),    # 1x1 convolution over a 64x64 map
    (256, 4096, 1024),   # wide layer, moderate batch
    (2048, 512, 128),
]
QUICK_SHAPES = [(1024, 1024, 1024), (8, 1024, 1024), (256, 512, 512)]
IMPLS = ["plain", "fused_nonneg", "fused_general", "ref_nonneg", "ref_general"]
REF_GENERAL_MAX_TERMS = 1 << 25  # batch * K * N beyond which ref_general is skipped


def make_inputs(batch, k, n, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_lo = torch.rand(batch, k, generator=gen)
    x_signed = torch.randn(batch, k, generator=gen)
    w = torch.randn(n, k, generator=gen) / k ** 0.5
    b = torch.randn(n, generator=gen)
    g = torch.randn(batch, n, generator=gen)
    cast = lambda t: t.to(device, dtype)  # noqa: E731
    return {
        "x_nonneg": (cast(x_lo), cast(x_lo + 0.1)),
        "x_signed": (cast(x_signed), cast(x_signed + 0.1)),
        "w": (cast(w - 0.01), cast(w + 0.01)),
        "b": (cast(b - 0.01), cast(b + 0.01)),
        "g": (cast(g), cast(g.flip(0))),
        "x_point": cast(x_lo), "w_point": cast(w), "b_point": cast(b), "g_point": cast(g),
    }


def make_call(impl, inputs, backward):
    """A no-argument callable running the forward (and backward) of one implementation."""
    def leaves(*tensors):
        return [t.detach().requires_grad_(backward) for t in tensors]

    if impl == "plain":
        x, w = leaves(inputs["x_point"], inputs["w_point"])
        b, g = inputs["b_point"], inputs["g_point"]

        def run():
            y = F.linear(x, w, b)
            if backward:
                torch.autograd.grad(y, (x, w), g)
        return run
    nonneg = impl.endswith("nonneg")
    x_lo, x_hi = inputs["x_nonneg" if nonneg else "x_signed"]
    x_lo, x_hi, w_lo, w_hi = leaves(x_lo, x_hi, *inputs["w"])
    b_lo, b_hi = inputs["b"]
    g_lo, g_hi = inputs["g"]
    layer = inn_cuda.interval_linear if impl.startswith("fused") else reference.interval_linear

    def run():
        y = layer(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg=nonneg)
        if backward:
            torch.autograd.grad(y, (x_lo, x_hi, w_lo, w_hi), (g_lo, g_hi))
    return run


def time_call(run, device, repeats, budget_s):
    """Median and interquartile range (seconds) after warm-up; fewer repeats for slow calls."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    run()
    sync()
    first = time.perf_counter() - start
    repeats = max(3, min(repeats, int(budget_s / max(first, 1e-6))))
    run()
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            sync()
            begin.record()
            run()
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            run()
            samples.append(time.perf_counter() - t0)
    quartiles = statistics.quantiles(samples, n=4) if len(samples) >= 4 else [min(samples), 0,
                                                                               max(samples)]
    return statistics.median(samples), quartiles[2] - quartiles[0], len(samples)


def cuda_peak_bytes(run):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def read_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def measure_cpu_peak_here(shape, dtype_name, impl):
    """Runs in the subprocess: peak resident memory added by one forward+backward."""
    dtype = getattr(torch, dtype_name)
    inputs = make_inputs(*shape, dtype, "cpu")
    run = make_call(impl, inputs, backward=True)
    with inn_cuda.check_bounds(False):
        run()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = read_status_kb("VmRSS")
        run()
        peak = read_status_kb("VmHWM")
    return (peak - before) * 1024


def cpu_peak_bytes(shape, dtype, impl):
    code = ("import json, sys; sys.path.insert(0, {here!r}); import bench_linear as b; "
            "print(json.dumps(b.measure_cpu_peak_here({shape!r}, {dtype!r}, {impl!r})))").format(
        here=os.path.dirname(os.path.abspath(__file__)), shape=tuple(shape),
        dtype=str(dtype).replace("torch.", ""), impl=impl)
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()),
               MALLOC_MMAP_THRESHOLD_=str(64 * 1024), MALLOC_TRIM_THRESHOLD_="0")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def dtypes_for(device):
    return [torch.float32] + ([torch.float16, torch.bfloat16] if device == "cuda" else [])


def bench_device(device, shapes, repeats, budget_s, memory):
    results = []
    what = (torch.cuda.get_device_name() if device == "cuda"
            else f"threads={torch.get_num_threads()}")
    print(f"\n== {device} ({what}, load average {os.getloadavg()[0]:.2f}) ==", flush=True)
    for dtype in dtypes_for(device):
        for shape in shapes:
            inputs = make_inputs(*shape, dtype, device)
            for impl in IMPLS:
                row = {"device": device, "dtype": str(dtype).replace("torch.", ""),
                       "batch": shape[0], "k": shape[1], "n": shape[2], "impl": impl}
                if impl == "ref_general" and shape[0] * shape[1] * shape[2] > REF_GENERAL_MAX_TERMS:
                    row["skipped"] = "reference general mode too slow at this size"
                    results.append(row)
                    continue
                with inn_cuda.check_bounds(False):
                    for phase, backward in (("forward", False), ("forward_backward", True)):
                        med, iqr, count = time_call(make_call(impl, inputs, backward), device,
                                                    repeats, budget_s)
                        row[phase + "_s"], row[phase + "_iqr_s"], row[phase + "_repeats"] = \
                            med, iqr, count
                    if memory:
                        row["peak_bytes"] = (cuda_peak_bytes(make_call(impl, inputs, True))
                                             if device == "cuda" else cpu_peak_bytes(shape, dtype,
                                                                                     impl))
                results.append(row)
            print_shape(results, device, dtype, shape)
    print(f"(load average at the end: {os.getloadavg()[0]:.2f})")
    return results


def print_shape(results, device, dtype, shape):
    dtype = str(dtype).replace("torch.", "")
    rows = {r["impl"]: r for r in results if r["device"] == device and r["dtype"] == dtype
            and (r["batch"], r["k"], r["n"]) == tuple(shape)}
    print(f"\n{device} {dtype} batch={shape[0]} K={shape[1]} N={shape[2]}")
    print(f"  {'impl':14s} {'fwd ms':>9s} {'iqr%':>5s} {'fwd+bwd ms':>11s} {'iqr%':>5s} "
          f"{'peak MiB':>9s} {'fwd/ref':>8s} {'f+b/ref':>8s} {'fwd/plain':>9s} {'f+b/plain':>9s}")
    plain = rows.get("plain", {})
    for impl in IMPLS:
        r = rows[impl]
        if "skipped" in r:
            print(f"  {impl:14s} skipped: {r['skipped']}")
            continue
        ref = rows.get("ref_" + impl.split("_")[1], {}) if impl.startswith("fused") else {}

        def ratio(a, b, key):
            return f"{a[key] / b[key]:.2f}x" if key in a and key in b else "-"
        peak = r.get("peak_bytes")
        print(f"  {impl:14s} {r['forward_s'] * 1e3:9.3f}"
              f" {100 * r['forward_iqr_s'] / r['forward_s']:5.1f}"
              f" {r['forward_backward_s'] * 1e3:11.3f}"
              f" {100 * r['forward_backward_iqr_s'] / r['forward_backward_s']:5.1f}"
              f" {peak / 2**20 if peak is not None else float('nan'):9.1f}"
              f" {ratio(r, ref, 'forward_s'):>8s} {ratio(r, ref, 'forward_backward_s'):>8s}"
              f" {ratio(r, plain, 'forward_s'):>9s} {ratio(r, plain, 'forward_backward_s'):>9s}",
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three shapes, fewer repeats")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="'all': cpu, and cuda when a GPU is visible")
    parser.add_argument("--out", help="write the results as JSON to this path")
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default 25, "
                                                    "quick 9)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    args = parser.parse_args(argv)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            parser.error("--device cuda but no GPU is visible")
        devices.remove("cuda")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = args.repeats or (9 if args.quick else 25)
    budget_s = 2.0 if args.quick else 6.0
    info = inn_cuda.info()
    print(f"inn_cuda {info['inn_cuda']}, torch {info['torch']}, cpu_isa {info['cpu_isa']}")
    results = []
    for device in devices:
        results += bench_device(device, shapes, repeats, budget_s, not args.no_memory)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"info": {k: info[k] for k in ("inn_cuda", "torch", "cpu_isa")},
                       "threads": torch.get_num_threads(), "results": results}, f, indent=1)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
