"""Limited-angle parallel-beam CT: Radon transform, ramp-filtered back-projection (FBP) and the
missing-wedge measurement, in PyTorch (batched, differentiable, any device).

Geometry and discretisation follow scikit-image's ``radon``/``iradon`` (the tests compare against
them), so results carry over to code written against scikit-image:

* the rotation centre is pixel ``(N // 2, N // 2)``; the detector centre is index ``D // 2``;
* a projection at angle ``theta`` sums the bilinearly interpolated image along the ray at unit
  steps: ``p(u) = sum_v img(x = c + u cos + v sin, y = c - u sin + v cos)`` (x = column, y = row);
* ``circle=True`` assumes the image is zero outside the inscribed disc (``D = N`` detectors, FBP
  zeroes the outside); ``circle=False`` projects the whole square (``D = ceil(sqrt(2) N)``);
* FBP filters each projection with the ramp filter of Kak & Slaney eq. 61 (zero-padded FFT), back-
  projects with linear interpolation and scales by ``pi / (2 * n_angles)``.

Sinograms are laid out ``(..., n_angles, n_detectors)`` (scikit-image's transposed).
"""

from __future__ import annotations

import math

import torch

# Elements (angles x detectors x samples x batch) handled at once; bounds the temporary memory
# of a Radon transform or back-projection to a few hundred MiB at 512 x 512.
_CHUNK_ELEMENTS = 1 << 24


def wedge_angles(n_angles: int, missing_wedge: float = 30.0,
                 wedge_center: float = 0.0) -> torch.Tensor:
    """Angles in degrees: ``n_angles`` equispaced in [0, 180), minus those strictly within
    ``missing_wedge / 2`` of ``wedge_center`` (modulo 180), so the measured angles leave an
    unmeasured gap of ``missing_wedge`` degrees. The default removes (-15, 15) degrees around 0,
    as the paper's code did (it zeroed the first and last 15 degrees of 180)."""
    if n_angles < 1:
        raise ValueError(f"n_angles: expected >= 1, got {n_angles}")
    if not 0.0 <= missing_wedge < 180.0:
        raise ValueError(f"missing_wedge: expected degrees in [0, 180), got {missing_wedge}")
    theta = torch.arange(n_angles, dtype=torch.float64) * (180.0 / n_angles)
    distance = torch.remainder(theta - wedge_center + 90.0, 180.0) - 90.0
    kept = theta[distance.abs() >= missing_wedge / 2.0] if missing_wedge > 0 else theta
    if kept.numel() == 0:
        raise ValueError(f"missing_wedge={missing_wedge} leaves no angle of {n_angles}")
    return kept


