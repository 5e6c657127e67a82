"""Third-party architectures convert (idioms of MONAI, torchvision and timm re-created in
thirdparty_models): every Linear/Conv/MultiheadAttention gets intervals, zero width reproduces
the model (checked node by node by example_inputs=), and networks sampled inside the weight
intervals (uniformly and at vertices) lie inside the bounds, in float64. The isinstance-guarded
UpCat must raise."""

import pytest
import torch
import torch.nn as nn

import inn_cuda
import inn_cuda.nn as inn
from inn_cuda.convert import ConversionError, describe, to_interval
from nn_models import assert_contains, randomise_offsets, sampled_network
import thirdparty_models as zoo


@pytest.mark.parametrize("name", list(zoo.MAKERS))
def test_converts_on_all_layers_and_is_exact_at_zero_width(name):
    model, x = zoo.make(name)
    interval_model = to_interval(model, example_inputs=x)  # raises on any divergence
    converted = sorted(n for n, _ in inn.named_interval_layers(interval_model))
    assert converted == zoo.parametrised_layers(model)
    assert set(model.state_dict()) <= set(interval_model.state_dict())  # the original keys
    with torch.no_grad():
        out, expected = interval_model(x), model(x)
    assert torch.equal(out.point, expected)
    tol = 1e-9 * (1 + float(expected.abs().max()))
    assert float((out.lo - expected).abs().max()) <= tol
    assert float((out.hi - expected).abs().max()) <= tol
    assert describe(interval_model)[-1].mode == "interval"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in ("monai_unet", "convnext") else n for n in zoo.MAKERS])
def test_sampled_networks_lie_inside(name):
    model, x = zoo.make(name)
    interval_model = randomise_offsets(to_interval(model, example_inputs=x), scale=0.05)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        out = interval_model(inn.Interval(x - 0.01, x + 0.01, x))
        assert bool((out.lo <= out.hi).all()) and float(out.width.min()) > 0
        assert_contains(out, model(x), f"{name} point")
        for sample in range(2):
            x_in = x + 0.01 * (2 * torch.rand(x.shape, generator=generator,
                                              dtype=x.dtype) - 1)
            network = sampled_network(model, interval_model, generator,
                                      vertex=sample % 2 == 1)
            assert_contains(out, network(x_in), f"{name} sample {sample}")


def test_isinstance_guarded_upcat_raises_instead_of_mis_tracing():
    model = zoo.UpCat(4, 2, 3).double().eval()
    x, skip = torch.randn(1, 4, 4, 4).double(), torch.randn(1, 2, 8, 8).double()
    with pytest.raises(ConversionError,
                       match=r"node 'pad'.*calls module 'pad' more often than the model"):
        to_interval(model, example_inputs=(x, skip))
    # without an example the first call checks
    interval_model = to_interval(model)
    with pytest.raises(ConversionError, match="first input"):
        interval_model(x, skip)


def test_first_call_check_runs_once_and_passes_for_a_faithful_trace():
    model, x = zoo.make("gn_resnet")
    interval_model = randomise_offsets(to_interval(model))  # widened before the first call
    hooks = interval_model._forward_pre_hooks
    assert len(hooks) == 1
    with torch.no_grad():
        interval_model(x)
    assert len(hooks) == 0


def test_example_inputs_on_which_the_model_fails_is_a_value_error():
    model, x = zoo.make("gn_resnet")
    with pytest.raises(ValueError, match="example_inputs: the model itself raises"):
        to_interval(model, example_inputs=x[:, :2])


def test_subclass_equivalence_registry():
    class PlainConv(nn.Conv2d):  # traces to exactly F.conv2d on its own weights: recognised
        def forward(self, x):
            return self._conv_forward(x, self.weight, self.bias)

    class ContiguousConv(nn.Conv2d):  # more than the plain call: must be declared
        def forward(self, x):
            return self._conv_forward(x.contiguous(), self.weight, self.bias)

    plain = nn.Sequential(PlainConv(1, 2, 3), nn.ReLU()).double().eval()
    assert isinstance(to_interval(plain).get_submodule("0"), inn.IntervalConv2d)
    model = nn.Sequential(ContiguousConv(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 1)).double().eval()
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    with pytest.raises(ConversionError, match="register_equivalent"):
        to_interval(model)
    inn_cuda.register_equivalent(ContiguousConv, nn.Conv2d)
    interval_model = to_interval(model, example_inputs=x)
    assert isinstance(interval_model.get_submodule("0"), inn.IntervalConv2d)
    assert interval_model.get_submodule("2").input_nonneg
    with pytest.raises(TypeError, match="subclass of base"):
        inn_cuda.register_equivalent(nn.Linear, nn.Conv2d)


def test_stochastic_depth_shares_one_mask_in_training():
    from inn_cuda.nn import functional as IF
    x = inn.Interval(torch.rand(64, 3) + 1, torch.rand(64, 3) + 3, torch.rand(64, 3) + 2)
    out = IF.stochastic_depth(x, 0.5, "row", True)
    dropped = out.point == 0
    assert torch.equal(dropped, out.lo == 0) and torch.equal(dropped, out.hi == 0)
    assert torch.equal(dropped.all(1), dropped.any(1))  # one entry per row
    assert 0 < int(dropped.all(1).sum()) < 64
    torch.testing.assert_close(out.point[~dropped], 2 * x.point[~dropped])
    assert IF.stochastic_depth(x, 0.5, "row", False) is x


class ShapeChecked(nn.Module):
    """Branches on shapes (UNETR's ``if h % 32``, smp's ``np.array(x.shape)`` checks) and
    reshapes by them, as einops' Rearrange does."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16, 2)

    def forward(self, x):
        if x.shape[-1] % 4:
            raise ValueError("the width must be a multiple of 4")
        b, c, h, w = self.conv(x).shape
        y = self.conv(x).relu().reshape(b, c, h // 2, 2, w // 2, 2).mean((3, 5))
        return self.fc(y.flatten(1))


class ValueBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        h = self.fc(x)
        return h if h.sum() > 0 else -h


def test_second_capture_path_traces_shape_branches_with_the_example():
    model = ShapeChecked().double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ConversionError, match="pass example_inputs= to trace it"):
        to_interval(model)
    interval_model = to_interval(model, example_inputs=x)
    assert len(list(inn.interval_layers(interval_model))) == 2
    with torch.no_grad():
        assert torch.equal(interval_model(x).point, model(x))
    with pytest.raises(ConversionError, match="failed too.*tensor values decide"):
        to_interval(ValueBranch(), example_inputs=torch.randn(2, 3))
