"""Seeded CT phantoms generated on the fly: the (modified) Shepp-Logan phantom, a random Shepp-Logan
family, and random textured ellipses. All live inside the reconstruction disc (zero outside), so
they suit the ``circle=True`` Radon transform; values are roughly in [0, 1].

Coordinates: x to the right, y up, both in [-1, 1] across the image (radius 1 = the inscribed
disc). Each phantom is anti-aliased by averaging ``supersample**2`` sub-pixel samples.
"""

from __future__ import annotations

import math

import torch

from .ct import disc_mask
from .filters import gaussian_blur2d

# Modified Shepp-Logan (Toft): intensity, semi-axis a (x), semi-axis b (y), x0, y0, angle (deg).
SHEPP_LOGAN = torch.tensor([
    [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0],
    [-0.2, 0.11, 0.31, 0.22, 0.0, -18.0],
    [-0.2, 0.16, 0.41, -0.22, 0.0, 18.0],
    [0.1, 0.21, 0.25, 0.0, 0.35, 0.0],
    [0.1, 0.046, 0.046, 0.0, 0.1, 0.0],
    [0.1, 0.046, 0.046, 0.0, -0.1, 0.0],
    [0.1, 0.046, 0.023, -0.08, -0.605, 0.0],
    [0.1, 0.023, 0.023, 0.0, -0.606, 0.0],
    [0.1, 0.023, 0.046, 0.06, -0.605, 0.0],
], dtype=torch.float64)

PHANTOM_KINDS = ("ellipses", "shepp_logan", "mixed")


def pixel_coordinates(size: int, supersample: int = 1):
    """(x, y) of sub-pixel centres, shape ``(size * s, size * s)`` each, in [-1, 1]."""
    fine = size * supersample
    centres = (torch.arange(fine, dtype=torch.float64) + 0.5) / fine * 2.0 - 1.0
    y, x = torch.meshgrid(-centres, centres, indexing="ij")
    return x, y


def _downsample(fine: torch.Tensor, supersample: int) -> torch.Tensor:
    if supersample == 1:
        return fine
    return torch.nn.functional.avg_pool2d(fine[None, None], supersample)[0, 0]


def render_ellipses(params: torch.Tensor, size: int, supersample: int = 2) -> torch.Tensor:
    """Sum of filled ellipses, ``params`` rows = (intensity, a, b, x0, y0, angle_deg)."""
    x, y = pixel_coordinates(size, supersample)
    image = torch.zeros_like(x)
    for value, a, b, x0, y0, angle in params.tolist():
        phi = math.radians(angle)
        dx, dy = x - x0, y - y0
        xr = dx * math.cos(phi) + dy * math.sin(phi)
        yr = -dx * math.sin(phi) + dy * math.cos(phi)
        image += value * ((xr / a) ** 2 + (yr / b) ** 2 <= 1.0)
    return _downsample(image, supersample)


def _finish(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(min=0.0) * disc_mask(image.shape[-1])).to(torch.float32)


def shepp_logan(size: int, supersample: int = 2) -> torch.Tensor:
    """The modified Shepp-Logan phantom, ``(size, size)`` float32."""
    return _finish(render_ellipses(SHEPP_LOGAN, size, supersample))


def random_shepp_logan(size: int, generator: torch.Generator, supersample: int = 2) -> torch.Tensor:
    """A member of the Shepp-Logan family: the table with jittered positions, axes, angles and
    inner intensities, then globally scaled and rotated."""
    p = SHEPP_LOGAN.clone()
    u = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    n = p.shape[0]
    p[2:, 0] *= 0.5 + u(n - 2)  # inner contrasts x [0.5, 1.5]
    p[:2, 1:3] *= 0.9 + 0.1 * u(1, 2)  # the skull: both shells alike, so it stays closed
    p[2:, 1:3] *= 0.85 + 0.3 * u(n - 2, 2)
    p[2:, 3:5] += 0.04 * (u(n - 2, 2) - 0.5)
    p[2:, 5] += 20.0 * (u(n - 2) - 0.5)
    scale = 0.8 + 0.2 * float(u(1))
    rotation = 360.0 * float(u(1))
    rot = math.radians(rotation)
    x0, y0 = p[:, 3].clone(), p[:, 4].clone()
    p[:, 3] = scale * (x0 * math.cos(rot) - y0 * math.sin(rot))
    p[:, 4] = scale * (x0 * math.sin(rot) + y0 * math.cos(rot))
    p[:, 1:3] *= scale
    p[:, 5] += rotation
    return _finish(render_ellipses(p, size, supersample))


def smooth_texture(size: int, generator: torch.Generator,
                   correlation: float = 0.04) -> torch.Tensor:
    """Zero-mean, unit-std Gaussian random field with correlation length ``correlation`` (fraction
    of the image width)."""
    noise = torch.randn(size, size, generator=generator, dtype=torch.float64)
    field = gaussian_blur2d(noise, max(0.5, correlation * size))
    return (field - field.mean()) / field.std().clamp(min=1e-12)


def random_ellipses(size: int, generator: torch.Generator, supersample: int = 2,
                    texture: float = 0.1) -> torch.Tensor:
    """A random 'body': a large ellipse of intensity ~0.5, 3..10 inner ellipses (organs, bones,
    cavities) with contrasts in [-0.3, 0.5], and a multiplicative smooth texture of relative
    amplitude ``texture``."""
    u = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    body_a, body_b = (0.55 + 0.3 * u(2)).tolist()
    body_angle = 180.0 * float(u(1))
    body_value = 0.4 + 0.2 * float(u(1))
    rows = [[body_value, body_a, body_b, 0.0, 0.0, body_angle]]
    n_inner = int(torch.randint(3, 11, (1,), generator=generator))
    phi = math.radians(body_angle)
    for _ in range(n_inner):
        # centre uniformly in the inner 70% of the body, in the body's own frame
        r, t = 0.7 * math.sqrt(float(u(1))), 2 * math.pi * float(u(1))
        bx, by = r * body_a * math.cos(t), r * body_b * math.sin(t)
        x0 = bx * math.cos(phi) - by * math.sin(phi)
        y0 = bx * math.sin(phi) + by * math.cos(phi)
        a, b = (0.03 + 0.2 * u(2)).tolist()
        value = -0.3 + 0.8 * float(u(1))
        rows.append([value, a, b, x0, y0, 180.0 * float(u(1))])
    params = torch.tensor(rows, dtype=torch.float64)
    image = render_ellipses(params, size, supersample)
    body = render_ellipses(torch.tensor([[1.0, body_a, body_b, 0.0, 0.0, body_angle]]),
                           size, supersample)
    image = image * (1.0 + texture * smooth_texture(size, generator) * body)
    return _finish(image)


def make_phantom(kind: str, size: int, generator: torch.Generator) -> torch.Tensor:
    """One phantom of ``kind`` ('ellipses', 'shepp_logan' = the random family, 'mixed' = either
    with probability 1/2)."""
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"kind: expected one of {PHANTOM_KINDS}, got {kind!r}")
    if kind == "mixed":
        kind = "ellipses" if float(torch.rand(1, generator=generator)) < 0.5 else "shepp_logan"
    if kind == "ellipses":
        return random_ellipses(size, generator)
    return random_shepp_logan(size, generator)
