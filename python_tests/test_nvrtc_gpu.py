"""The NVRTC backend on a GPU (every test here skips without a GPU and CuPy): its op
implementations against the reference on the emulation battery (test_cuda_emulated.py's cases, all
four dtypes, plus cases that split the depth over blocks), against the compiled kernels where the
extension has them, on torch's current stream (a CUDA graph captures them), from the disk cache,
and the linear/conv/CuPy test batteries rerun in a process with INN_CUDA_BACKEND=nvrtc."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inn_cuda import _backend, _nvrtc, reference
from inn_cuda._nvrtc import cache, compiler, runtime

import test_cuda_emulated as battery

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or not _nvrtc.status()[0],
                                reason=f"NVRTC backend unavailable: {_nvrtc.status()[1]}")
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DTYPE_IDS = ["float32", "float64", "float16", "bfloat16"]
SPLIT_CASES = [  # long reductions over few output tiles: the depth is split over blocks
    pytest.param("interval_linear", (6000, 7), (3, 7), (), id="linear-split"),
    pytest.param("interval_conv2d", (8, 2, 32, 32), (3, 2, 3, 3), ((1, 1), (1, 1), (1, 1), 1),
                 id="conv2d-split"),
    pytest.param("interval_conv_transpose2d", (8, 3, 24, 24), (3, 2, 2, 2),
                 ((2, 2), (0, 0), (0, 0), 1, (1, 1)), id="conv_transpose2d-split"),
]


class OnGpu:
    """Ops with reference.OPS's signature on CPU tensors, run on the GPU by `impls` (op name ->
    CUDA implementation), results back on the CPU: what test_cuda_emulated's run_all calls."""

    def __init__(self, impls):
        self.impls = impls

    def __getattr__(self, name):
        impl = self.impls[name]

        def run(*args):
            on_gpu = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
            return tuple(t.cpu() for t in impl(*on_gpu))

        return run


NVRTC = OnGpu(_nvrtc.OPS)
COMPILED = OnGpu({name: getattr(torch.ops.inn_cuda, name) for name in reference.OPS})
HAS_COMPILED = all(per_device["cuda"] == "compiled" for per_device in _backend.SERVED_BY.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("nonneg", battery.MODES)
@pytest.mark.parametrize("op,x_shape,w_shape,config", battery.CASES + SPLIT_CASES)
def test_matches_reference(op, x_shape, w_shape, config, nonneg, dtype):
    operands = battery.make_operands(op, x_shape, w_shape, config, nonneg=nonneg, dtype=dtype)
    got, expected = battery.run_all(NVRTC, op, operands, config, nonneg)
    battery.check_scaled(op, x_shape, w_shape, config, operands, got, expected)


@pytest.mark.parametrize("dtype", DTYPES[:2], ids=DTYPE_IDS[:2])
@pytest.mark.parametrize("nonneg", battery.MODES)
@pytest.mark.parametrize("op,x_shape,w_shape,config", battery.CASES + SPLIT_CASES)
def test_integer_operands_exact(op, x_shape, w_shape, config, nonneg, dtype):
    operands = battery.make_operands(op, x_shape, w_shape, config, nonneg=nonneg, dtype=dtype,
                                     integer=True, seed=1)
    got, expected = battery.run_all(NVRTC, op, operands, config, nonneg)
    for pair, ref_pair in zip(got, expected):
        for value, ref in zip(pair, ref_pair):
            torch.testing.assert_close(value, ref, rtol=0, atol=0)


@pytest.mark.skipif(not HAS_COMPILED, reason="inn_cuda._C has no CUDA kernels to compare with")
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("nonneg", battery.MODES)
@pytest.mark.parametrize("op,x_shape,w_shape,config", battery.CASES + SPLIT_CASES)
def test_matches_compiled_kernels(op, x_shape, w_shape, config, nonneg, dtype):
    """The same kernels, plan and order of sums: exact on integer operands, and within rounding
    (NVRTC and nvcc may contract multiply-adds differently) on random ones."""
    for integer in (True, False):
        if integer and dtype in battery.HALF_TYPES:
            continue
        operands = battery.make_operands(op, x_shape, w_shape, config, nonneg=nonneg,
                                         dtype=dtype, integer=integer)
        got, _ = battery.run_all(NVRTC, op, operands, config, nonneg)
        compiled, _ = battery.run_all(COMPILED, op, operands, config, nonneg)
        if integer:
            for pair, other in zip(got, compiled):
                for value, ref in zip(pair, other):
                    torch.testing.assert_close(value, ref, rtol=0, atol=0)
        else:
            battery.check_scaled(op, x_shape, w_shape, config, operands, got, compiled)


def linear_operands(m=300, k=2000, n=5, dtype=torch.float32):
    x_lo = torch.randn(m, k, device="cuda", dtype=dtype)
    w_lo = torch.randn(n, k, device="cuda", dtype=dtype)
    return [x_lo, x_lo + 1, w_lo, w_lo + 0.5, None, None, False]


def test_runs_on_the_current_stream_and_in_cuda_graphs():
    """A CUDA graph captures only work on the capturing stream (a launch elsewhere fails the
    capture): the forward and the split weight gradient replay to fresh results."""
    args = linear_operands()
    grad = [torch.randn(300, 5, device="cuda"), torch.randn(300, 5, device="cuda")]
    forward = _nvrtc.OPS["interval_linear"]
    weight_grad = _nvrtc.OPS["interval_linear_backward_weight"]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up: compiles and loads the programs
        forward(*args)
        weight_grad(*grad, *args[:4], False)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = forward(*args)
        dw = weight_grad(*grad, *args[:4], False)
    for t in (args[0], args[2], *grad):
        t.copy_(torch.randn_like(t))
    args[1].copy_(args[0] + 2)
    args[3].copy_(args[2] + 1)
    graph.replay()
    torch.cuda.synchronize()
    for got, expected in zip((*y, *dw), (*forward(*args), *weight_grad(*grad, *args[:4], False))):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_side_stream():
    args = linear_operands(dtype=torch.float64)
    expected = _nvrtc.OPS["interval_linear"](*args)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = _nvrtc.OPS["interval_linear"](*args)
    stream.synchronize()
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_programs_load_from_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(runtime, "_loaded", {})
    args = linear_operands(m=7, k=9, n=4, dtype=torch.float16)
    first = _nvrtc.OPS["interval_linear"](*args)
    assert list(tmp_path.glob("nvrtc/*/*.json")), "nothing cached"

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled although the cache holds the program")

    monkeypatch.setattr(compiler, "compile_program", no_compiling)
    monkeypatch.setattr(runtime, "_loaded", {})
    again = _nvrtc.OPS["interval_linear"](*args)
    for a, b in zip(again, first):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.slow
def test_op_batteries_with_the_nvrtc_backend():
    """The linear and conv test batteries (and the CuPy entry points) with INN_CUDA_BACKEND=nvrtc:
    every CUDA op, its autograd, opcheck and validation through NVRTC."""
    env = {**os.environ, _backend.BACKEND_ENV: "nvrtc",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    check = ("from inn_cuda import _backend\n"
             "served = {op: s['cuda'] for op, s in _backend.SERVED_BY.items()}\n"
             "assert set(served.values()) == {'nvrtc'}, served\n")
    result = subprocess.run([sys.executable, "-c", check], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    tests = sorted(str(p) for p in (ROOT / "python_tests").glob("test_interval_*.py"))
    tests.append(str(ROOT / "python_tests" / "test_cupy.py"))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-k", "cuda or cupy",
                             "-p", "no:cacheprovider", *tests], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
