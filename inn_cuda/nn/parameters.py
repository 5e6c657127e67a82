"""Module-wide access to the two kinds of parameters of an interval model: the trainable
non-negative offsets and the frozen point weights they widen."""

from __future__ import annotations

from typing import Iterator, Tuple

import torch
import torch.nn as nn

from .offsets import _IntervalWeights


def named_interval_layers(module: nn.Module) -> Iterator[Tuple[str, _IntervalWeights]]:
    """``(qualified name, layer)`` for every interval layer with interval weights (those built
    with ``offsets=True``: the Linear/Conv layers and IntervalMultiheadAttention, which holds the
    offsets of all its projections), in registration order."""
    for name, child in module.named_modules():
        if isinstance(child, _IntervalWeights) and child.has_offsets:
            yield name, child


def interval_layers(module: nn.Module) -> Iterator[_IntervalWeights]:
    """Every parametrised interval layer with interval weights, in registration order."""
    for _, layer in named_interval_layers(module):
        yield layer


def offset_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """All offset Parameters (the only trainable part of an INN): pass them to the optimiser."""
    for layer in interval_layers(module):
        yield from layer.offsets()


def point_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """Every Parameter that is not an offset: the frozen weights and biases of the interval
    layers and the parameters of every other module (BatchNorm, the point-mode prefix)."""
    offsets = {id(p) for p in offset_parameters(module)}
    for parameter in module.parameters():
        if id(parameter) not in offsets:
            yield parameter


@torch.no_grad()
def project_(module: nn.Module) -> nn.Module:
    """Clamp every offset of every interval layer back to >= 0 (after each optimiser step)."""
    for layer in interval_layers(module):
        layer.project_()
    return module
