"""inn_cuda.to_interval on the model zoo of nn_models: zero width reproduces the model, sampled
networks stay inside the bounds (all layers and last=k), sign tracking picks the fast path
exactly where it is valid, the converted model behaves like a PyTorch module, and a
MultiheadAttention converts to one interval layer with interval projection weights."""

import copy
import io

import pytest
import torch
import torch.nn as nn

import inn_cuda.nn as inn
from inn_cuda.convert import ConversionError, describe, to_interval
from helpers import ALL_DEVICES, sample_inside
import nn_models
from nn_models import assert_contains, randomise_offsets, sampled_network
import thirdparty_models


@pytest.mark.parametrize("name", nn_models.MODELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_width_reproduces_the_model(name, dtype):
    model, x, _ = nn_models.make(name)
    model, x = model.to(dtype), x.to(dtype)
    interval_model = to_interval(model)
    with torch.no_grad():
        expected = model(x)
        out = interval_model(x)
    assert isinstance(out, inn.Interval)
    assert torch.equal(out.point, expected)  # same torch ops on the same weights
    tol = 64 * torch.finfo(dtype).eps * (1 + expected.abs().max())
    assert float((out.lo - expected).abs().max()) <= tol
    assert float((out.hi - expected).abs().max()) <= tol


@pytest.mark.parametrize("name", nn_models.MODELS)
@pytest.mark.parametrize("last", [None, 3])
def test_sampled_networks_lie_inside_the_bounds(name, last):
    model, x, _ = nn_models.make(name)
    model, x = model.double(), x.double()
    interval_model = randomise_offsets(to_interval(model, last=last))
    if last is not None:
        assert len(list(inn.interval_layers(interval_model))) == last
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        out = interval_model(x)
        assert bool((out.lo <= out.hi).all())
        assert float(out.width.max()) > 0
        assert_contains(out, out.point, f"{name} point")
        assert torch.equal(out.point, model(x))
        for sample in range(3):
            assert_contains(out, sampled_network(model, interval_model, generator)(x),
                            f"{name} sample {sample}")


@pytest.mark.parametrize("name", nn_models.MODELS)
def test_fast_path_exactly_where_the_input_is_nonneg(name):
    model, x, expected_nonneg = nn_models.make(name)
    model, x = model.double(), x.double()
    interval_model = randomise_offsets(to_interval(model))
    flags = {n: layer.input_nonneg for n, layer in inn.named_interval_layers(interval_model)}
    assert {n for n, flag in flags.items() if flag} == expected_nonneg
    general = copy.deepcopy(interval_model)
    for layer in inn.interval_layers(general):
        layer.input_nonneg = False
    with torch.no_grad():
        fast, slow = interval_model(x), general(x)
    for a, b in ((fast.lo, slow.lo), (fast.hi, slow.hi)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))


def test_layer_called_on_signed_and_nonneg_inputs_takes_the_general_path():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(torch.relu(x)) + self.fc(x)

    model = Shared()
    interval_model = to_interval(model)
    assert interval_model.fc.input_nonneg is False
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(interval_model(x).point, model(x))


def test_describe_reports_modes_and_signs():
    model, x, _ = nn_models.make("unet_nearest")
    reports = describe(to_interval(model, last=2))
    by_target = {r.target: r for r in reports}
    assert by_target["x"].mode == "point" and not by_target["x"].nonneg
    assert by_target["down.0"].mode == "point"
    assert by_target["merge.3"].mode == "interval" and by_target["head"].mode == "interval"
    first_interval = [r.mode for r in reports].index("interval")
    assert reports[first_interval].target == "merge.3"
    assert all(r.mode == "interval" for r in reports[first_interval:])
    relus = [r for r in reports if r.target.endswith("relu")]
    assert len(relus) == 13 and all(r.nonneg for r in relus)
    assert not by_target["head"].nonneg


