"""A small forward and backward of every CUDA op, in every mode and dtype, plus cases whose depth
the launch plan splits (few output tiles, a long reduction): the workload that
benchmarks/gpu_check.sh runs under compute-sanitizer (memcheck, racecheck). Run it with
INN_CUDA_ALGORITHM=fused so that the fused kernels, not cuBLAS/cuDNN, serve every call."""

import torch

import inn_cuda


def interval(shape, nonneg, dtype):
    lo = torch.randn(shape, device="cuda")
    lo = lo.abs() if nonneg else lo
    return lo.to(dtype), (lo + torch.rand(shape, device="cuda")).to(dtype)


def run_case(name, fn, x_shape, w_shape, b_channels, nonneg, dtype, **kwargs):
    operands = [*interval(x_shape, nonneg, dtype), *interval(w_shape, False, dtype),
                *interval((b_channels,), False, dtype)]
    operands = [t.requires_grad_() for t in operands]
    lo, hi = fn(*operands, input_nonneg=nonneg, **kwargs)
    (lo.float().sum() + 2 * hi.float().sum()).backward()
    torch.cuda.synchronize()
    print(f"ok {name} nonneg={nonneg} {dtype}")


def main():
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for nonneg in (False, True):
            run_case("linear", inn_cuda.interval_linear, (5, 3, 37), (19, 37), 19, nonneg, dtype)
            run_case("conv2d", inn_cuda.interval_conv2d, (2, 6, 11, 9), (8, 3, 3, 2), 8, nonneg,
                     dtype, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
            run_case("conv_transpose2d", inn_cuda.interval_conv_transpose2d, (2, 4, 5, 6),
                     (4, 3, 2, 3), 6, nonneg, dtype, stride=2, padding=(0, 1),
                     output_padding=(1, 0), groups=2)
            run_case("conv1d", inn_cuda.interval_conv1d, (3, 4, 17), (6, 4, 5), 6, nonneg, dtype,
                     padding="same")
    # depth split: one 64 x 64 output tile, K = 4096 (linear forward / input gradient) and a
    # 4 * 32 * 32 = 4096-term weight gradient (conv)
    for nonneg in (False, True):
        run_case("linear-split", inn_cuda.interval_linear, (8, 4096), (16, 4096), 16, nonneg,
                 torch.float32)
        run_case("conv2d-split", inn_cuda.interval_conv2d, (4, 2, 32, 32), (4, 2, 3, 3), 4,
                 nonneg, torch.float32, padding=1)


if __name__ == "__main__":
    main()
