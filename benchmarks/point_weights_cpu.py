"""Point-weight (IBP-style) interval layers against the plain layer on the CPU, with interleaved
repeats (plain, interval, plain, ...) so that a busy machine slows both alike. Prints the median
of the per-pair time ratios (wall clock and process CPU time) per layer.

    python benchmarks/point_weights_cpu.py [--repeats 21] [--threads 2]
"""

import argparse
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'layer':28} {'plain ms':>9} {'IBP ms':>9} {'wall ratio':>11} {'cpu ratio':>10}")
    for name, xs, ws, padding in LAYERS:
        x, w, b = torch.randn(xs), torch.randn(ws) * ws[1] ** -0.5, torch.randn(ws[0])
        x_hi = x + 0.1 * torch.rand_like(x)
        if padding is None:
            plain = lambda: F.linear(x, w, b)  # noqa: E731
            ibp = lambda: inn_cuda.interval_linear(x, x_hi, w, w, b, b)  # noqa: E731
        else:
            plain = lambda: F.conv2d(x, w, b, padding=padding)  # noqa: E731
            ibp = lambda: inn_cuda.interval_conv2d(x, x_hi, w, w, b, b,  # noqa: E731
                                                   padding=padding)
        with torch.no_grad(), inn_cuda.check_bounds(False):
            for fn in (plain, ibp, plain, ibp):
                fn()
            pairs = [(timed(plain), timed(ibp)) for _ in range(args.repeats)]
        med = statistics.median
        print(f"{name:28} {1e3 * med(p[0][0] for p in pairs):9.1f} "
              f"{1e3 * med(q[1][0] for q in pairs):9.1f} "
              f"{med(q[0] / p[0] for p, q in pairs):10.2f}x "
              f"{med(q[1] / p[1] for p, q in pairs):9.2f}x")


if __name__ == "__main__":
    main()
