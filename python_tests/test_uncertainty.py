"""Uncertainty maps and per-image scores."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import inn_cuda
import inn_cuda.nn
from inn_cuda.nn import Interval
from inn_cuda.uncertainty import (UncertaintyMaps, image_scores, uncertainty_maps,
                                  uncertainty_over_loader)

from train_helpers import denoising_data, point_denoiser


def _random_interval(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    point = torch.randn(shape, generator=g)
    lo = point - torch.rand(shape, generator=g)
    hi = point + 2 * torch.rand(shape, generator=g)
    return Interval(lo, hi, point)


def test_maps_are_width_and_its_directional_parts():
    out = _random_interval((2, 1, 5, 6))
    maps = uncertainty_maps(out)
    assert isinstance(maps, UncertaintyMaps)
    assert torch.equal(maps.width, out.hi - out.lo)
    assert torch.equal(maps.below, out.point - out.lo)
    assert torch.equal(maps.above, out.hi - out.point)
    torch.testing.assert_close(maps.below + maps.above, maps.width)
    rec = out.lo + 0.25 * (out.hi - out.lo)
    other = uncertainty_maps(out.without_point(), rec)
    torch.testing.assert_close(other.below, 0.25 * other.width)


def test_maps_errors_are_clear():
    out = _random_interval((2, 3))
    with pytest.raises(ValueError, match="no point prediction"):
        uncertainty_maps(out.without_point())
    with pytest.raises(ValueError, match="rec has shape"):
        uncertainty_maps(out, torch.zeros(3))
    with pytest.raises(TypeError, match="Interval"):
        uncertainty_maps((out.lo, out.hi))


def test_image_scores_match_numpy():
    values = torch.rand(3, 2, 7, 5, generator=torch.Generator().manual_seed(1))
    scores = image_scores(values, quantiles=(0.0, 0.5, 0.9))
    flat = values.reshape(3, -1).numpy()
    np.testing.assert_allclose(scores["mean"].numpy(), flat.mean(1), rtol=1e-6)
    np.testing.assert_allclose(scores["max"].numpy(), flat.max(1))
    np.testing.assert_allclose(scores["q0"].numpy(), flat.min(1))
    for q in (0.5, 0.9):
        np.testing.assert_allclose(scores[f"q{q:g}"].numpy(), np.quantile(flat, q, axis=1),
                                   rtol=1e-6)
    assert set(image_scores(values, quantiles=()).keys()) == {"mean", "max"}
    with pytest.raises(ValueError, match="quantiles"):
        image_scores(values, quantiles=(1.5,))
    with pytest.raises(ValueError, match="batch dim"):
        image_scores(torch.zeros(0, 4))


def test_over_a_loader_equals_the_maps_of_the_whole_set():
    model = inn_cuda.to_interval(point_denoiser(channels=4), last=2)
    with torch.no_grad():
        for offset in inn_cuda.nn.offset_parameters(model):
            offset.uniform_(0, 0.05)
    model.train()
    x = denoising_data(10, seed=2, size=8).tensors[0]
    loader = DataLoader(TensorDataset(x, torch.zeros_like(x)), batch_size=4)
    result = uncertainty_over_loader(model, loader, quantiles=(0.5,), keep_maps=True,
                                     progress=False)
    assert model.training, "the model's mode was not restored"
    with torch.no_grad():
        model.eval()
        expected = uncertainty_maps(model(x))
    for name in ("width", "below", "above"):
        torch.testing.assert_close(getattr(result.maps, name), getattr(expected, name))
        for stat, score in image_scores(getattr(expected, name), (0.5,)).items():
            torch.testing.assert_close(result.scores[f"{name}_{stat}"], score)
    assert result.maps.width.shape == (10, 1, 8, 8)
    assert result.scores["width_mean"].shape == (10,)
    assert bool((result.scores["width_max"] > 0).all())
    bare = uncertainty_over_loader(model, DataLoader(x, batch_size=4), progress=False)
    assert bare.maps is None and bare.scores["width_mean"].shape == (10,)
