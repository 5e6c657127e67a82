"""Tiny versions of the networks INNs are built from, for the conversion tests: a 5-level U-Net
(max-pooling, nearest+conv or transposed-conv upsampling, concatenated skips, dropout, an
optional input residual), a DnCNN (BatchNorm, input minus predicted noise), a ResNet block stack,
an MLP with monotone and valley activations and a 1-D conv net. Each model comes with an input
maker and the names of the layers whose input sign tracking must prove non-negative; at the end,
helpers that widen a converted model and sample networks inside it."""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

import inn_cuda.nn as inn
from helpers import sample_inside


class UNet(nn.Module):
    """``levels`` resolutions (16x16 input reaches 1x1 at level 5); one 3x3 conv + ReLU per
    level and per decoder stage."""

    def __init__(self, channels=(2, 3, 4, 4, 4), up="nearest", residual=False, dropout=0.1):
        super().__init__()
        self.residual = residual
        self.down = nn.ModuleList()
        previous = 1
        for c in channels:
            self.down.append(nn.Conv2d(previous, c, 3, padding=1))
            previous = c
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(dropout)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c_skip, c_low in zip(channels[-2::-1], channels[:0:-1]):
            if up == "transpose":
                self.up.append(nn.ConvTranspose2d(c_low, c_skip, 2, stride=2))
            else:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c_low, c_skip, 3, padding=1)))
            self.merge.append(nn.Conv2d(2 * c_skip, c_skip, 3, padding=1))
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x):
        skips = []
        h = x
        for i, conv in enumerate(self.down):
            if i:
                h = self.drop(self.pool(h))
            h = F.relu(conv(h))
            skips.append(h)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1]):
            h = torch.relu(up(h))
            h = merge(torch.cat([skip, h], dim=1)).relu()
        out = self.head(h)
        return x + out if self.residual else out


def unet_nonneg_layers(up):
    """Every layer but the first reads ReLU outputs (pooled, upsampled or concatenated)."""
    names = [f"down.{i}" for i in range(1, 5)] + [f"merge.{i}" for i in range(4)] + ["head"]
    names += [f"up.{i}" if up == "transpose" else f"up.{i}.1" for i in range(4)]
    return set(names)


class DnCNN(nn.Module):
    """conv+ReLU, ``depth`` x (conv+BN+ReLU), conv; returns the input minus the noise."""

    def __init__(self, channels=4, depth=3):
        super().__init__()
        layers = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x - self.body(x)


def randomise_batchnorm(model, generator=None):
    """Running statistics and affine parameters of both signs, as after training."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=generator))
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model


def dncnn_nonneg_layers(depth=3):
    return {f"body.{i}" for i in range(2, 3 * depth + 3, 3)}


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.blocks = nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 6, stride=2),
                                    BasicBlock(6, 6))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet_nonneg_layers():
    names = {"fc", "blocks.1.shortcut.0"}
    for b in range(3):
        names |= {f"blocks.{b}.conv1", f"blocks.{b}.conv2"}
    return names


class MLP(nn.Module):
    """Monotone, valley and sign-changing activations between linear layers."""

    def __init__(self, sizes=(6, 8, 8, 8, 8, 8, 3)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.acts = nn.ModuleList([nn.ReLU(), nn.GELU(), nn.Sigmoid(), nn.SiLU(),
                                   nn.LeakyReLU(0.1)])

    def forward(self, x):
        for layer, act in zip(self.layers, self.acts):
            x = act(layer(x))
        return self.layers[-1](x)


def mlp_nonneg_layers():
    # after ReLU and after Sigmoid; GELU, SiLU and LeakyReLU outputs can be negative
    return {"layers.1", "layers.3"}


class Conv1dNet(nn.Module):
    """The 1-D study's conv net (kernel 5), shrunk, with pooling and linear upsampling."""

    def __init__(self, channels=4):
        super().__init__()
        self.c1 = nn.Conv1d(1, channels, 5, padding=2)
        self.c2 = nn.Conv1d(channels, channels, 5, padding=2, padding_mode="reflect")
        self.pool = nn.MaxPool1d(2)
        self.c3 = nn.Conv1d(channels, channels, 5, padding="same")
        self.up = nn.Upsample(scale_factor=2, mode="linear", align_corners=False)
        self.c4 = nn.Conv1d(channels, 1, 5, padding=2)

    def forward(self, x):
        h = F.leaky_relu(self.c1(x), 0.2)
        h = self.pool(F.softplus(self.c2(h)))
        h = torch.tanh(self.c3(h))
        return self.c4(F.relu(self.up(h)))


