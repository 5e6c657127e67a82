"""The parametrised interval layers: built from trained torch layers they reproduce them at zero
width, contain every sampled network when widened, take the fast path only when told, and keep
the point weights frozen."""

import copy
import io

import pytest
import torch
import torch.nn as nn

import inn_cuda.nn as inn
from helpers import sample_inside

LAYERS = [
    pytest.param(lambda: nn.Linear(5, 3), (4, 5), id="linear"),
    pytest.param(lambda: nn.Linear(5, 3, bias=False), (2, 3, 5), id="linear-nobias-3d"),
    pytest.param(lambda: nn.Conv1d(2, 3, 3, padding=1), (2, 2, 9), id="conv1d"),
    pytest.param(lambda: nn.Conv1d(2, 4, 3, stride=2, dilation=2, groups=2, padding="valid"),
                 (2, 2, 11), id="conv1d-strided-groups"),
    pytest.param(lambda: nn.Conv1d(2, 3, 4, padding="same", padding_mode="reflect"), (1, 2, 9),
                 id="conv1d-same-reflect"),
    pytest.param(lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 6, 5), id="conv2d"),
    pytest.param(lambda: nn.Conv2d(4, 2, (3, 2), stride=(2, 1), dilation=(1, 2), groups=2,
                                   padding=(1, 0), padding_mode="circular"), (1, 4, 7, 6),
                 id="conv2d-strided-groups-circular"),
    pytest.param(lambda: nn.Conv2d(2, 2, 3, padding=2, padding_mode="replicate", bias=False),
                 (1, 2, 5, 5), id="conv2d-replicate-nobias"),
    pytest.param(lambda: nn.ConvTranspose1d(2, 3, 3, stride=2, output_padding=1), (2, 2, 5),
                 id="convtranspose1d"),
    pytest.param(lambda: nn.ConvTranspose2d(2, 3, 2, stride=2), (2, 2, 4, 3),
                 id="convtranspose2d"),
    pytest.param(lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1,
                                            groups=2, dilation=1), (1, 4, 3, 4),
                 id="convtranspose2d-groups-outpad"),
]

CONVERT = {nn.Linear: inn.IntervalLinear, nn.Conv1d: inn.IntervalConv1d,
           nn.Conv2d: inn.IntervalConv2d, nn.ConvTranspose1d: inn.IntervalConvTranspose1d,
           nn.ConvTranspose2d: inn.IntervalConvTranspose2d}


def interval_of(module, **kwargs):
    return CONVERT[type(module)].from_module(module, **kwargs)


