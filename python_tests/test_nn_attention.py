"""interval_matmul (exact, against an enumeration of the four endpoint products of every term),
exact softmax bounds (against the vertices of the input box), and the attention layers
(contain sampled inputs, masks included; the point is torch's)."""

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inn_cuda
import inn_cuda.nn as inn
from helpers import ALL_DEVICES
from inn_cuda.nn.attention import (IntervalMultiheadAttention, scaled_dot_product_attention,
                                   softmax, softmax_bounds)

f64 = torch.float64


def _box(shape, generator, radius=0.3):
    x = torch.randn(shape, generator=generator, dtype=f64)
    r = radius * torch.rand(shape, generator=generator, dtype=f64)
    return x - r, x + r


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 2)), ((2, 1, 3, 4), (3, 4, 5)),
                                              ((4,), (4, 3)), ((2, 3, 4), (4,))])
def test_interval_matmul_is_exact(a_shape, b_shape, device):
    g = torch.Generator().manual_seed(0)
    a_lo, a_hi = _box(a_shape, g)
    b_lo, b_hi = _box(b_shape, g)
    lo, hi = (t.cpu() for t in inn_cuda.interval_matmul(
        *(t.to(device) for t in (a_lo, a_hi, b_lo, b_hi))))
    a = [t.unsqueeze(0) if t.dim() == 1 else t for t in (a_lo, a_hi)]
    b = [t.unsqueeze(-1) if t.dim() == 1 else t for t in (b_lo, b_hi)]
    products = torch.stack([x.unsqueeze(-1) * y.unsqueeze(-3) for x in a for y in b])
    e_lo, e_hi = products.amin(0).sum(-2), products.amax(0).sum(-2)
    if len(a_shape) == 1:
        e_lo, e_hi = e_lo.squeeze(-2), e_hi.squeeze(-2)
    if len(b_shape) == 1:
        e_lo, e_hi = e_lo.squeeze(-1), e_hi.squeeze(-1)
    torch.testing.assert_close(lo, e_lo)
    torch.testing.assert_close(hi, e_hi)
    assert lo.shape == torch.matmul(a_lo, b_lo).shape


def test_interval_matmul_errors_and_gradients():
    a = torch.randn(2, 3, dtype=f64, requires_grad=True)
    b = torch.randn(3, 2, dtype=f64, requires_grad=True)
    lo, hi = inn_cuda.interval_matmul(a, a + 0.1, b, b + 0.1)
    (lo.sum() + hi.sum()).backward()
    assert a.grad is not None and b.grad is not None
    with pytest.raises(ValueError, match="second to last"):
        inn_cuda.interval_matmul(a, a, a, a)
    with pytest.raises(ValueError, match="must match pairwise"):
        inn_cuda.interval_matmul(a, a[:1], b, b)


def test_softmax_bounds_are_the_extremes_over_the_vertices():
    g = torch.Generator().manual_seed(1)
    lo, hi = _box((3, 5), g, radius=1.0)
    s_lo, s_hi = softmax_bounds(lo, hi, -1)
    vertices = torch.stack([F.softmax(torch.where(torch.tensor(v, dtype=torch.bool), hi, lo), -1)
                            for v in itertools.product([False, True], repeat=5)])
    torch.testing.assert_close(s_lo, vertices.amin(0), atol=1e-15, rtol=1e-12)
    torch.testing.assert_close(s_hi, vertices.amax(0), atol=1e-15, rtol=1e-12)


def test_softmax_bounds_are_stable():
    big = torch.tensor([[1000.0, 0.0, -1000.0, -float("inf")]], dtype=f64)
    s_lo, s_hi = softmax_bounds(big, big + 1e-3, -1)
    assert not torch.isnan(s_lo).any() and not torch.isnan(s_hi).any()
    point = F.softmax(big, -1)
    assert bool((s_lo <= point).all()) and bool((point <= s_hi).all())
    single = torch.tensor([[0.5]], dtype=f64)
    assert softmax_bounds(single, single, -1)[0].item() == 1.0
    # a tiny entry next to a dominant one keeps its relative precision
    x = torch.tensor([[0.0, -40.0]], dtype=f64)
    torch.testing.assert_close(softmax_bounds(x, x, -1)[0], F.softmax(x, -1), rtol=1e-12, atol=0)


def test_softmax_function_keeps_the_point():
    x = torch.randn(2, 4, dtype=f64)
    out = softmax(inn.Interval(x - 0.1, x + 0.1, x), 1)
    assert torch.equal(out.point, F.softmax(x, 1))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "padding"])
def test_multihead_attention_contains_sampled_inputs(batch_first, masks):
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    mha = nn.MultiheadAttention(6, 2, batch_first=batch_first).double().eval()
    layer = IntervalMultiheadAttention(mha)
    shape = (2, 4, 6) if batch_first else (4, 2, 6)
    lo, hi = _box(shape, g, radius=0.05)
    x = (lo + hi) / 2
    kwargs = {}
    if masks == "bool":
        kwargs["attn_mask"] = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)
    elif masks == "float":
        kwargs["attn_mask"] = torch.randn(4, 4, generator=g, dtype=f64)
    elif masks == "padding":
        kwargs["key_padding_mask"] = torch.tensor([[False, False, True, False],
                                                   [False, True, False, False]])
    box = inn.Interval(lo, hi, x)
    out, weights = layer(box, box, box, **kwargs)
    expected, expected_weights = mha(x, x, x, **kwargs)
    assert torch.equal(out.point, expected) and torch.equal(weights.point, expected_weights)
    for sample in range(20):
        s = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=f64)
        y, w = mha(s, s, s, **kwargs)
        assert bool(out.contains(y, 1e-12).all()) and bool(weights.contains(w, 1e-12).all())
    zero = inn.Interval(x.clone(), x.clone(), x)
    flat, _ = layer(zero, zero, zero, need_weights=False, **kwargs)
    torch.testing.assert_close(flat.lo, expected, atol=1e-12, rtol=0)


def test_multihead_attention_refusals():
    with pytest.raises(ValueError, match="add_bias_kv"):
        IntervalMultiheadAttention(nn.MultiheadAttention(4, 2, add_bias_kv=True))
    layer = IntervalMultiheadAttention(nn.MultiheadAttention(4, 2, dropout=0.1).train())
    x = inn.Interval.from_point(torch.randn(3, 1, 4))
    with pytest.raises(ValueError, match="dropout in train mode"):
        layer(x, x, x)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("mask", ["causal", "bool", "float"])
def test_scaled_dot_product_attention_contains_sampled_inputs(mask, device):
    g = torch.Generator().manual_seed(3)
    lo, hi = (t.to(device) for t in _box((2, 2, 5, 4), g, radius=0.1))
    x = (lo + hi) / 2
    kwargs = {"causal": dict(is_causal=True),
              "bool": dict(attn_mask=torch.rand(5, 5, generator=g) > 0.3),
              "float": dict(attn_mask=torch.randn(5, 5, generator=g, dtype=f64))}[mask]
    if mask == "bool":
        kwargs["attn_mask"][:, 0] = True  # every query sees a key
    kwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    box = inn.Interval(lo, hi, x)
    out = scaled_dot_product_attention(box, box, box, **kwargs)
    assert torch.equal(out.point, F.scaled_dot_product_attention(x, x, x, **kwargs))
    for sample in range(20):
        s = lo + (hi - lo) * torch.rand(lo.shape, generator=g, dtype=f64).to(device)
        assert bool(out.contains(F.scaled_dot_product_attention(s, s, s, **kwargs), 1e-12).all())
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(box, box, box, dropout_p=0.1)
