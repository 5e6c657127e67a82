"""interval_matmul (exact, against an enumeration of the four endpoint products of every term),
exact softmax bounds (against the vertices of the input box), and the attention layers: they
contain sampled inputs (and, for MultiheadAttention, networks sampled inside its projection
weight intervals), masks included; the point is torch's; at zero width MultiheadAttention is
the torch module; its offsets train, project and round-trip like every interval layer's."""

import copy
import io
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inn_cuda
import inn_cuda.nn as inn
from helpers import ALL_DEVICES, sample_inside
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


# ------------------------------------------------------------------------ multihead attention

MHA_CONFIGS = {"self": {}, "kdim-vdim": dict(kdim=3, vdim=5), "no-bias": dict(bias=False)}


def _mha(config, batch_first=False):
    """A module with frozen parameters, like the interval layer's copy: torch's kernels round
    differently for parameters that require gradients."""
    torch.manual_seed(2)
    return nn.MultiheadAttention(6, 2, batch_first=batch_first,
                                 **MHA_CONFIGS[config]).double().eval().requires_grad_(False)


def _mha_inputs(mha, generator, batch_first=False, batch=2, radius=0.05):
    """(query, key, value) boxes: 4 queries, 4 keys and values of the module's sizes."""
    def box(size):
        shape = (batch, 4, size) if batch_first else (4, batch, size)
        lo, hi = _box(shape, generator, radius)
        return inn.Interval(lo, hi, (lo + hi) / 2)
    query = box(mha.embed_dim)
    if mha._qkv_same_embed_dim:
        return query, query, query  # self-attention: one input
    return query, box(mha.kdim), box(mha.vdim)


def _mask_kwargs(masks, generator):
    if masks == "bool":
        return dict(attn_mask=torch.triu(torch.ones(4, 4, dtype=torch.bool), 1))
    if masks == "float":
        return dict(attn_mask=torch.randn(4, 4, generator=generator, dtype=f64))
    if masks == "padding":
        return dict(key_padding_mask=torch.tensor([[False, False, True, False],
                                                   [False, True, False, False]]))
    return {}


def _widen(layer, generator, scale=0.05):
    """Offsets uniform in [0, scale]: every projection weight and bias becomes an interval."""
    with torch.no_grad():
        for offset in layer.offsets():
            offset.copy_(scale * torch.rand(offset.shape, generator=generator, dtype=f64))
    return layer


def _sampled_mha(mha, layer, generator, vertex):
    """The torch module with every widened parameter drawn inside its interval: uniformly (a
    quarter of the entries at an endpoint) or at a vertex of the weight box."""
    sampled = copy.deepcopy(mha)
    with torch.no_grad():
        for name, (lo, hi) in layer.named_bounds():
            value = torch.where(torch.rand(lo.shape, generator=generator) < 0.5, lo, hi) \
                if vertex else sample_inside(lo, hi, generator)
            sampled.get_parameter(name).copy_(value)
    return sampled


def _assert_inside(bounds, y, what):
    """Containment up to float64 rounding only: a near miss beyond 1e-12 fails."""
    excess = float(torch.maximum(bounds.lo - y, y - bounds.hi).max())
    scale = 1 + float(torch.maximum(bounds.lo.abs(), bounds.hi.abs()).max())
    assert excess <= 1e-12 * scale, f"{what}: outside by {excess}"


@pytest.mark.parametrize("config", list(MHA_CONFIGS))
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "padding"])
def test_multihead_attention_contains_sampled_networks(config, batch_first, masks):
    """Interval projection weights and interval inputs: every network with weights inside the
    weight box (uniform and vertex samples) on every input inside the input box lies inside."""
    g = torch.Generator().manual_seed(2)
    mha = _mha(config, batch_first)
    layer = _widen(IntervalMultiheadAttention(mha), g)
    boxes = _mha_inputs(mha, g, batch_first)
    kwargs = _mask_kwargs(masks, g)
    with torch.no_grad():
        out, weights = layer(*boxes, **kwargs)
        expected, expected_weights = mha(*(b.point for b in boxes), **kwargs)
        assert torch.equal(out.point, expected) and torch.equal(weights.point, expected_weights)
        assert float(out.width.min()) > 0
        for sample in range(16):
            network = _sampled_mha(mha, layer, g, vertex=sample % 2 == 1)
            inputs = [sample_inside(b.lo, b.hi, g) for b in boxes]
            if mha._qkv_same_embed_dim:
                inputs = [inputs[0]] * 3
            y, w = network(*inputs, **kwargs)
            _assert_inside(out, y, f"output, sample {sample}")
            _assert_inside(weights, w, f"attention weights, sample {sample}")


CALLS = {"weights": {}, "no-weights": dict(need_weights=False),
         "per-head": dict(average_attn_weights=False),
         "masks": dict(attn_mask=torch.triu(torch.ones(4, 4, dtype=torch.bool), 1),
                       key_padding_mask=torch.tensor([[False, True, False, False],
                                                      [False, False, False, True]]))}


