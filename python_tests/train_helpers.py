"""Shared pieces of the training tests: small synthetic regression and denoising tasks and the
point networks that learn them."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


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


def denoising_data(n, *, seed, size=12, sigma=0.1):
    """Smooth random images (bilinear upsampling of 4x4 noise) and their noisy versions:
    (noisy input, clean target) pairs of shape (1, size, size)."""
    g = torch.Generator().manual_seed(seed)
    clean = F.interpolate(torch.rand(n, 1, 4, 4, generator=g), size=(size, size),
                          mode="bilinear", align_corners=False)
    return TensorDataset(clean + sigma * torch.randn(clean.shape, generator=g), clean)


def point_denoiser(channels=8, *, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, 1, 3, padding=1))
