"""Point-weight (IBP-style) interval layers against plain PyTorch on the CPU, with interleaved
repeats (baseline, interval, baseline, ...) so that a busy machine slows both alike. Prints the
median of the per-repeat time ratios (wall clock and process CPU time) per layer.

Two modes:

* ``forward`` (default): the interval layer ``interval_*(x_lo, x_hi, w, w, b, b)`` against the
  plain layer ``F.*(x, w, b)`` and against the bounds a user (or an IBP verifier) composes from
  plain layers, ``c, r = (l + h) / 2, (h - l) / 2; mid = F.*(c, w, b); rad = F.*(r, |w|);
  lo, hi = mid - rad, mid + rad``, without autograd; the three interleaved.
* ``backward``: forward and backward of the interval layer (gradients of x_lo, x_hi and w)
  against what a user writes by hand for the same bounds, autograd through the composition
  above (gradients of x_lo, x_hi and W): six products either way.

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


def forward_runs(x, x_hi, w, b, padding):
    """(plain layer, the user's midpoint composition, interval layer), without autograd."""
    if padding is None:
        layer = lambda a, v, bias: F.linear(a, v, bias)  # noqa: E731
        interval = lambda: inn_cuda.interval_linear(x, x_hi, w, w, b, b)  # noqa: E731
    else:
        layer = lambda a, v, bias: F.conv2d(a, v, bias, padding=padding)  # noqa: E731
        interval = lambda: inn_cuda.interval_conv2d(x, x_hi, w, w, b, b,  # noqa: E731
                                                    padding=padding)

    def composition():
        c, r = (x + x_hi) / 2, (x_hi - x) / 2
        mid, rad = layer(c, w, b), layer(r, w.abs(), None)
        return mid - rad, mid + rad

    return lambda: layer(x, w, b), composition, interval


def backward_pair(x, x_hi, w, b, padding):
    """(the user's midpoint composition, the interval layer), each forward and backward."""
    layer = (lambda a, v, bias: F.linear(a, v, bias)) if padding is None else \
        (lambda a, v, bias: F.conv2d(a, v, bias, padding=padding))
    interval = (lambda *t: inn_cuda.interval_linear(*t)) if padding is None else \
        (lambda *t: inn_cuda.interval_conv2d(*t, padding=padding))
    x_lo, x_hi = x.clone().requires_grad_(True), x_hi.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    g_lo, g_hi = torch.randn_like(layer(x, w.detach(), b)), torch.randn_like(layer(x, w.detach(),
                                                                                   b))

    def composition():
        c, r = (x_lo + x_hi) / 2, (x_hi - x_lo) / 2
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
    forward = args.mode == "forward"
    print(f"mode {args.mode}, {args.threads} threads, load average before "
          f"{os.getloadavg()[0]:.2f}")
    if forward:
        print(f"{'layer':28} {'plain ms':>9} {'user ms':>9} {'IBP ms':>9} "
              f"{'IBP/plain wall':>15} {'cpu':>6} {'IBP/user wall':>14} {'cpu':>6}")
    else:
        print(f"{'layer':28} {'user ms':>9} {'IBP ms':>9} {'wall ratio':>11} {'cpu ratio':>10}")
    med = statistics.median
    for name, xs, ws, padding in LAYERS:
        x, w, b = torch.randn(xs), torch.randn(ws) * ws[1] ** -0.5, torch.randn(ws[0])
        x_hi = x + 0.1 * torch.rand_like(x)
        runs = forward_runs(x, x_hi, w, b, padding) if forward else \
            backward_pair(x, x_hi, w, b, padding)
        with torch.set_grad_enabled(not forward), inn_cuda.check_bounds(False):
            for _ in range(2):
                for fn in runs:
                    fn()
            times = [[timed(fn) for fn in runs] for _ in range(args.repeats)]

        def ratio(i, j, clock):  # median over repeats of run i's time / run j's
            return med(t[i][clock] / t[j][clock] for t in times)

        ms = " ".join(f"{1e3 * med(t[i][0] for t in times):9.1f}" for i in range(len(runs)))
        last = len(runs) - 1
        if forward:
            print(f"{name:28} {ms} {ratio(last, 0, 0):14.2f}x {ratio(last, 0, 1):5.2f}x "
                  f"{ratio(last, 1, 0):13.2f}x {ratio(last, 1, 1):5.2f}x")
        else:
            print(f"{name:28} {ms} {ratio(last, 0, 0):10.2f}x {ratio(last, 0, 1):9.2f}x")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
