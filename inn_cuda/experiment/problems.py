"""The two reconstruction problems of the study, behind one interface: seeded data splits, the
point network, and the task's version of each failure mode (measurement noise, the adversarial
target, the atypical artifact).

* :class:`CTProblem`: limited-angle CT on phantoms (``inn_cuda.tasks``), a residual U-Net; the
  failure modes of docs/method.md section 5.2 (sinogram noise, a dark square erased from the
  reconstruction by a bounded perturbation of the sinogram, a bright, metal-like or textured
  insert pasted into the ground truth).
* :class:`Deconv1DProblem`: 1D deconvolution of piecewise-constant signals, the paper's 10-layer
  Conv1d network; the same failure modes carried over to 1D (input noise, a plateau pushed into
  the reconstruction by a bounded perturbation of the measurement, a feature the
  piecewise-constant training signals never contain: a narrow spike or a ramp).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
import torch
from torch import nn

from .. import failure
from ..failure import AdversarialTarget, ArtifactCase
from ..tasks import ConvNet1d, CTPhantomDataset, Deconvolution1D, LimitedAngleCT, UNet
from ..tasks.ct import body_support
from ..tasks.deconv1d import piecewise_constant, signal_support
from ..tasks.filters import gaussian_blur1d
from .presets import Settings


@dataclass
class Split:
    """Network inputs and targets of one split, ``(n, 1, *spatial)`` float32 on the CPU;
    ``truth`` is what the targets are simulated from (CT: the phantoms = the targets; 1D: the
    noiseless signals)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    truth: torch.Tensor

    def __len__(self):
        return self.inputs.shape[0]


class NonNegativeOutput(nn.Module):
    """``net`` whose reconstructions are clamped at 0 in eval mode, for images that cannot be
    negative (attenuation): the network then reconstructs empty background as exactly 0 rather
    than small values of either sign. Training (train mode) sees the raw output, so no gradient
    dies at the clamp. Keeps the protocol of :mod:`inn_cuda.tasks.models` (``forward_features``,
    ``head``, ``forward_head``) that the probabilistic-output baseline builds on; a conversion
    with :func:`inn_cuda.to_interval` (of the model in eval mode) includes the clamp."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.clamp = nn.ReLU()

    @property
    def head(self) -> nn.Module:
        return self.net.head

    def forward_features(self, x):
        return self.net.forward_features(x)

    def forward_head(self, features, x):
        out = self.net.forward_head(features, x)
        return out if self.training else self.clamp(out)

    def forward(self, x):
        return self.forward_head(self.forward_features(x), x)


def _seed(settings: Settings, stream: int) -> int:
    """Independent seeds per data stream (splits, noise, cases) from the study's seed."""
    return 1000 * settings.seed + stream


class Problem:
    """What the study needs from a task."""

    name = ""
    spatial_dims = 0
    noise_label = ""

    def __init__(self, settings: Settings):
        self.settings = settings

    def splits(self) -> tuple[Split, Split, Split]:
        """(train, val, test)."""
        raise NotImplementedError

    def network(self) -> nn.Module:
        raise NotImplementedError

    def support(self, targets: torch.Tensor) -> torch.Tensor:
        """The object support of a batch of targets (bool, shaped like them): where the study
        evaluates its pixel-level metrics."""
        raise NotImplementedError

    def clamped(self, rec: torch.Tensor) -> torch.Tensor:
        """Where a reconstruction sits at the network's output clamp (its side of the target is
        then known without any uncertainty). None: the network has no clamp."""
        return None

    def noisy_inputs(self, test: Split, level: float, seed: int) -> torch.Tensor:
        """The test set's network inputs when the measurement carries noise of ``level``."""
        raise NotImplementedError

    def adversarial_target(self, rec: torch.Tensor, seed: int) -> AdversarialTarget:
        raise NotImplementedError

    def artifact_case(self, test: Split, seed: int) -> ArtifactCase:
        raise NotImplementedError

    def measurement(self, truth: torch.Tensor, inputs: torch.Tensor, seed: int) -> torch.Tensor:
        """The measurement behind the network ``inputs`` of ground truths ``truth``: the inputs
        themselves where the network reads the measurement, else re-simulated as the data were
        (train noise seeded by ``seed``)."""
        raise NotImplementedError

    def from_measurement(self, measurement: torch.Tensor) -> torch.Tensor:
        """The network input computed from a measurement (differentiable)."""
        raise NotImplementedError

    def noise_std(self, measurement: torch.Tensor, level: float) -> torch.Tensor:
        """Per image, the absolute noise std that noise ``level`` means for this measurement."""
        raise NotImplementedError

    def noisy_splits(self, level: float, counts, seed: int) -> tuple:
        """Splits of ``counts`` items simulated with noise ``level`` (the noise protocol)."""
        raise NotImplementedError

    def adversarial_noise(self) -> float:
        """The noise level the data-consistent attack's bound refers to."""
        s = self.settings
        if s.adv_noise is not None:
            return s.adv_noise
        return s.train_noise if s.train_noise > 0 else min(s.noise_levels)


