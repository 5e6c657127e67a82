"""Shared pieces of the training tests: a small synthetic regression task and, until the
interval layers of ``inn_cuda.nn`` land, a stand-in implementing their contract (an interval
MLP built on ``inn_cuda.interval_linear``, ``offset_parameters``, ``point_parameters``,
``project_``)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import inn_cuda
import inn_cuda.nn
from inn_cuda.nn import Interval


# ------------------------------------------------------------------------ the synthetic task

def regression_data(n, *, seed, features=4):
    """y = sin(3 x0) + x1 x2 + noise whose scale grows with |x3| (heteroscedastic), so a good
    interval is wide in some places and narrow in others."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, features, generator=g) * 2 - 1
    clean = torch.sin(3 * x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    noise = 0.05 * (1 + 3 * x[:, 3:4].abs()) * torch.randn(n, 1, generator=g)
    return TensorDataset(x, clean + noise)


def loaders(*, n_train=256, n_val=256, batch=32, seed=0, shuffle=True, generator=None):
    train = DataLoader(regression_data(n_train, seed=seed), batch_size=batch, shuffle=shuffle,
                       generator=generator)
    val = DataLoader(regression_data(n_val, seed=seed + 1), batch_size=128)
    return train, val


def point_mlp(features=4, hidden=16, *, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, 1))


# ------------------------------------------------- stand-in for the inn_cuda.nn layer contract

class StandInIntervalLinear(nn.Module):
    """Point weight/bias (frozen while fitting) plus non-negative lower/upper offsets."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = nn.Parameter(linear.bias.detach().clone())
        for name in ("weight_lo_offset", "weight_hi_offset"):
            setattr(self, name, nn.Parameter(torch.zeros_like(self.weight)))
        for name in ("bias_lo_offset", "bias_hi_offset"):
            setattr(self, name, nn.Parameter(torch.zeros_like(self.bias)))

    def forward(self, x: Interval) -> Interval:
        lo, hi = inn_cuda.interval_linear(
            x.lo, x.hi, self.weight - self.weight_lo_offset, self.weight + self.weight_hi_offset,
            self.bias - self.bias_lo_offset, self.bias + self.bias_hi_offset)
        return Interval(lo, hi, F.linear(x.point, self.weight, self.bias))


class StandInIntervalMLP(nn.Module):
    """Interval version of an nn.Sequential of Linear, ReLU and Dropout layers."""

    def __init__(self, model: nn.Sequential):
        super().__init__()
        layers = []
        for layer in model:
            if isinstance(layer, nn.Linear):
                layers.append(StandInIntervalLinear(layer))
            elif isinstance(layer, (nn.ReLU, nn.Dropout)):
                layers.append(layer)
            else:
                raise TypeError(type(layer).__name__)
        self.layers = nn.ModuleList(layers)

    def forward(self, x) -> Interval:
        out = x if isinstance(x, Interval) else Interval.from_point(x)
        for layer in self.layers:
            if isinstance(layer, StandInIntervalLinear):
                out = layer(out)
            elif isinstance(layer, nn.Dropout):  # one mask for point, lo and hi
                mask = layer(torch.ones_like(out.lo))
                out = out.map(lambda t: t * mask)
            else:
                out = out.map(layer)
        return out


def offset_parameters(module):
    return (p for n, p in module.named_parameters() if n.endswith("_offset"))


def point_parameters(module):
    return (p for n, p in module.named_parameters() if not n.endswith("_offset"))


def project_(module):
    with torch.no_grad():
        for p in offset_parameters(module):
            p.clamp_(min=0)


def to_interval(model):
    return StandInIntervalMLP(model)


@pytest.fixture
def interval_contract(monkeypatch):
    """Install the stand-in contract functions where inn_cuda.nn does not have them yet."""
    for name, fn in (("offset_parameters", offset_parameters),
                     ("point_parameters", point_parameters), ("project_", project_)):
        if not hasattr(inn_cuda.nn, name):
            monkeypatch.setattr(inn_cuda.nn, name, fn, raising=False)
    return to_interval
