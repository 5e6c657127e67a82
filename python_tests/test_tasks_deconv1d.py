"""1D deconvolution data: jump structure, blur, noise statistics and seeding."""

import pytest
import torch

from inn_cuda.tasks.deconv1d import (NOISE_LEVELS, Deconvolution1D, count_jumps, deconv1d_datasets,
                                     piecewise_constant)
from inn_cuda.tasks.filters import gaussian_kernel1d


def test_piecewise_constant_structure():
    signals = piecewise_constant(300, 512, max_jumps=30, min_distance=5,
                                 generator=torch.Generator().manual_seed(0))
    assert signals.shape == (300, 512) and signals.dtype == torch.float32
    jumps = count_jumps(signals)
    assert int(jumps.min()) >= 1 and int(jumps.max()) <= 30
    assert 12 < float(jumps.float().mean()) < 19  # uniform on 1..30: mean 15.5
    assert float(signals.abs().max()) <= 1.0
    for s in signals[:50]:
        where = torch.nonzero(s[1:] != s[:-1]).flatten() + 1  # first sample of each new piece
        edges = torch.cat([torch.tensor([0]), where, torch.tensor([512])])
        assert int(edges.diff().min()) >= 5


def test_piecewise_constant_rejects_impossible_settings():
    with pytest.raises(ValueError, match="max_jumps"):
        piecewise_constant(1, 50, max_jumps=10, min_distance=5)
    with pytest.raises(ValueError, match="min_distance"):
        piecewise_constant(1, 50, min_distance=0)


def test_simulation_noise_statistics_and_blur():
    task = Deconvolution1D(noise_sigma=0.08, blur_sigma=3.0)
    signals = piecewise_constant(400, generator=torch.Generator().manual_seed(1))
    inputs, targets = task.simulate(signals, generator=torch.Generator().manual_seed(2))
    in_noise, out_noise = inputs - task.blur(signals), targets - signals
    for noise in (in_noise, out_noise):
        assert abs(float(noise.std()) - 0.08) < 0.002
        assert abs(float(noise.mean())) < 0.002
    correlation = torch.corrcoef(torch.stack([in_noise.flatten(), out_noise.flatten()]))[0, 1]
    assert abs(float(correlation)) < 0.01
    # blur = convolution with the normalised Gaussian away from the borders
    kernel = gaussian_kernel1d(3.0, dtype=torch.float64)
    r = kernel.numel() // 2
    s = signals[0].double()
    manual = torch.stack([(s[i - r:i + r + 1] * kernel).sum() for i in range(100, 110)])
    torch.testing.assert_close(task.blur(signals[:1])[0, 100:110].double(), manual, rtol=0,
                               atol=1e-6)


def test_datasets_are_seeded_with_the_paper_split():
    train, test = deconv1d_datasets(noise_sigma=NOISE_LEVELS[1], seed=3)
    assert len(train) == 1600 and len(test) == 200
    x, y = train[0]
    assert x.shape == y.shape == (1, 512)
    again, _ = deconv1d_datasets(noise_sigma=NOISE_LEVELS[1], seed=3, n_test=0)
    assert torch.equal(again.tensors[0], train.tensors[0])
    other, _ = deconv1d_datasets(noise_sigma=NOISE_LEVELS[1], seed=4, n_train=10, n_test=0)
    assert not torch.equal(other.tensors[1], train.tensors[1][:10])
    assert not torch.equal(test.tensors[1][:10], train.tensors[1][:10])
    assert NOISE_LEVELS == (0.02, 0.05, 0.08, 0.11, 0.14)
