"""1D deconvolution (docs/method.md section 5.1): piecewise-constant signals of length 512 with
random jumps, observed through a Gaussian blur, with Gaussian noise of standard deviation ``sigma``
added to both the network input (the blurred signal) and the target (the signal), as in the paper's
synthetic study (sigma in {0.02, 0.05, 0.08, 0.11, 0.14}; 1600 train / 200 test).

Signal model (ours; the paper's generator is not published): ``n_jumps`` uniform in
``[1, max_jumps]`` jump positions, at least ``min_distance`` samples apart and from the ends; the
level of each piece uniform in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from .filters import gaussian_blur1d

NOISE_LEVELS = (0.02, 0.05, 0.08, 0.11, 0.14)


def piecewise_constant(count: int, length: int = 512, *, max_jumps: int = 30, min_distance: int = 5,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``(count, length)`` float32 piecewise-constant signals (see the module docstring)."""
    if min_distance < 1:
        raise ValueError(f"min_distance: expected >= 1, got {min_distance}")
    most = length // min_distance - 1  # pieces of at least min_distance samples each
    if not 1 <= max_jumps <= most:
        raise ValueError(f"max_jumps: expected 1 .. {most} for length={length}, "
                         f"min_distance={min_distance}; got {max_jumps}")
    signals = torch.empty(count, length, dtype=torch.float64)
    for i in range(count):
        n_jumps = int(torch.randint(1, max_jumps + 1, (1,), generator=generator))
        # choosing n_jumps gaps >= min_distance: sort uniform draws of the remaining slack
        slack = length - min_distance * (n_jumps + 1)
        cuts = torch.sort(torch.randint(0, slack + 1, (n_jumps,), generator=generator)).values
        positions = cuts + min_distance * torch.arange(1, n_jumps + 1)
        levels = 2.0 * torch.rand(n_jumps + 1, generator=generator, dtype=torch.float64) - 1.0
        piece = torch.zeros(length, dtype=torch.long)
        piece[positions] = 1
        signals[i] = levels[torch.cumsum(piece, 0)]
    return signals.to(torch.float32)


def count_jumps(signals: torch.Tensor) -> torch.Tensor:
    """Number of positions where consecutive samples differ, per signal."""
    return (signals[..., 1:] != signals[..., :-1]).sum(-1)


def signal_support(signals: torch.Tensor) -> torch.Tensor:
    """The object support of 1D signals: every sample (the signals fill their whole length; there
    is no background to leave out)."""
    return torch.ones_like(signals, dtype=torch.bool)


@dataclass(frozen=True)
class Deconvolution1D:
    """The forward model: Gaussian blur of std ``blur_sigma`` samples (borders extended by the
    nearest value), then noise of std ``noise_sigma`` on input and target."""

    length: int = 512
    blur_sigma: float = 4.0
    noise_sigma: float = 0.05
    max_jumps: int = 30
    min_distance: int = 5

    def blur(self, signals: torch.Tensor) -> torch.Tensor:
        return gaussian_blur1d(signals, self.blur_sigma)

    def simulate(self, signals: torch.Tensor, generator: torch.Generator | None = None):
        """``(input, target)`` = (blurred + noise, signal + noise), each shaped like ``signals``."""
        blurred = self.blur(signals)
        noise = torch.randn((2,) + tuple(signals.shape), generator=generator, dtype=signals.dtype)
        noise = self.noise_sigma * noise.to(signals.device)
        return blurred + noise[0], signals + noise[1]

    def dataset(self, count: int, seed: int) -> TensorDataset:
        """``count`` seeded pairs ``(input, target)``, each ``(1, length)`` float32."""
        gen = torch.Generator().manual_seed(seed)
        signals = piecewise_constant(count, self.length, max_jumps=self.max_jumps,
                                     min_distance=self.min_distance, generator=gen)
        inputs, targets = self.simulate(signals, generator=gen)
        return TensorDataset(inputs[:, None], targets[:, None])


def deconv1d_datasets(noise_sigma: float = 0.05, *, n_train: int = 1600, n_test: int = 200,
                      seed: int = 0, **task_kwargs):
    """The paper's split: ``(train, test)`` TensorDatasets from independent seeds."""
    task = Deconvolution1D(noise_sigma=noise_sigma, **task_kwargs)
    return task.dataset(n_train, seed=2 * seed), task.dataset(n_test, seed=2 * seed + 1)
