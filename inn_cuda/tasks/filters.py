"""Gaussian smoothing in PyTorch (any device, differentiable), with scikit-image's conventions:
kernel truncated at 4 sigma, borders extended by the nearest value."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype=torch.float32, device=None):
    """Normalised 1D Gaussian of standard deviation ``sigma`` (samples), radius
    ``ceil(truncate * sigma)``."""
    if sigma <= 0:
        raise ValueError(f"sigma: expected > 0, got {sigma}")
    radius = max(1, math.ceil(truncate * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def gaussian_blur1d(signal: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur the last dimension of ``signal`` (any leading shape)."""
    kernel = gaussian_kernel1d(sigma, dtype=signal.dtype, device=signal.device)
    radius = kernel.numel() // 2
    flat = signal.reshape(-1, 1, signal.shape[-1])
    flat = F.pad(flat, (radius, radius), mode="replicate")
    return F.conv1d(flat, kernel.view(1, 1, -1)).reshape(signal.shape)


def gaussian_blur2d(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur the last two dimensions of ``images`` (any leading shape), separably."""
    kernel = gaussian_kernel1d(sigma, dtype=images.dtype, device=images.device)
    radius = kernel.numel() // 2
    h, w = images.shape[-2:]
    flat = images.reshape(-1, 1, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(images.shape)
