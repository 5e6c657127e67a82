"""torch.compile(fullgraph=True) with the default (inductor) backend: every public op, and a model
converted by to_interval, compile into one graph, forward and backward, and agree with eager.

Few and small on purpose: each test compiles once, and an inductor compile takes tens of
seconds on a 2-core machine (hence `slow`). The ops' fake functions and autograd formulas are
what make this work; torch.library.opcheck (in the op test files) checks them per op."""

import pytest
import torch
import torch.nn as nn

import inn_cuda
from inn_cuda._algorithm import path_counts, reset_path_counts

from nn_models import randomise_offsets

pytestmark = pytest.mark.slow


def compiled_and_eager(fn, *inputs):
    """(value, gradients) of fn(*inputs).sum(), compiled and eager, the gradients with respect to
    every input that requires them."""
    results = []
    for run in (torch.compile(fn, fullgraph=True), fn):
        torch._dynamo.reset()
        leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
        value = run(*leaves)
        value.backward()
        results.append((value.detach(), [t.grad for t in leaves if t.requires_grad]))
    return results


def test_every_op_forward_and_backward():
    """interval_conv2d (general mode), interval_conv_transpose2d and interval_linear (nonneg
    mode after ReLUs) and interval_conv1d (general), with gradients into inputs and weights:
    every forward op and both backward ops of each, in both modes, inside one compiled graph."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, grad=True):
        return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_(grad)

    x, w2, wt, wl, w1, x1 = rand(2, 3, 6, 6), rand(4, 3, 3, 3), rand(4, 2, 2, 2), \
        rand(5, 2 * 12 * 12), rand(3, 2, 3), rand(2, 2, 9)

    def net(x, w2, wt, wl, w1, x1):
        lo, hi = inn_cuda.interval_conv2d(x, x + 0.25, w2 - 0.1, w2 + 0.1, padding=1)
        lo, hi = torch.relu(lo), torch.relu(hi)
        lo, hi = inn_cuda.interval_conv_transpose2d(lo, hi, wt - 0.1, wt + 0.1, stride=2,
                                                    input_nonneg=True)
        lo, hi = torch.relu(lo).flatten(1), torch.relu(hi).flatten(1)
        lo, hi = inn_cuda.interval_linear(lo, hi, wl - 0.05, wl + 0.05, input_nonneg=True)
        lo1, hi1 = inn_cuda.interval_conv1d(x1, x1 + 0.5, w1 - 0.2, w1 + 0.2, padding=1)
        return (hi - lo).sum() + (lo * hi).sum() + (hi1 - lo1).sum() + lo1.sum()

    (value, grads), (eager_value, eager_grads) = compiled_and_eager(net, x, w2, wt, wl, w1, x1)
    torch.testing.assert_close(value, eager_value)
    assert len(grads) == 6
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want)


def test_converted_model_forward_and_backward():
    """A small conv net through to_interval, compiled: the interval bounds, the point and the
    gradients of the offsets (what interval training learns) agree with eager."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.ConvTranspose2d(4, 2, 2, stride=2), nn.Flatten(),
                          nn.Linear(2 * 8 * 8, 3)).double()
    interval_model = randomise_offsets(inn_cuda.to_interval(model), scale=0.1)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)

    def objective(x):
        out = interval_model(x)
        return (out.hi - out.lo).sum() + out.point.sum()

    offsets = [p for p in interval_model.parameters() if p.requires_grad]
    assert offsets
    runs = []
    for fn in (torch.compile(objective, fullgraph=True), objective):
        torch._dynamo.reset()
        interval_model.zero_grad()
        value = fn(x)
        value.backward()
        runs.append((value.detach(), [p.grad.clone() for p in offsets]))
    (value, grads), (eager_value, eager_grads) = runs
    torch.testing.assert_close(value, eager_value)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want)


def test_point_weight_layer_forward_and_backward():
    """IBP-style point weights (w_lo and w_hi one tensor) in general mode: the compiled backward
    gives the weight its total gradient (the `*_backward_weight_point` op) as eager does."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=gen).requires_grad_(True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen).requires_grad_(True)

    def ibp(x, w):
        lo, hi = inn_cuda.interval_conv2d(x - 0.25, x + 0.25, w, w, padding=1)
        return (hi - lo).square().sum() + lo.sum()

    reset_path_counts()
    (value, grads), (eager_value, eager_grads) = compiled_and_eager(ibp, x, w)
    counts = path_counts()
    assert "interval_conv2d_backward_weight" not in counts  # neither run took the two bounds
    assert sum(counts["interval_conv2d_backward_weight_point"].values()) == 2, counts
    torch.testing.assert_close(value, eager_value)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want)
