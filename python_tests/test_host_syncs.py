"""The public ops' elementwise checks: one host synchronisation per call when they are on, none
while a CUDA graph is being captured (the capture test runs wherever a GPU is visible)."""

import warnings

import pytest
import torch

import inn_cuda
from inn_cuda import _validation

from helpers import random_interval

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible")


def test_one_host_read_per_call(monkeypatch):
    """All pairs and the nonneg check are reduced on the device and read once."""
    reads = []
    real_stack = torch.stack

    def counting_stack(tensors, *args, **kwargs):
        out = real_stack(tensors, *args, **kwargs)
        reads.append(len(tensors))
        return out

    monkeypatch.setattr(_validation.torch, "stack", counting_stack)
    x_lo, x_hi = random_interval((3, 4, 8, 8), nonneg=True, dtype=torch.float32)
    w_lo, w_hi = random_interval((5, 4, 3, 3), dtype=torch.float32)
    b_lo, b_hi = random_interval((5,), dtype=torch.float32)
    inn_cuda.interval_conv2d(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg=True)
    assert reads == [4]  # three pairs and the nonneg check, one read
    with pytest.raises(ValueError, match="b_lo must be <= b_hi elementwise"):
        inn_cuda.interval_conv2d(x_lo, x_hi, w_lo, w_hi, b_hi, b_lo, input_nonneg=True)
    with pytest.raises(ValueError, match="input_nonneg=True requires x_lo >= 0"):
        inn_cuda.interval_conv2d(x_lo - 5, x_hi, w_lo, w_hi, input_nonneg=True)


@needs_gpu
def test_cuda_call_synchronises_once():
    x_lo, x_hi = random_interval((64, 32), nonneg=True, dtype=torch.float32, device="cuda")
    w_lo, w_hi = random_interval((16, 32), dtype=torch.float32, device="cuda")
    inn_cuda.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=True)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            inn_cuda.interval_linear(x_lo, x_hi, w_lo, w_hi, input_nonneg=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 1, [str(w.message) for w in syncs]


@needs_gpu
@pytest.mark.parametrize("point", [False, True], ids=["interval-weights", "point-weights"])
def test_cuda_graph_capture(point):
    """Checks stay on (the default) and are skipped during the capture; the replayed graph gives
    the eager result, on both the fused and the library path."""
    x_lo, x_hi = random_interval((2, 4, 9, 9), nonneg=True, dtype=torch.float32, device="cuda")
    w_lo, w_hi = random_interval((6, 4, 3, 3), dtype=torch.float32, device="cuda")
    w_hi = w_lo if point else w_hi
    expected = inn_cuda.interval_conv2d(x_lo, x_hi, w_lo, w_hi, padding=1, input_nonneg=True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as torch.cuda.graphs advises
        inn_cuda.interval_conv2d(x_lo, x_hi, w_lo, w_hi, padding=1, input_nonneg=True)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = inn_cuda.interval_conv2d(x_lo, x_hi, w_lo, w_hi, padding=1, input_nonneg=True)
    graph.replay()
    torch.cuda.synchronize()
    for a, e in zip(out, expected):
        torch.testing.assert_close(a, e)
