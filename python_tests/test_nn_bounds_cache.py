"""The weight bounds W - offset_lo, W + offset_hi are reused between inference calls and
recomputed after anything that changes W or the offsets."""

import copy
import io

import torch

import inn_cuda.nn as inn


def test_reused_while_nothing_changes_and_recomputed_after_each_change():
    layer = inn.IntervalLinear(4, 3)
    with torch.no_grad():
        first = layer.weight_bounds()
        assert layer.weight_bounds()[0] is first[0] and layer.bias_bounds()[1] is \
            layer.bias_bounds()[1]
        changes = [
            lambda: layer.weight_offset_lo.fill_(0.1),                       # optimiser-like
            lambda: (layer.weight_offset_hi.fill_(-0.2), inn.project_(layer)),  # projection
            lambda: layer.load_state_dict({k: v + 0.05 for k, v in layer.state_dict().items()}),
            lambda: layer.double(),                                          # .to()
        ]
        for change in changes:
            before = layer.weight_bounds()
            change()
            lo, hi = layer.weight_bounds()
            assert lo is not before[0]
            assert torch.equal(lo, layer.weight - layer.weight_offset_lo)
            assert torch.equal(hi, layer.weight + layer.weight_offset_hi)


def test_optimiser_step_invalidates_and_gradients_flow():
    layer = inn.IntervalLinear(4, 3)
    opt = torch.optim.SGD(inn.offset_parameters(layer), lr=0.1)
    x = torch.randn(5, 4)
    with torch.no_grad():
        cached = layer.weight_bounds()[1]
    out = layer(x)  # grad enabled: computed fresh, part of the graph
    (out.hi - out.lo).sum().backward()
    assert layer.weight_offset_hi.grad is not None
    opt.step()
    with torch.no_grad():
        assert torch.equal(layer.weight_bounds()[1], layer.weight + layer.weight_offset_hi)
        assert not torch.equal(layer.weight_bounds()[1], cached)


def test_not_kept_in_copies_or_pickles():
    layer = inn.IntervalConv2d(1, 2, 3)
    with torch.no_grad():
        layer.weight_bounds()
    assert "_bounds_cache" in layer.__dict__
    assert "_bounds_cache" not in copy.deepcopy(layer).__dict__
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    assert "_bounds_cache" not in torch.load(buffer, weights_only=False).__dict__