def test_last_k_runs_a_point_prefix_and_enters_as_a_degenerate_interval():
    model, x, _ = nn_models.make("unet_transpose")
    interval_model = to_interval(model, last=2)
    selected = [n for n, _ in inn.named_interval_layers(interval_model)]
    assert selected == ["merge.3", "head"]
    prefix_conv = interval_model.get_submodule("down.0")  # point weights, tensor in and out
    assert isinstance(prefix_conv, inn.IntervalConv2d) and not prefix_conv.has_offsets
    assert not prefix_conv.input_nonneg  # no interval ever reaches it
    with torch.no_grad():
        out = interval_model(x)
    assert torch.equal(out.point, model(x))
    with pytest.raises(ValueError, match="point mode"):
        interval_model(inn.Interval(x, x + 1))
    degenerate = interval_model(inn.Interval.from_point(x))
    assert torch.equal(degenerate.point, out.point)


def test_train_mode_keeps_the_point_network_frozen():
    # BatchNorm in the point prefix and in the interval part normalises by its running
    # statistics and never updates them, also in train(); so the point stays the eval output
    model, x, _ = nn_models.make("dncnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for last in (None, 1):
        interval_model = to_interval(model, last=last).train()
        with torch.no_grad():
            out = interval_model(x)
            assert torch.equal(out.point, model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_include_by_name_prefix_and_predicate():
    model, x, _ = nn_models.make("resnet")
    by_block = to_interval(model, include="blocks.1")
    names = [n for n, _ in inn.named_interval_layers(by_block)]
    assert names == ["blocks.1.shortcut.0", "blocks.1.conv1", "blocks.1.conv2"]  # run order
    # layers after the interval part keep point weights but carry the interval along
    assert not by_block.fc.has_offsets and isinstance(by_block.fc, inn.IntervalLinear)
    assert not by_block.stem.has_offsets and not by_block.stem.input_nonneg
    by_list = to_interval(model, include=["fc", "stem"])
    assert [n for n, _ in inn.named_interval_layers(by_list)] == ["stem", "fc"]
    by_predicate = to_interval(model, include=lambda name, m: isinstance(m, nn.Linear))
    assert [n for n, _ in inn.named_interval_layers(by_predicate)] == ["fc"]
    randomise_offsets(by_block)
    with torch.no_grad():
        out = by_block(x)
    assert bool(out.contains(model(x), 1e-5).all()) and float(out.width.max()) > 0


def test_interval_input_when_every_layer_has_intervals():
    model, x, _ = nn_models.make("mlp")
    interval_model = randomise_offsets(to_interval(model.double()))
    x = x.double()
    wide = interval_model(inn.Interval(x - 0.1, x + 0.1))
    assert wide.point is None  # the input interval carried no point
    narrow = interval_model(x)
    assert bool((wide.lo <= narrow.lo + 1e-12).all()) and bool((wide.hi >= narrow.hi - 1e-12).all())
    generator = torch.Generator().manual_seed(3)
    x_inside = sample_inside(x - 0.1, x + 0.1, generator)
    with torch.no_grad():
        assert_contains(wide, sampled_network(model, interval_model, generator)(x_inside),
                        "interval input")


def test_return_point_false_skips_the_point():
    model, x, _ = nn_models.make("dncnn")
    interval_model = to_interval(model)
    with torch.no_grad():
        with_point = interval_model(x)
        without = interval_model(x, return_point=False)
    assert without.point is None
    assert torch.equal(without.lo, with_point.lo) and torch.equal(without.hi, with_point.hi)
    prefix_model = to_interval(model, last=1)
    assert prefix_model(x, return_point=False).point is None


def test_state_dict_round_trip():
    model, x, _ = nn_models.make("resnet")
    interval_model = randomise_offsets(to_interval(model))
    keys = set(interval_model.state_dict())
    assert set(model.state_dict()) <= keys
    assert {"fc.weight_offset_lo", "fc.weight_offset_hi", "fc.bias_offset_lo",
            "fc.bias_offset_hi"} <= keys
    buffer = io.BytesIO()
    torch.save(interval_model.state_dict(), buffer)
    buffer.seek(0)
    restored = to_interval(model, copy_weights=True)
    restored.load_state_dict(torch.load(buffer))
    with torch.no_grad():
        a, b = interval_model(x), restored(x)
    assert torch.equal(a.lo, b.lo) and torch.equal(a.hi, b.hi) and torch.equal(a.point, b.point)


def test_training_offsets_leaves_the_original_weights_untouched():
    model, x, _ = nn_models.make("dncnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    interval_model = to_interval(model)
    assert all(not p.requires_grad for p in inn.point_parameters(interval_model))
    offsets = list(inn.offset_parameters(interval_model))
    assert offsets and all(p.requires_grad for p in offsets)
    optimiser = torch.optim.Adam(offsets, lr=1e-2)
    target = torch.randn_like(x)
    for _ in range(2):
        out = interval_model(x)
        loss = ((out.lo - target).relu() ** 2 + (target - out.hi).relu() ** 2).mean() \
            + 0.01 * out.width.mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        inn.project_(interval_model)
    assert all(float(p.detach().min()) >= 0 for p in offsets)
    assert any(float(p.detach().max()) > 0 for p in offsets)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_shared_versus_copied_weights():
    model, x, _ = nn_models.make("mlp")
    shared, copied = to_interval(model), to_interval(model, copy_weights=True)
    with torch.no_grad():
        model.layers[0].weight.mul_(2)
        expected = model(x)
        assert torch.equal(shared(x).point, expected)
        assert not torch.equal(copied(x).point, expected)


def test_to_dtype_and_train_eval_modes():
    model, x, _ = nn_models.make("unet_nearest")
    interval_model = to_interval(model).to(torch.float64)
    assert all(p.dtype == torch.float64 for p in interval_model.parameters())
    x = x.double()
    with torch.no_grad():
        evaluated = interval_model(x)
        assert torch.equal(evaluated.point, copy.deepcopy(model).double()(x))
    assert not interval_model.training
    randomise_offsets(interval_model.train())
    with torch.no_grad():
        out = interval_model(x)  # dropout on: one mask for the point and both bounds
    assert not torch.equal(out.point, evaluated.point)
    assert_contains(out, out.point, "train-mode point")


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name", ["unet_transpose", "dncnn"])
def test_converted_model_on_each_device(name, device):
    model, x, _ = nn_models.make(name)
    model, x = model.to(device), x.to(device)
    interval_model = randomise_offsets(to_interval(model).to(device))
    assert all(p.device.type == device for p in interval_model.parameters())
    with torch.no_grad():
        out = interval_model(x)
        assert torch.equal(out.point, model(x))
    assert out.lo.device.type == device
    tol = 1e-4 * (1 + float(out.point.abs().max()))
    assert bool(out.contains(out.point, tol).all()) and float(out.width.max()) > 0


@pytest.mark.parametrize("act, nonneg", [
    (nn.ReLU(), True), (nn.Sigmoid(), True), (nn.Softplus(), True), (nn.Softplus(beta=-1), False),
    (nn.Hardtanh(0.0, 1.0), True), (nn.Tanh(), False), (nn.Tanhshrink(), False),
    (nn.ELU(), False), (nn.GELU(), False), (nn.Threshold(0.5, 0.0), True),
    (nn.Sequential(nn.ReLU(), nn.Tanhshrink()), False), (nn.Sequential(nn.ReLU(), nn.Tanh()), True),
    (nn.Sequential(nn.ReLU(), nn.BatchNorm1d(4).eval()), False),
    (nn.Sequential(nn.ReLU(), nn.Dropout(), nn.MaxPool1d(1), nn.Identity()), True),
])
def test_sign_rules_of_activations(act, nonneg):
    model = nn.Sequential(nn.Linear(4, 4), act, nn.Linear(4, 2)).eval()
    assert to_interval(model).get_submodule("2").input_nonneg is nonneg


# ------------------------------------------------------------------------ multihead attention

MHA_PARAMETERS = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")


def test_multihead_attention_is_one_interval_layer_with_interval_projections():
    generator = torch.Generator().manual_seed(6)
    block = thirdparty_models.ViTBlock(8, 2).double().eval()  # LayerNorm, MHA, MLP
    x = torch.randn(2, 5, 8, generator=generator, dtype=torch.float64)
    interval_model = to_interval(block, example_inputs=x)
    names = [n for n, _ in inn.named_interval_layers(interval_model)]
    assert names == ["attn", "mlp.0", "mlp.2"]  # one layer, holding all four projections
    attn = interval_model.attn
    assert isinstance(attn, inn.IntervalMultiheadAttention) and not attn.input_nonneg
    offsets = [id(p) for p in inn.offset_parameters(interval_model)]
    assert offsets[:8] == [id(p) for p in attn.offsets()] and len(offsets) == 8 + 4 + 4
    keys = set(interval_model.state_dict())
    assert set(block.state_dict()) <= keys
    assert {f"attn.{n}_offset_{side}" for n in MHA_PARAMETERS for side in ("lo", "hi")} <= keys
    # last= and include= count it as one layer
    later = to_interval(block, last=2)
    assert [n for n, _ in inn.named_interval_layers(later)] == ["mlp.0", "mlp.2"]
    assert not later.attn.has_offsets
    assert [n for n, _ in inn.named_interval_layers(to_interval(block, last=3))] == names
    only = to_interval(block, include="attn")
    assert [n for n, _ in inn.named_interval_layers(only)] == ["attn"]

    randomise_offsets(interval_model)
    box = inn.Interval(x - 0.01, x + 0.01, x)
    with torch.no_grad():
        out = interval_model(box)
        assert torch.equal(out.point, block(x))
        for sample in range(4):
            network = sampled_network(block, interval_model, generator, vertex=sample % 2 == 1)
            assert_contains(out, network(sample_inside(box.lo, box.hi, generator)),
                            f"sample {sample}")
    width = interval_model(box).width.sum()
    width.backward()
    for name, p in attn.named_parameters():
        if "offset" in name:
            assert float(p.grad.abs().sum()) > 0, name
    fresh = to_interval(block)
    fresh.load_state_dict(interval_model.state_dict())
    with torch.no_grad():
        again = fresh(box)
    assert torch.equal(again.lo, out.lo) and torch.equal(again.hi, out.hi)


class _Attention(nn.Module):
    """Attention over a projection: the query (and key) through ReLU, the value as given."""

    def __init__(self, value_after_relu):
        super().__init__()
        self.value_after_relu = value_after_relu
        self.fc = nn.Linear(4, 4)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        h = self.fc(x)
        q = torch.relu(h)
        return self.attn(q, q, q if self.value_after_relu else h, need_weights=False)[0]


def test_multihead_attention_without_interval_counterpart_is_named_at_conversion():
    model = _Attention(True)
    model.attn = nn.MultiheadAttention(4, 2, batch_first=True, add_bias_kv=True)
    with pytest.raises(ConversionError, match="node 'attn'.*add_bias_kv"):
        to_interval(model)


@pytest.mark.parametrize("value_after_relu", [True, False])
def test_multihead_attention_fast_path_needs_every_input_nonneg(value_after_relu):
    model = _Attention(value_after_relu).double().eval()
    interval_model = randomise_offsets(to_interval(model))
    assert interval_model.attn.input_nonneg is value_after_relu
    general = copy.deepcopy(interval_model)
    general.attn.input_nonneg = False
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        fast, slow = interval_model(x), general(x)
    torch.testing.assert_close(fast.lo, slow.lo, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.hi, slow.hi, rtol=1e-12, atol=1e-12)