def conv1d_nonneg_layers():
    # c2 reads leaky_relu (signed), c3 max-pooled softplus, c4 relu of the upsampled tanh
    return {"c3", "c4"}


def make(name):
    """(model in eval mode, input, names of the layers with a provably non-negative input)."""
    generator = torch.Generator().manual_seed(1)
    if name == "unet_nearest":
        model, shape, nonneg = UNet(up="nearest"), (2, 1, 16, 16), unet_nonneg_layers("nearest")
    elif name == "unet_transpose":
        model, shape = UNet(up="transpose", residual=True), (2, 1, 16, 16)
        nonneg = unet_nonneg_layers("transpose")
    elif name == "dncnn":
        model, shape, nonneg = randomise_batchnorm(DnCNN(), generator), (2, 1, 8, 8), \
            dncnn_nonneg_layers()
    elif name == "resnet":
        model, shape, nonneg = randomise_batchnorm(ResNet(), generator), (2, 1, 8, 8), \
            resnet_nonneg_layers()
    elif name == "mlp":
        model, shape, nonneg = MLP(), (5, 6), mlp_nonneg_layers()
    elif name == "conv1d":
        model, shape, nonneg = Conv1dNet(), (2, 1, 32), conv1d_nonneg_layers()
    else:
        raise KeyError(name)
    return model.eval(), torch.randn(shape, generator=generator), nonneg


MODELS = ["unet_nearest", "unet_transpose", "dncnn", "resnet", "mlp", "conv1d"]


# ------------------------------------------------------------ widening and sampling networks

def randomise_offsets(interval_model, scale=0.05, seed=0):
    """Offsets uniform in [0, scale * mean |W|] per layer (W: its main weight)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in inn.interval_layers(interval_model):
            size = float(layer.get_parameter(layer.widened[0]).abs().mean())
            for offset in layer.offsets():
                offset.copy_(torch.rand(offset.shape, generator=generator, dtype=torch.float64)
                             * scale * size)
    return interval_model


def sampled_network(model, interval_model, generator, vertex=False):
    """A copy of the point model whose interval layers' widened parameters (weights and biases,
    a MultiheadAttention's projections) are drawn inside their intervals: uniformly with a
    quarter of the entries at an endpoint, or with ``vertex`` every entry at a random endpoint
    (a vertex of the weight box)."""
    sampled = copy.deepcopy(model)
    with torch.no_grad():
        for name, layer in inn.named_interval_layers(interval_model):
            target = sampled.get_submodule(name)
            for parameter, (lo, hi) in layer.named_bounds():
                if vertex:
                    pick = torch.rand(lo.shape, generator=generator, dtype=lo.dtype) < 0.5
                    value = torch.where(pick, lo, hi)
                else:
                    value = sample_inside(lo, hi, generator)
                target.get_parameter(parameter).copy_(value)
    return sampled


def assert_contains(out, y, what):
    tol = 1e-9 * (1 + float(torch.maximum(out.lo.abs(), out.hi.abs()).max()))
    inside = out.contains(y, tol)
    assert bool(inside.all()), (f"{what}: {int((~inside).sum())} of {inside.numel()} outputs "
                                f"outside; worst excess "
                                f"{float(torch.maximum(out.lo - y, y - out.hi).max())}")
