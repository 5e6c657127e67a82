"""The general-mode (signed input) interval convolutions and linear layers on the CPU against the
plain layer, with weights of realistic width (w +- 5 % |w|, none straddling zero) and with a
share of them straddling zero (only those need the two-candidate product: see
csrc/cpu/pixel_simd_kernels.h and gemm_simd_kernels.h).
Interleaved repeats (plain, interval, plain, ...) so that a busy machine slows both alike; prints
the median of the per-repeat time ratios and the load average. --backward times forward and
backward (autograd: every input and weight bound's gradient) against the plain layer's;
--nonneg runs the non-negative mode instead (inputs [|x| - r, |x| + r] clamped at 0,
input_nonneg=True), whose forward runs on the same weight classes.

    python benchmarks/general_weights_cpu.py [--repeats 15] [--threads 2] [--isa avx2]
        [--straddling 0 0.1 0.5] [--backward] [--nonneg]
"""

import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F

import inn_cuda

LAYERS = [  # (name, op, x shape, w shape, stride, padding; linear layers: unused)
    ("conv 8->8 3x3, 16x64²", "conv2d", (16, 8, 64, 64), (8, 8, 3, 3), 1, 1),
    ("conv 16->16 3x3, 16x32²", "conv2d", (16, 16, 32, 32), (16, 16, 3, 3), 1, 1),
    ("conv 32->32 3x3, 8x64²", "conv2d", (8, 32, 64, 64), (32, 32, 3, 3), 1, 1),
    ("conv 64->64 3x3, 8x32²", "conv2d", (8, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    ("conv 64->32 3x3, 16x16²", "conv2d", (16, 64, 16, 16), (32, 64, 3, 3), 1, 1),
    ("conv 128->128 3x3, 4x32²", "conv2d", (4, 128, 32, 32), (128, 128, 3, 3), 1, 1),
    ("convT 128->64 2x2 s2, 1x64²", "conv_transpose2d", (1, 128, 64, 64), (128, 64, 2, 2), 2, 0),
    ("linear 512x512 -> 512", "linear", (512, 512), (512, 512), None, None),
    ("linear 1024x1024 -> 1024", "linear", (1024, 1024), (1024, 1024), None, None),
]


def operands(x_shape, w_shape, straddling, gen):
    x = torch.randn(x_shape, generator=gen)
    x_r = 0.1 * x.abs() + 0.01
    w = torch.randn(w_shape, generator=gen) * math.prod(w_shape[1:]) ** -0.5
    r = 0.05 * w.abs()
    r = torch.where(torch.rand(w_shape, generator=gen) < straddling, 1.5 * w.abs() + 1e-3, r)
    return x, w, (x - x_r, x + x_r), (w - r, w + r)


def with_backward(run, tensors):
    """run() and the backward of its outputs (ones as their gradient) into every tensor."""
    for t in tensors:
        t.requires_grad_(True)

    def forward_backward():
        out = run()
        outs = out if isinstance(out, tuple) else (out,)
        torch.autograd.grad(outs, tensors, [torch.ones_like(o) for o in outs])
    return forward_backward


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--isa", default=None, help="CPU kernels to use (default: the best)")
    parser.add_argument("--straddling", type=float, nargs="+", default=[0.0, 0.1, 0.5],
                        help="shares of the weights whose interval straddles zero")
    parser.add_argument("--backward", action="store_true",
                        help="time forward + backward (all gradients) instead of the forward")
    parser.add_argument("--nonneg", action="store_true",
                        help="non-negative mode (input_nonneg=True) instead of general mode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.isa:
        inn_cuda._backend.set_cpu_isa(args.isa)
    print(f"load average at start: {os.getloadavg()[0]:.2f}, {torch.get_num_threads()} threads, "
          f"CPU kernels: {args.isa or 'best'}, {'forward + backward' if args.backward else 'forward'}"
          f", {'non-negative' if args.nonneg else 'general'} mode")
    print("| layer | straddling weights | plain ms | general ms | general ÷ plain |")
    print("|---|---|---|---|---|")
    for share in args.straddling:
        for name, op, x_shape, w_shape, stride, padding in LAYERS:
            x, w, (x_lo, x_hi), (w_lo, w_hi) = operands(x_shape, w_shape, share,
                                                        torch.Generator().manual_seed(0))
            if args.nonneg:
                x = x.abs()
                x_lo, x_hi = (x - 0.1 * x - 0.01).clamp(min=0), x + 0.1 * x + 0.01
            plain = getattr(F, op)
            interval = getattr(inn_cuda, "interval_" + op)
            geometry = {} if op == "linear" else dict(stride=stride, padding=padding)
            runs = (lambda: plain(x, w, **geometry),
                    lambda: interval(x_lo, x_hi, w_lo, w_hi, input_nonneg=args.nonneg,
                                     **geometry))
            if args.backward:
                runs = tuple(with_backward(run, tensors) for run, tensors in
                             zip(runs, ((x, w), (x_lo, x_hi, w_lo, w_hi))))
            for run in runs:
                run()
            times = [[], []]
            for _ in range(args.repeats):
                for i, run in enumerate(runs):
                    start = time.perf_counter()
                    run()
                    times[i].append(time.perf_counter() - start)
            ratio = statistics.median(g / p for p, g in zip(*times))
            print(f"| {name} | {share:.0%} | {1e3 * statistics.median(times[0]):.3g} | "
                  f"{1e3 * statistics.median(times[1]):.3g} | {ratio:.2f}x |")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
