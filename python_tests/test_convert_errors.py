"""What to_interval refuses, and how it says so: unsupported ops name the node, the op and what
is supported; untraceable models get the remedy; bad arguments name the argument."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inn_cuda.nn as inn
from inn_cuda.convert import ConversionError, describe, to_interval


class WithUnsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.norm = nn.Softmin(dim=1)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.norm(self.fc1(x)))


def test_unsupported_module_names_node_op_and_supported_list():
    with pytest.raises(ConversionError) as info:
        to_interval(WithUnsupported())
    message = str(info.value)
    assert "node 'norm'" in message and "Softmin" in message
    assert "Supported modules:" in message and "Conv2d" in message and "BatchNorm2d" in message
    assert "last=" in message  # the remedy: keep it in the point prefix


def test_unsupported_module_in_the_point_prefix_is_kept():
    model = WithUnsupported()
    interval_model = to_interval(model, last=1)
    assert isinstance(interval_model.norm, nn.Softmin)
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(interval_model(x).point, model(x))


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.fc(x))


@pytest.mark.parametrize("fn, words", [
    (lambda h: torch.cumsum(h, dim=1), ["function", "cumsum", "no interval counterpart",
                                        "Supported functions:", "F.relu", "torch.cat"]),
    (lambda h: h.relu_(), ["tensor method .relu_()", "in-place"]),
    (lambda h: h.cumsum(1), ["tensor method .cumsum()", "Supported tensor methods:", "view"]),
    (lambda h: F.leaky_relu(h, -0.5), ["leaky_relu", "negative_slope -0.5 < 0"]),
    (lambda h: F.interpolate(h[:, None, None], scale_factor=2, mode="bicubic"),
     ["interpolate", "'bicubic' has negative weights"]),
    (lambda h: 1 / h, ["truediv", "'other' must be a point value"]),
    (lambda h: h.grad, ["getattr", "attribute 'grad'"]),
])
def test_unsupported_functions_and_methods(fn, words):
    with pytest.raises(ConversionError) as info:
        to_interval(Lambda(fn))
    message = str(info.value)
    assert "node '" in message
    for word in words:
        assert word in message, (word, message)


def test_non_monotone_module_settings_are_refused():
    model = nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(-0.1))
    with pytest.raises(ConversionError, match="negative_slope"):
        to_interval(model)
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Upsample(scale_factor=2, mode="bicubic"))
    with pytest.raises(ConversionError, match="bicubic"):
        to_interval(model)
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(ConversionError, match="return_indices"):
        to_interval(model)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(ConversionError, match="running statistics"):
        to_interval(model)


class CustomConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2


def test_subclass_that_overrides_forward_is_refused():
    with pytest.raises(ConversionError, match="node '_1'.*CustomConv subclasses nn.Conv2d but "
                                              "overrides forward.*register_equivalent"):
        to_interval(nn.Sequential(nn.Conv2d(1, 2, 3), CustomConv(2, 2, 3)))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:
            return h
        return -h


def test_data_dependent_control_flow_gets_the_remedy():
    with pytest.raises(ConversionError) as info:
        to_interval(DataDependent())
    message = str(info.value)
    assert "DataDependent" in message and "control flow" in message
    assert "to_interval(model.decoder)" in message and "IntervalConv2d.from_module" in message
    assert isinstance(info.value.__cause__, Exception)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(last=0), ValueError, "last must be between 1 and 2"),
    (dict(last=3), ValueError, "last must be between 1 and 2"),
    (dict(last=1.5), TypeError, "last must be an int"),
    (dict(last=True), TypeError, "last must be an int"),
    (dict(include="nope"), ValueError, "include='nope' names no parametrised layer"),
    (dict(include=[3]), TypeError, "include must hold module names"),
    (dict(include=lambda name, m: False), ValueError, "include selects no layer"),
    (dict(last=1, include="0"), ValueError, "not both"),
    (dict(copy_weights="yes"), TypeError, "copy_weights must be a bool"),
])
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        to_interval(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)), **kwargs)


def test_bad_models():
    with pytest.raises(TypeError, match="must be an nn.Module"):
        to_interval(lambda x: x)
    with pytest.raises(ValueError, match="no Linear, Conv1d"):
        to_interval(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="already contains interval layers"):
        to_interval(nn.Sequential(inn.IntervalLinear(2, 2)))


def test_indexing_by_an_interval_is_refused():
    class Gather(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            h = self.fc(x)
            return h[h]  # an index computed from interval values

    with pytest.raises(ConversionError, match="node 'getitem'.*'index' must be a point value"):
        to_interval(Gather())


def test_describe_needs_a_converted_model():
    with pytest.raises(ValueError, match="no conversion records"):
        describe(torch.fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2))))