class CTProblem(Problem):
    name = "ct"
    spatial_dims = 2
    noise_label = "sinogram noise (std / peak)"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.ct = self._operator(settings.train_noise)

    def _operator(self, noise: float) -> LimitedAngleCT:
        return LimitedAngleCT(self.settings.size, missing_wedge=self.settings.missing_wedge,
                              noise=noise)

    def splits(self):
        s = self.settings
        out = []
        for stream, count in enumerate((s.n_train, s.n_val, s.n_test)):
            data = CTPhantomDataset(count, self.ct, kind=s.phantom, seed=_seed(s, stream))
            inputs, targets = data.tensors()
            out.append(Split(inputs, targets, targets))
        return tuple(out)

    def network(self):
        s = self.settings
        net = UNet(width=s.width, depth=s.depth, dropout=s.dropout, residual=s.residual,
                   batchnorm=s.batchnorm, upsampling=s.upsampling)
        return NonNegativeOutput(net) if s.nonneg_output else net

    def support(self, targets):
        return body_support(targets)

    def clamped(self, rec):
        return rec <= 0 if self.settings.nonneg_output else None

    def noisy_inputs(self, test, level, seed):
        with torch.no_grad():
            return self._operator(level).simulate(test.truth, torch.Generator().manual_seed(seed))

    def adversarial_target(self, rec, seed):
        return failure.adversarial_target(rec, shape=self.settings.adv_shape, seed=seed)

    def artifact_case(self, test, seed):
        noise = torch.Generator().manual_seed(seed + 1)
        return failure.insert_artifact(test.truth, lambda gt: self.ct.simulate(gt, noise),
                                       scale=self.settings.artifact_scale, seed=seed,
                                       kind=self.settings.artifact_kind)

    def measurement(self, truth, inputs, seed):
        with torch.no_grad():
            return self.ct.add_noise(self.ct.radon(truth), torch.Generator().manual_seed(seed))

    def from_measurement(self, measurement):
        return self.ct.fbp(measurement)

    def noise_std(self, measurement, level):
        # the sinogram noise is relative to each sinogram's peak (LimitedAngleCT.add_noise)
        return level * measurement.detach().flatten(1).abs().amax(1).double().cpu()

    def noisy_splits(self, level, counts, seed):
        ct = self._operator(level)
        out = []
        for stream, count in enumerate(counts):
            inputs, targets = CTPhantomDataset(count, ct, kind=self.settings.phantom,
                                               seed=seed + stream).tensors()
            out.append(Split(inputs, targets, targets))
        return tuple(out)