@pytest.mark.parametrize("config", list(MHA_CONFIGS))
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("call", list(CALLS) + ["unbatched"])
def test_multihead_attention_is_the_torch_module_at_zero_width(config, batch_first, call):
    g = torch.Generator().manual_seed(3)
    mha = _mha(config, batch_first)
    layer = IntervalMultiheadAttention(mha)
    assert layer.has_offsets and not any(bool(p.any()) for p in layer.offsets())
    inputs = [b.point for b in _mha_inputs(mha, g, batch_first)]
    if call == "unbatched":
        inputs = [t[:, 0] if batch_first else t[0] for t in inputs]  # one sequence, no batch
    kwargs = CALLS.get(call, {})
    with torch.no_grad():
        expected = mha(*inputs, **kwargs)
        for given in (inputs, [inn.Interval.from_point(t) for t in inputs]):
            got = layer(*given, **kwargs)  # a tensor is read as a degenerate interval
            for interval, value in zip(got, expected):
                if value is None:
                    assert interval is None
                    continue
                assert torch.equal(interval.point, value)
                torch.testing.assert_close(interval.lo, value, atol=1e-14, rtol=0)
                torch.testing.assert_close(interval.hi, value, atol=1e-14, rtol=0)


@pytest.mark.parametrize("config", list(MHA_CONFIGS))
def test_multihead_attention_offsets_are_the_layers_trainable_parameters(config):
    g = torch.Generator().manual_seed(4)
    mha = _mha(config)
    layer = IntervalMultiheadAttention(mha)
    model = nn.Sequential(layer)
    widened = [n for n, _ in mha.named_parameters()]
    offsets = [f"0.{n}_offset_{side}" for n in widened for side in ("lo", "hi")]
    assert [n for n, _ in layer.named_bounds()] == widened  # every projection parameter
    assert [n for n, _ in inn.named_interval_layers(model)] == ["0"]
    by_id = {id(p): n for n, p in model.named_parameters()}
    assert [by_id[id(p)] for p in inn.offset_parameters(model)] == offsets
    assert all(not p.requires_grad for p in inn.point_parameters(model))
    # gradients reach every offset of every projection, and only the offsets
    _widen(layer, g)
    out, weights = layer(*_mha_inputs(mha, g))
    ((out.hi - out.lo).sum() + (weights.hi - weights.lo).sum()).backward()
    for name, p in model.named_parameters():
        if name in offsets:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
        else:
            assert p.grad is None, name
    # projection back to non-negative offsets
    with torch.no_grad():
        for p in inn.offset_parameters(model):
            p.sub_(0.03)
    assert any(float(p.detach().min()) < 0 for p in layer.offsets())
    inn.project_(model)
    assert all(float(p.detach().min()) >= 0 for p in layer.offsets())
    # the torch module is left as it was: no offsets, its parameters still train
    trained = nn.MultiheadAttention(6, 2)
    IntervalMultiheadAttention(trained)
    assert all(p.requires_grad for p in trained.parameters())
    assert not any("offset" in name for name in trained.state_dict())


def test_multihead_attention_state_dict_round_trip():
    g = torch.Generator().manual_seed(5)
    mha = _mha("kdim-vdim", batch_first=True)
    layer = _widen(IntervalMultiheadAttention(mha), g)
    state = layer.state_dict()
    assert set(mha.state_dict()) <= set(state)
    assert {"q_proj_weight_offset_lo", "in_proj_bias_offset_hi", "out_proj.weight_offset_lo",
            "out_proj.bias_offset_hi"} <= set(state)
    boxes = _mha_inputs(mha, g, batch_first=True)
    fresh = IntervalMultiheadAttention(_mha("kdim-vdim", batch_first=True), copy_weights=True)
    fresh.load_state_dict(state)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    with torch.no_grad():
        expected, _ = layer(*boxes)
        for other in (fresh, copy.deepcopy(layer), torch.load(buffer, weights_only=False)):
            got, _ = other(*boxes)
            assert torch.equal(got.lo, expected.lo) and torch.equal(got.hi, expected.hi)


def test_multihead_attention_without_offsets_is_the_torch_module_on_tensors():
    mha = _mha("self")
    layer = IntervalMultiheadAttention.from_module(mha, offsets=False)
    assert not layer.has_offsets and list(layer.offsets()) == []
    assert list(inn.interval_layers(layer)) == []
    x = torch.randn(4, 2, 6, dtype=f64)
    with torch.no_grad():
        out, weights = layer(x, x, x)
        assert isinstance(out, torch.Tensor) and torch.equal(out, mha(x, x, x)[0])
        box, _ = layer(*[inn.Interval(x - 0.1, x + 0.1, x)] * 3)
    assert torch.equal(box.point, out) and bool((box.lo < box.hi).all())


def test_multihead_attention_refusals():
    for unsupported in (dict(add_bias_kv=True), dict(add_zero_attn=True)):
        with pytest.raises(ValueError, match="add_bias_kv or add_zero_attn"):
            IntervalMultiheadAttention(nn.MultiheadAttention(4, 2, **unsupported))
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
