"""Point-weight (IBP-style) interval layers against plain PyTorch on the CPU, with interleaved
repeats (baseline, interval, baseline, ...) so that a busy machine slows both alike. Prints the
median of the per-pair time ratios (wall clock and process CPU time) per layer.

Two modes:

* ``forward`` (default): the interval layer ``interval_*(x_lo, x_hi, w, w, b, b)`` against the
  plain layer ``F.*(x, w, b)``, without autograd.
* ``backward``: forward and backward of the interval layer (gradients of x_lo, x_hi and w)
  against what a user writes by hand for the same bounds, autograd through
  ``mid = F.*(c, W); rad = F.*(r, |W|); lo, hi = mid - rad, mid + rad`` (gradients of c, r and
  W): six products either way.

    python benchmarks/point_weights_cpu.py [--mode forward|backward] [--repeats 21] [--threads 2]
"""

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

import inn_cuda

LAYERS = [  # (name, x shape, w shape, padding)
    ("conv 32->32 3x3, 8x64²", (8, 32, 64, 64), (32, 32, 3, 3), 1),
    ("conv 64->64 3x3, 8x32²", (8, 64, 32, 32), (64, 64, 3, 3), 1),
    ("conv 128->128 3x3, 4x32²", (4, 128, 32, 32), (128, 128, 3, 3), 1),
    ("linear 256x1024 -> 1024", (256, 1024), (1024, 1024), None),
]


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def forward_pair(x, x_hi, w, b, padding):
    """(plain layer, interval layer), both without autograd."""
    if padding is None:
        return (lambda: F.linear(x, w, b), lambda: inn_cuda.interval_linear(x, x_hi, w, w, b, b))
    return (lambda: F.conv2d(x, w, b, padding=padding),
            lambda: inn_cuda.interval_conv2d(x, x_hi, w, w, b, b, padding=padding))


def backward_pair(x, x_hi, w, b, padding):
    """(the user's midpoint composition, the interval layer), each forward and backward."""
    layer = (lambda a, v, bias: F.linear(a, v, bias)) if padding is None else \
        (lambda a, v, bias: F.conv2d(a, v, bias, padding=padding))
    interval = (lambda *t: inn_cuda.interval_linear(*t)) if padding is None else \
        (lambda *t: inn_cuda.interval_conv2d(*t, padding=padding))
    c, r = ((x + x_hi) / 2).requires_grad_(True), ((x_hi - x) / 2).requires_grad_(True)
    x_lo, x_hi = x.clone().requires_grad_(True), x_hi.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    g_lo, g_hi = torch.randn_like(layer(x, w.detach(), b)), torch.randn_like(layer(x, w.detach(),
                                                                                   b))

    def composition():
        mid, rad = layer(c, w, b), layer(r, w.abs(), None)
        torch.autograd.backward((mid - rad, mid + rad), (g_lo, g_hi))

    def ibp():
        torch.autograd.backward(interval(x_lo, x_hi, w, w, b, b), (g_lo, g_hi))

    return composition, ibp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("forward", "backward"), default="forward")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"mode {args.mode}, {args.threads} threads, load average before "
          f"{os.getloadavg()[0]:.2f}")
    base = "plain ms" if args.mode == "forward" else "user ms"
    print(f"{'layer':28} {base:>9} {'IBP ms':>9} {'wall ratio':>11} {'cpu ratio':>10}")
    for name, xs, ws, padding in LAYERS:
        x, w, b = torch.randn(xs), torch.randn(ws) * ws[1] ** -0.5, torch.randn(ws[0])
        x_hi = x + 0.1 * torch.rand_like(x)
        make = forward_pair if args.mode == "forward" else backward_pair
        baseline, ibp = make(x, x_hi, w, b, padding)
        with torch.set_grad_enabled(args.mode == "backward"), inn_cuda.check_bounds(False):
            for fn in (baseline, ibp, baseline, ibp):
                fn()
            pairs = [(timed(baseline), timed(ibp)) for _ in range(args.repeats)]
        med = statistics.median
        print(f"{name:28} {1e3 * med(p[0][0] for p in pairs):9.1f} "
              f"{1e3 * med(q[1][0] for q in pairs):9.1f} "
              f"{med(q[0] / p[0] for p, q in pairs):10.2f}x "
              f"{med(q[1] / p[1] for p, q in pairs):9.2f}x")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