class Deconv1DProblem(Problem):
    name = "deconv1d"
    spatial_dims = 1
    noise_label = "input noise std"

    # the adversarial plateau, relative to the signal range [-1, 1]
    PLATEAU_HEIGHT = 0.5

    def __init__(self, settings: Settings):
        super().__init__(settings)
        max_jumps = max(1, min(30, round(30 * settings.size / 512)))
        self.task = Deconvolution1D(length=settings.size, blur_sigma=settings.blur_sigma,
                                    noise_sigma=settings.train_noise, max_jumps=max_jumps)

    def _split(self, count: int, seed: int) -> Split:
        gen = torch.Generator().manual_seed(seed)
        signals = piecewise_constant(count, self.task.length, max_jumps=self.task.max_jumps,
                                     min_distance=self.task.min_distance, generator=gen)
        inputs, targets = self.task.simulate(signals, generator=gen)
        return Split(inputs[:, None], targets[:, None], signals[:, None])

    def splits(self):
        s = self.settings
        return tuple(self._split(count, _seed(s, stream))
                     for stream, count in enumerate((s.n_train, s.n_val, s.n_test)))

    def support(self, targets):
        return signal_support(targets)

    def network(self):
        return ConvNet1d(width=self.settings.width, dropout_scale=self.settings.dropout,
                         residual=self.settings.residual)

    def noisy_inputs(self, test, level, seed):
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(test.truth.shape, generator=gen, dtype=test.truth.dtype)
        return self.task.blur(test.truth) + level * noise

    def _window(self, gen, half: int):
        length = self.task.length
        return int(torch.randint(half, length - half, (1,), generator=gen))

    def adversarial_target(self, rec, seed):
        """``rec`` minus a smooth plateau (the 1D analogue of the paper's dark square: a box of
        the square's width ``50 L / 512``, blurred with sigma ``2 L / 512``)."""
        gen = torch.Generator().manual_seed(seed)
        length = self.task.length
        half = max(2, round(25 * length / 512))
        sigma = max(0.5, 2.0 * length / 512)
        positions = torch.arange(length)
        targets, masks, centers = [], [], []
        for image in rec.detach():
            center = self._window(gen, half + math.ceil(3 * sigma))
            box = ((positions - center).abs() < half).to(image.dtype).to(image.device)
            plateau = gaussian_blur1d(box * self.PLATEAU_HEIGHT, sigma)
            target = image - plateau
            targets.append(target)
            masks.append((plateau > 0.01 * self.PLATEAU_HEIGHT)[None].expand(1, length))
            centers.append(center)
        return AdversarialTarget(torch.stack(targets), torch.stack(masks), centers)

    def artifact_case(self, test, seed):
        """A feature outside the piecewise-constant family (``artifact_kind``: a narrow spike, a
        ramp over ``artifact_scale / 4`` of the signal, or the former period-8 oscillation),
        then blurred and noised like the data (:func:`inn_cuda.failure.insert_artifact1d`)."""
        gen = torch.Generator().manual_seed(seed)
        length = max(2, round(self.settings.artifact_scale * self.task.length / 4))
        return failure.insert_artifact1d(
            test.truth, lambda truth: self.task.simulate(truth, generator=gen), self.task.blur,
            kind=self.settings.artifact_kind, length=length, seed=gen)

    def measurement(self, truth, inputs, seed):
        return inputs  # the blurred, noisy signal the network reads

    def from_measurement(self, measurement):
        return measurement  # the network reads the blurred signal itself

    def noise_std(self, measurement, level):
        return torch.full((measurement.shape[0],), float(level), dtype=torch.float64)

    def noisy_splits(self, level, counts, seed):
        task = dataclasses.replace(self.task, noise_sigma=level)
        out = []
        for stream, count in enumerate(counts):
            gen = torch.Generator().manual_seed(seed + stream)
            signals = piecewise_constant(count, task.length, max_jumps=task.max_jumps,
                                         min_distance=task.min_distance, generator=gen)
            inputs, targets = task.simulate(signals, generator=gen)
            out.append(Split(inputs[:, None], targets[:, None], signals[:, None]))
        return tuple(out)


def make_problem(settings: Settings) -> Problem:
    return {"ct": CTProblem, "deconv1d": Deconv1DProblem}[settings.task](settings)