def ramp_filter(n_padded: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """The ramp filter's frequency response for rfft of length ``n_padded`` (even), computed as the
    FFT of its band-limited spatial kernel (Kak & Slaney eq. 61; no DC bias)."""
    n = torch.arange(n_padded, dtype=torch.float64)
    lag = torch.minimum(n, n_padded - n)
    kernel = torch.where(lag % 2 == 1, -1.0 / (math.pi * lag.clamp(min=1)) ** 2, torch.zeros(()))
    kernel[0] = 0.25
    response = 2.0 * torch.fft.rfft(kernel).real
    return response.to(dtype=dtype, device=device)


def disc_mask(size: int, device=None) -> torch.Tensor:
    """Boolean ``(size, size)`` mask of the reconstruction disc (radius ``size // 2`` about pixel
    ``size // 2``), as scikit-image's iradon defines it."""
    idx = torch.arange(size, device=device) - size // 2
    return idx[:, None] ** 2 + idx[None, :] ** 2 <= (size // 2) ** 2


# The object support: attenuation above 1 % of the phantoms' unit scale, grown by a few pixels so
# the body's rim (where the reconstruction's error lives) belongs to it.
BODY_THRESHOLD = 0.01
BODY_DILATION = 3


def body_support(images: torch.Tensor, threshold: float = BODY_THRESHOLD,
                 dilation: int = BODY_DILATION) -> torch.Tensor:
    """Boolean mask of the object in ``(..., H, W)`` ground-truth images: pixels above
    ``threshold``, dilated by ``dilation`` pixels (a square neighbourhood). The study evaluates
    every pixel-level metric on it, so the air around the body, where a clamped reconstruction
    equals the target, does not count as trivially well explained."""
    if images.ndim < 2:
        raise ValueError(f"images: expected (..., H, W), got {tuple(images.shape)}")
    if dilation < 0:
        raise ValueError(f"dilation: expected >= 0, got {dilation}")
    inside = (images > threshold).reshape(-1, 1, *images.shape[-2:]).to(torch.float32)
    if dilation:
        inside = torch.nn.functional.max_pool2d(inside, 2 * dilation + 1, stride=1,
                                                padding=dilation)
    return inside.reshape(images.shape) > 0


class LimitedAngleCT:
    """Parallel-beam CT operator for ``size x size`` images at the given angles.

    ``angles`` (degrees) overrides ``n_angles``/``missing_wedge``/``wedge_center``; by default
    ``n_angles = size`` equispaced angles minus a 30 degree wedge. ``noise`` is the standard
    deviation of Gaussian noise added to the sinogram in :meth:`simulate`, relative to the largest
    sinogram value of each image (0 = the paper's noiseless setting).
    """

    def __init__(self, size: int = 64, *, n_angles: int | None = None, missing_wedge: float = 30.0,
                 wedge_center: float = 0.0, angles=None, circle: bool = True, noise: float = 0.0):
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size: expected an int >= 8, got {size!r}")
        if noise < 0:
            raise ValueError(f"noise: expected >= 0, got {noise}")
        self.size = size
        self.circle = circle
        self.noise = float(noise)
        if angles is None:
            angles = wedge_angles(n_angles or size, missing_wedge, wedge_center)
        self.angles = torch.as_tensor(angles, dtype=torch.float64).flatten()
        if self.angles.numel() == 0:
            raise ValueError("angles: expected at least one angle, got none")
        self.n_detectors = size if circle else math.ceil(math.sqrt(2) * size)

    @property
    def n_angles(self) -> int:
        return self.angles.numel()

    def __repr__(self):
        return (f"LimitedAngleCT(size={self.size}, n_angles={self.n_angles}, "
                f"angles=[{float(self.angles.min()):.1f}, {float(self.angles.max()):.1f}] deg, "
                f"circle={self.circle}, noise={self.noise})")

    def _trig(self, angles, like):
        rad = torch.deg2rad(angles).to(device=like.device, dtype=like.dtype)
        return torch.cos(rad), torch.sin(rad)

    def _check_images(self, images):
        if images.ndim < 2 or images.shape[-2:] != (self.size, self.size):
            raise ValueError(f"images: expected shape (..., {self.size}, {self.size}), "
                             f"got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images: expected a floating-point tensor, got {images.dtype}")

    def radon(self, images: torch.Tensor) -> torch.Tensor:
        """Sinograms ``(..., n_angles, n_detectors)`` of images ``(..., size, size)``."""
        self._check_images(images)
        lead = images.shape[:-2]
        n, d = self.size, self.n_detectors
        flat = images.reshape(1, -1, n, n)  # the batch rides in the channel dim: one shared grid
        batch = flat.shape[1]
        offsets = torch.arange(d, device=images.device, dtype=images.dtype) - d // 2
        u, v = offsets[:, None], offsets[None, :]  # detector, position along the ray
        scale = 2.0 / (n - 1)  # pixel index -> grid_sample's [-1, 1] (align_corners=True)
        chunk = max(1, _CHUNK_ELEMENTS // (d * d * max(batch, 1)))
        out = []
        for start in range(0, self.n_angles, chunk):
            cos, sin = self._trig(self.angles[start:start + chunk], images)
            cos, sin = cos[:, None, None], sin[:, None, None]
            col = n // 2 + u * cos + v * sin
            row = n // 2 - u * sin + v * cos
            grid = torch.stack([col * scale - 1.0, row * scale - 1.0], dim=-1)
            grid = grid.reshape(1, -1, d, 2)
            samples = torch.nn.functional.grid_sample(flat, grid, mode="bilinear",
                                                      padding_mode="zeros", align_corners=True)
            out.append(samples.sum(-1).reshape(batch, -1, d))
        return torch.cat(out, dim=1).reshape(*lead, self.n_angles, d)

    def _filter_padded(self, sinogram):
        d = self.n_detectors
        padded = max(64, 1 << math.ceil(math.log2(2 * d)))
        response = ramp_filter(padded, dtype=sinogram.dtype, device=sinogram.device)
        spectrum = torch.fft.rfft(sinogram, n=padded, dim=-1) * response
        return torch.fft.irfft(spectrum, n=padded, dim=-1)

    def filter_sinogram(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Ramp-filter each projection (zero-padded to a power of two >= 2 * detectors, so the
        circular convolution equals the linear one on the detector range)."""
        self._check_sinogram(sinogram)
        return self._filter_padded(sinogram)[..., :self.n_detectors]

    def backproject(self, filtered: torch.Tensor) -> torch.Tensor:
        """Back-projection with linear interpolation on the detector (zero outside it), scaled by
        ``pi / (2 * n_angles)``; ``(..., n_angles, n_detectors)`` -> ``(..., size, size)``."""
        self._check_sinogram(filtered)
        return self._backproject(torch.nn.functional.pad(filtered, (1, 1)), 0, self.n_detectors - 1)

    def _backproject(self, extended, first, last):
        """Back-project ``extended`` = filtered projections at detector indices -1 .. d; taps at
        positions outside [first, last] read 0. Linear interpolation on the detector is a
        ``grid_sample`` on the (angle, detector) plane at exact angle rows."""
        lead = extended.shape[:-2]
        n, d = self.size, self.n_detectors
        flat = extended.reshape(1, -1, self.n_angles, d + 2)  # batch in the channel dim
        batch = flat.shape[1]
        idx = torch.arange(n, device=flat.device, dtype=flat.dtype) - n // 2
        rows = idx[:, None].expand(n, n).reshape(1, -1)
        cols = idx[None, :].expand(n, n).reshape(1, -1)
        chunk = max(1, _CHUNK_ELEMENTS // (n * n * max(batch, 1)))
        image = flat.new_zeros(batch, n * n)
        for start in range(0, self.n_angles, chunk):
            cos, sin = self._trig(self.angles[start:start + chunk], flat)
            pos = cols * cos[:, None] - rows * sin[:, None] + d // 2  # detector index, (c, n*n)
            inside = ((pos >= first) & (pos <= last)).to(flat.dtype)
            part = flat[:, :, start:start + chunk]
            rows_here = part.shape[2]
            grid_x = (pos + 1.0) * (2.0 / (d + 1)) - 1.0  # +1: index -1 is column 0
            grid_y = torch.arange(rows_here, device=flat.device, dtype=flat.dtype)
            grid_y = (grid_y * (2.0 / max(rows_here - 1, 1)) - 1.0)[:, None].expand_as(grid_x)
            grid = torch.stack([grid_x, grid_y], dim=-1)[None]
            taps = torch.nn.functional.grid_sample(part, grid, mode="bilinear",
                                                   padding_mode="zeros", align_corners=True)
            image = image + (taps[0] * inside).sum(1)
        image = image.reshape(*lead, n, n) * (math.pi / (2 * self.n_angles))
        if self.circle:
            image = image * disc_mask(n, device=image.device)
        return image

    def _check_sinogram(self, sinogram):
        expected = (self.n_angles, self.n_detectors)
        if sinogram.ndim < 2 or tuple(sinogram.shape[-2:]) != expected:
            raise ValueError(f"sinogram: expected shape (..., {expected[0]}, {expected[1]}), "
                             f"got {tuple(sinogram.shape)}")

    def fbp(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Filtered back-projection ``(..., n_angles, n_detectors)`` -> ``(..., size, size)``."""
        self._check_sinogram(sinogram)
        full = self._filter_padded(sinogram)
        d = self.n_detectors
        extended = torch.cat([full[..., -1:], full[..., :d + 1]], dim=-1)
        # circle=True mirrors scikit-image, which filters a sinogram padded to the diagonal and so
        # reads real filtered values one detector past each end (pixels on the disc's rim)
        first, last = (-1, d) if self.circle else (0, d - 1)
        return self._backproject(extended, first, last)

    def add_noise(self, sinogram: torch.Tensor, generator: torch.Generator | None = None):
        """``sinogram`` plus Gaussian noise of std ``noise`` x (largest |value| of each sinogram);
        the noise is drawn on ``generator``'s device (CPU when None) for reproducibility."""
        if self.noise == 0:
            return sinogram
        peak = sinogram.detach().flatten(-2).abs().amax(-1)[..., None, None]
        noise = torch.randn(sinogram.shape, generator=generator, dtype=sinogram.dtype,
                            device=generator.device if generator is not None else "cpu")
        return sinogram + self.noise * peak * noise.to(sinogram.device)

    def simulate(self, images: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The network input for ground-truth images: FBP of the (optionally noisy) limited-angle
        sinogram. ``generator`` seeds the noise (unused when ``noise == 0``)."""
        return self.fbp(self.add_noise(self.radon(images), generator))