def widen(layer, scale=0.2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for offset in layer.offsets():
            offset.copy_(scale * torch.rand(offset.shape, generator=generator,
                                            dtype=torch.float64).to(offset.dtype))
    return layer


@pytest.mark.parametrize("make, shape", LAYERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_width_reproduces_the_torch_layer(make, shape, dtype):
    module = make().to(dtype)
    layer = interval_of(module)
    x = torch.randn(shape, dtype=dtype)
    with torch.no_grad():
        expected = module(x)
        for given in (x, inn.Interval(x, x.clone(), x)):
            out = layer(given)
            assert torch.equal(out.point, expected)
            scale = 1 + float(expected.abs().max())
            assert float((out.lo - expected).abs().max()) <= 64 * torch.finfo(dtype).eps * scale
            assert float((out.hi - expected).abs().max()) <= 64 * torch.finfo(dtype).eps * scale


@pytest.mark.parametrize("make, shape", LAYERS)
@pytest.mark.parametrize("nonneg", [False, True])
def test_sampled_weights_and_inputs_lie_inside(make, shape, nonneg):
    module = make().double()
    layer = widen(interval_of(module, input_nonneg=nonneg))
    generator = torch.Generator().manual_seed(1)
    lo = torch.randn(shape, dtype=torch.float64, generator=generator)
    lo = lo.abs() if nonneg else lo
    hi = lo + 0.3 * torch.rand(shape, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        out = layer(inn.Interval(lo, hi))
        assert out.point is None
        for _ in range(4):
            sampled = copy.deepcopy(module)
            sampled.weight.copy_(sample_inside(*layer.weight_bounds(), generator))
            if module.bias is not None:
                sampled.bias.copy_(sample_inside(*layer.bias_bounds(), generator))
            y = sampled(sample_inside(lo, hi, generator))
            assert bool(out.contains(y, 1e-12).all())


@pytest.mark.parametrize("make, shape", LAYERS)
def test_fast_path_equals_general_path_on_nonneg_input(make, shape):
    module = make().double()
    fast = widen(interval_of(module, input_nonneg=True))
    general = copy.deepcopy(fast)
    general.input_nonneg = False
    lo = torch.rand(shape, dtype=torch.float64)
    x = inn.Interval(lo, lo + torch.rand(shape, dtype=torch.float64))
    with torch.no_grad():
        a, b = fast(x), general(x)
    assert torch.allclose(a.lo, b.lo, rtol=1e-13, atol=1e-13)
    assert torch.allclose(a.hi, b.hi, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="input_nonneg=True requires x_lo >= 0"):
        fast(inn.Interval(lo - 1, lo))


def test_constructor_takes_the_torch_arguments():
    layer = inn.IntervalConv2d(2, 3, 3, padding=1, bias=False, dtype=torch.float64,
                               input_nonneg=True)
    assert layer.weight.shape == (3, 2, 3, 3) and layer.weight.dtype == torch.float64
    assert layer.bias is None and layer.bias_offset_lo is None and layer.input_nonneg
    assert not layer.weight.requires_grad
    assert all(p.requires_grad and not bool(p.any()) for p in layer.offsets())
    assert set(layer.state_dict()) == {"weight", "weight_offset_lo", "weight_offset_hi"}
    assert "input_nonneg=True" in repr(layer) and "offsets=True" in repr(layer)
    linear = inn.IntervalLinear(4, 2)
    assert set(linear.state_dict()) == {"weight", "bias", "weight_offset_lo", "weight_offset_hi",
                                        "bias_offset_lo", "bias_offset_hi"}


def test_weight_bounds_follow_the_offsets():
    layer = widen(inn.IntervalLinear(3, 2))
    w_lo, w_hi = layer.weight_bounds()
    assert torch.equal(w_lo, layer.weight - layer.weight_offset_lo)
    assert torch.equal(w_hi, layer.weight + layer.weight_offset_hi)
    b_lo, b_hi = layer.bias_bounds()
    assert bool((b_lo <= layer.bias).all()) and bool((layer.bias <= b_hi).all())


def test_project_clamps_offsets_and_training_leaves_weights_alone():
    module = nn.Conv2d(1, 2, 3)
    before = copy.deepcopy(module.state_dict())
    layer = inn.IntervalConv2d.from_module(module)
    optimiser = torch.optim.SGD(layer.offsets(), lr=1.0)
    out = layer(torch.randn(2, 1, 5, 5))
    (out.hi - out.lo).sum().backward()  # pushes every offset below 0
    assert layer.weight.grad is None
    optimiser.step()
    assert any(float(p.detach().min()) < 0 for p in layer.offsets())
    assert layer.project_() is layer
    assert all(float(p.detach().min()) >= 0 for p in layer.offsets())
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])
    assert torch.equal(layer.weight, module.weight)


def test_offsets_false_is_the_torch_layer_on_points():
    module = nn.Conv1d(2, 2, 3)
    layer = inn.IntervalConv1d.from_module(module, offsets=False)
    assert not layer.has_offsets and list(layer.offsets()) == []
    x = torch.randn(1, 2, 7)
    with torch.no_grad():
        assert torch.equal(layer(x), module(x))  # a tensor in, a tensor out
        out = layer(inn.Interval(x - 0.1, x + 0.1, x))
    assert torch.equal(out.point, module(x)) and bool((out.lo < out.hi).all())


def test_copy_weights_and_sharing():
    module = nn.Linear(3, 3)
    shared = inn.IntervalLinear.from_module(module)
    copied = inn.IntervalLinear.from_module(module, copy_weights=True)
    with torch.no_grad():
        module.weight.add_(1)
    assert torch.equal(shared.weight, module.weight)
    assert not torch.equal(copied.weight, module.weight)
    assert shared.weight is not module.weight  # own Parameter objects, frozen
    assert module.weight.requires_grad


def test_conv_transpose_output_size():
    module = nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1)
    layer = inn.IntervalConvTranspose2d.from_module(module)
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        out = layer(x, output_size=(8, 8))
        assert out.lo.shape == (1, 2, 8, 8)
        assert torch.equal(out.point, module(x, output_size=(8, 8)))
        assert layer(x, output_size=[1, 2, 7, 7]).lo.shape == (1, 2, 7, 7)
    with pytest.raises(ValueError, match="not reachable"):
        layer(x, output_size=(12, 12))


def test_state_dict_round_trip():
    layer = widen(inn.IntervalConvTranspose2d(2, 3, 2, stride=2))
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    restored = inn.IntervalConvTranspose2d(2, 3, 2, stride=2)
    restored.load_state_dict(torch.load(buffer))
    x = torch.randn(1, 2, 3, 3)
    with torch.no_grad():
        a, b = layer(x), restored(x)
    assert torch.equal(a.lo, b.lo) and torch.equal(a.hi, b.hi)


def test_from_module_errors():
    with pytest.raises(TypeError, match="expects an nn.Conv2d, got Linear"):
        inn.IntervalConv2d.from_module(nn.Linear(2, 2))

    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(TypeError, match="Scaled overrides nn.Linear.forward"):
        inn.IntervalLinear.from_module(Scaled(2, 2))
    with pytest.raises(ValueError, match="lazy module has not been initialised"):
        inn.IntervalLinear.from_module(nn.LazyLinear(3))


def test_module_helpers():
    model = nn.Sequential(inn.IntervalLinear(3, 4), inn.IntervalMonotone(nn.ReLU()),
                          inn.IntervalLinear(4, 2, offsets=False), nn.BatchNorm1d(2))
    assert list(inn.interval_layers(model)) == [model[0]]
    assert [n for n, _ in inn.named_interval_layers(model)] == ["0"]
    assert len(list(inn.offset_parameters(model))) == 4
    points = list(inn.point_parameters(model))
    assert len(points) == 6  # two weights, two biases, BatchNorm weight and bias
    with torch.no_grad():
        for p in inn.offset_parameters(model):
            p.fill_(-1)
    assert inn.project_(model) is model
    assert all(float(p.detach().min()) == 0 for p in inn.offset_parameters(model))
