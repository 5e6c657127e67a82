"""Generators of the three failure modes of docs/method.md section 5.2: noise levels,
adversarial inputs (a fixed network driven to erase a blob from its reconstruction: by a perturbation of the
measurement within a noise bound, :func:`measurement_attack`, or, as the paper did, of the
network input with no bound, :func:`adversarial_search`) and atypical artifacts (a foreign shape
pasted into the ground truth and re-measured). Device-agnostic and batched; the
random parts take a seed or a ``torch.Generator``.
"""

from __future__ import annotations

from ._extras import require_study

require_study(__name__)

import math
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from .tasks.filters import gaussian_blur2d

# ----------------------------------------------------------------------------------------------
# 1. Noise


def add_noise(x: torch.Tensor, sigma: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` plus Gaussian noise of std ``sigma`` (drawn on the CPU for reproducibility)."""
    if sigma < 0:
        raise ValueError(f"sigma: expected >= 0, got {sigma}")
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x + sigma * noise.to(x.device)


def noise_sweep(x: torch.Tensor, sigmas, seed: int = 0):
    """``[(sigma, noisy x)]`` for each level; level ``k`` uses seed ``seed + k`` so adding a level
    does not change the others."""
    return [(float(s), add_noise(x, float(s), torch.Generator().manual_seed(seed + k)))
            for k, s in enumerate(sigmas)]


# ----------------------------------------------------------------------------------------------
# Shapes


def _as_generator(seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def _grid(height: int, width: int, dtype=torch.float64, device=None):
    rows = torch.arange(height, dtype=dtype, device=device)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=dtype, device=device)[None, :].expand(height, width)
    return rows, cols


def square_mask(height, width, center, side, device=None) -> torch.Tensor:
    """Boolean mask of a ``side x side`` pixel square centred at ``center`` (row, col)."""
    rows, cols = _grid(height, width, device=device)
    half = side / 2.0
    return ((rows - center[0]).abs() < half) & ((cols - center[1]).abs() < half)


def disk_mask(height, width, center, radius, device=None) -> torch.Tensor:
    """Boolean mask of the disk of ``radius`` pixels about ``center`` (row, col)."""
    rows, cols = _grid(height, width, device=device)
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius ** 2


def body_region(image: torch.Tensor, fraction: float = 0.25) -> torch.Tensor:
    """Pixels of a reconstruction brighter than ``fraction`` x its mean over the non-zero pixels:
    the object rather than the air around it."""
    positive = image[image > 0]
    if positive.numel() == 0:
        return torch.ones_like(image, dtype=torch.bool)
    return image > fraction * positive.mean()


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels whose ``(2r+1)^2`` neighbourhood lies entirely inside ``mask``."""
    if radius <= 0:
        return mask
    outside = (~mask).to(torch.float32)[None, None]
    grown = nn.functional.max_pool2d(outside, 2 * radius + 1, stride=1, padding=radius)
    return grown[0, 0] == 0


def random_center(region: torch.Tensor, margin: int, generator: torch.Generator):
    """A uniformly drawn pixel of ``region`` at least ``margin`` pixels inside it (and the image);
    falls back to the region's centre of mass when no pixel is that deep."""
    h, w = region.shape
    allowed = _erode(region.cpu(), margin)
    border = torch.zeros_like(allowed)
    border[margin:h - margin, margin:w - margin] = True
    candidates = torch.nonzero(allowed & border)
    if candidates.numel() == 0:
        if not bool(region.any()):
            return h // 2, w // 2
        return tuple(int(v) for v in torch.nonzero(region.cpu()).to(torch.float64).mean(0).round())
    pick = int(torch.randint(candidates.shape[0], (1,), generator=generator))
    return tuple(int(v) for v in candidates[pick])


# ----------------------------------------------------------------------------------------------
# 2. Adversarial inputs


class AdversarialTarget(NamedTuple):
    target: torch.Tensor  # (B, C, H, W) the reconstruction with a dark blob removed
    mask: torch.Tensor  # (B, 1, H, W) bool: where the target differs from the reconstruction
    centers: list  # (row, col) of each blob


def adversarial_target(rec: torch.Tensor, *, shape: str = "square", seed=0,
                       extent: float | None = None, sigma: float | None = None,
                       fill_factor: float = 1.5, mask_tolerance: float = 0.01) -> AdversarialTarget:
    """The paper's adversarial target for reconstructions ``rec`` ``(B, C, H, W)``: per image,
    ``rec`` minus a blob (a square of side ``extent`` or a disk of radius ``extent``, at a random
    position in the body region, filled with ``fill_factor * mean(rec)``, Gaussian-blurred with
    ``sigma``), and the negative values this creates replaced by ``min(rec)``.

    Defaults are the paper's 512 x 512 sizes scaled to the image: square side ``50 H / 512``, disk
    radius ``20 H / 512``, ``sigma = 2 H / 512`` (at least 0.5 pixel). ``mask`` marks the pixels
    where ``|target - rec| > mask_tolerance * fill`` (any channel)."""
    if rec.ndim != 4:
        raise ValueError(f"rec: expected (B, C, H, W), got shape {tuple(rec.shape)}")
    if shape not in ("square", "disk"):
        raise ValueError(f"shape: expected 'square' or 'disk', got {shape!r}")
    b, c, h, w = rec.shape
    scale = h / 512.0
    if extent is None:
        extent = (50.0 if shape == "square" else 20.0) * scale
    if sigma is None:
        sigma = max(0.5, 2.0 * scale)
    gen = _as_generator(seed)
    rec_d = rec.detach()
    margin = math.ceil(extent / 2 if shape == "square" else extent)
    targets, masks, centers = [], [], []
    for i in range(b):
        image = rec_d[i]
        region = body_region(image.mean(0))
        center = random_center(region, margin, gen)
        footprint = square_mask(h, w, center, extent, device=rec.device) if shape == "square" \
            else disk_mask(h, w, center, extent, device=rec.device)
        fill = fill_factor * image.mean()
        blob = gaussian_blur2d(footprint.to(rec.dtype) * fill, sigma)
        target = image - blob
        # negatives that the blob creates become min(rec) (the paper's clip; pixels that were
        # negative already stay unclipped, so nothing changes outside the blob)
        target = torch.where((target < 0) & (image >= 0), image.min(), target)
        changed = ((target - image).abs() > mask_tolerance * fill.abs()).any(0, keepdim=True)
        targets.append(target)
        masks.append(changed)
        centers.append(center)
    return AdversarialTarget(torch.stack(targets), torch.stack(masks), centers)


class AdversarialResult(NamedTuple):
    x_adv: torch.Tensor  # the adversarial input
    target: torch.Tensor  # the output the search aimed at
    mask: torch.Tensor  # bool (B, 1, H, W): where the target differs from f(x)
    perturbation_norm: torch.Tensor  # (B,) L2 norm of x_adv - x per image
    objective_start: torch.Tensor  # (B,) mean((f(x) - t)^2) per image
    objective_end: torch.Tensor  # (B,) mean((f(x_adv) - t)^2) per image
    iterations: int  # optimiser iterations run
    evaluations: int  # forward/backward evaluations of f


def _project(delta: torch.Tensor, bound: float | None, norm: str) -> torch.Tensor:
    """The perturbation actually applied for the free variable ``delta``: within the ``norm``
    ball of radius ``bound`` via a differentiable reparametrisation (radial rescaling for L2,
    ``bound * tanh(delta / bound)`` for L-infinity), so both optimisers stay unconstrained."""
    if bound is None:
        return delta
    if isinstance(bound, torch.Tensor):  # one radius per image
        bound = bound.to(delta).view(-1, *([1] * (delta.ndim - 1)))
    if norm == "l2":
        lengths = delta.flatten(1).norm(dim=1).clamp(min=1e-30)
        factor = torch.clamp(bound / lengths.view(-1, *([1] * (delta.ndim - 1))), max=1.0)
        return delta * factor
    return bound * torch.tanh(delta / bound)


def adversarial_search(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                       mask: torch.Tensor | None = None, optimizer: str = "lbfgs",
                       max_iter: int = 100, lr: float | None = None,
                       bound: float | torch.Tensor | None = None,
                       norm: str = "l2", tolerance: float = 1e-9) -> AdversarialResult:
    """Minimise ``mean((f(x') - target)^2)`` over inputs ``x'`` starting at ``x`` for a fixed
    ``model`` ``f`` (eval mode, parameters untouched, their ``requires_grad`` and the model's mode
    restored afterwards). The optimiser minimises the sum over images of each image's objective
    divided by its starting value (the same minimiser per image, images weigh alike); with L-BFGS
    the images share one line search.

    ``optimizer``: ``"lbfgs"`` (``torch.optim.LBFGS`` with strong-Wolfe line search, the authors'
    choice; ``lr`` default 1) or ``"adam"`` (``lr`` default 1e-2 x the input's std).
    ``bound``: optional radius of an ``norm`` ball (``"l2"`` per image or ``"linf"``) around ``x``,
    a number or one radius per image (a ``(B,)`` tensor).
    ``mask`` is only passed through to the result (see :func:`adversarial_target`)."""
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer: expected 'lbfgs' or 'adam', got {optimizer!r}")
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm: expected 'l2' or 'linf', got {norm!r}")
    if bound is not None and not bool((torch.as_tensor(bound) > 0).all()):
        raise ValueError(f"bound: expected > 0 (a number or one per image) or None, got {bound}")
    if isinstance(bound, torch.Tensor) and bound.shape != (x.shape[0],):
        raise ValueError(f"bound: expected a number or shape ({x.shape[0]},), got "
                         f"{tuple(bound.shape)}")
    if max_iter < 1:
        raise ValueError(f"max_iter: expected >= 1, got {max_iter}")
    x = x.detach()
    target = target.detach()
    params = list(model.parameters())
    grad_flags = [p.requires_grad for p in params]
    modes = {m: m.training for m in model.modules()}
    evaluations = 0

    def per_image(out):
        return ((out - target) ** 2).flatten(1).mean(1)

    try:
        model.eval()
        for p in params:
            p.requires_grad_(False)
        with torch.no_grad():
            start = per_image(model(x))
        delta = torch.zeros_like(x, requires_grad=True)
        # each image's objective relative to its start: all start at 1, so images weigh alike
        # and the optimiser's tolerances do not depend on the data's scale
        scale = torch.where(start > 0, start, torch.ones_like(start))

        def objective():
            nonlocal evaluations
            evaluations += 1
            return (per_image(model(x + _project(delta, bound, norm))) / scale).sum()

        with torch.enable_grad():
            if optimizer == "lbfgs":
                opt = torch.optim.LBFGS([delta], lr=1.0 if lr is None else lr, max_iter=max_iter,
                                        tolerance_grad=tolerance, tolerance_change=tolerance,
                                        history_size=20, line_search_fn="strong_wolfe")

                def closure():
                    opt.zero_grad()
                    loss = objective()
                    loss.backward()
                    return loss

                opt.step(closure)
                iterations = int(opt.state[delta].get("n_iter", 0))
            else:
                step = 1e-2 * float(x.std()) if lr is None else lr
                opt = torch.optim.Adam([delta], lr=step)
                iterations, previous = 0, math.inf
                for iterations in range(1, max_iter + 1):
                    opt.zero_grad()
                    loss = objective()
                    loss.backward()
                    opt.step()
                    current = float(loss.detach())
                    if abs(previous - current) <= tolerance * max(1.0, abs(current)):
                        break
                    previous = current
        with torch.no_grad():
            x_adv = x + _project(delta.detach(), bound, norm)
            end = per_image(model(x_adv))
    finally:
        for p, flag in zip(params, grad_flags):
            p.requires_grad_(flag)
        for m, mode in modes.items():
            m.train(mode)
    if mask is None:
        mask = torch.zeros(x.shape[0], 1, *x.shape[2:], dtype=torch.bool, device=x.device)
    return AdversarialResult(x_adv, target, mask, (x_adv - x).flatten(1).norm(dim=1), start, end,
                             iterations, evaluations)


def adversarial_examples(model: nn.Module, x: torch.Tensor, *, shape: str = "square", seed=0,
                         **search_kwargs) -> AdversarialResult:
    """:func:`adversarial_target` on ``model(x)`` followed by :func:`adversarial_search`."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            rec = model(x)
    finally:
        model.train(was_training)
    target = adversarial_target(rec, shape=shape, seed=seed)
    return adversarial_search(model, x, target.target, mask=target.mask, **search_kwargs)


class _ThroughMeasurement(nn.Module):
    """``model(reconstruct(m))``: the network fed from a measurement ``m``; ``reconstruct`` is a
    fixed differentiable map (FBP for CT, the identity for 1D), so the search stays on the data."""

    def __init__(self, model: nn.Module, reconstruct: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self.reconstruct = reconstruct

    def forward(self, measurement):
        return self.model(self.reconstruct(measurement))


class MeasurementAttack(NamedTuple):
    """A data-consistent adversarial example: a perturbation of the measurement within a noise
    bound, the network input it gives, and what it did to the reconstruction."""

    measurement: torch.Tensor  # the perturbed measurement
    x_clean: torch.Tensor  # network input of the unperturbed measurement
    x_adv: torch.Tensor  # network input of the perturbed measurement
    target: torch.Tensor  # the reconstruction the search aimed at
    mask: torch.Tensor  # bool (B, 1, ...): where the reconstruction actually changed
    intended_mask: torch.Tensor  # bool (B, 1, ...): where the target differs from f(x)
    noise_ratio: torch.Tensor  # (B,) ||delta||_2 / (noise std * sqrt(n)), at most `k`
    change_ratio: torch.Tensor  # (B,) ||f(x_adv) - f(x)||_2 / ||f(x) - y||_2 (y: the truth)
    realised: torch.Tensor  # (B,) share of the intended change realised (projection, <= ~1)
    search: AdversarialResult


def measurement_attack(model: nn.Module, measurement: torch.Tensor,
                       reconstruct: Callable[[torch.Tensor], torch.Tensor],
                       make_target: Callable[[torch.Tensor], AdversarialTarget], *,
                       noise_std, k: float = 1.0, truth: torch.Tensor | None = None,
                       mask_fraction: float = 0.1, **search_kwargs) -> MeasurementAttack:
    """The adversarial failure case on the data: find ``delta`` with
    ``||delta||_2 <= k * noise_std * sqrt(n)`` per image (``n`` = measurement elements per image,
    so ``k = 1`` is the norm of one noise draw of that std) that drives the reconstruction
    ``model(reconstruct(m + delta))`` toward ``make_target(f(x))`` (e.g. the reconstruction
    minus a dark blob, :func:`adversarial_target`), by :func:`adversarial_search` on the
    measurement.

    The returned ``mask`` is built from the *realised* change: the pixels where
    ``|f(x_adv) - f(x)|`` exceeds ``mask_fraction`` x the largest intended change of that image,
    so a search that fails leaves a small or empty mask, never the region it aimed at.
    ``noise_std``: a number or one std per image; ``truth`` (the ground truth) gives
    ``change_ratio``, the output change relative to the clean reconstruction's error."""
    if not k > 0:
        raise ValueError(f"k: expected > 0, got {k}")
    if not 0 < mask_fraction < 1:
        raise ValueError(f"mask_fraction: expected in (0, 1), got {mask_fraction}")
    measurement = measurement.detach()
    b = measurement.shape[0]
    std = torch.as_tensor(noise_std, dtype=torch.float64).flatten()
    std = std.expand(b) if std.numel() == 1 else std
    if std.shape != (b,) or not bool((std > 0).all()):
        raise ValueError(f"noise_std: expected a positive number or {b} positive values, got "
                         f"{noise_std}")
    n = measurement[0].numel()
    scale = std * math.sqrt(n)  # the L2 norm of one noise draw
    composed = _ThroughMeasurement(model, reconstruct)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x_clean = reconstruct(measurement)
            rec = model(x_clean)
    finally:
        model.train(was_training)
    aim = make_target(rec)
    result = adversarial_search(composed, measurement, aim.target.to(rec), mask=aim.mask,
                                bound=(k * scale).to(measurement.device), norm="l2",
                                **search_kwargs)
    model.eval()
    try:
        with torch.no_grad():
            x_adv = reconstruct(result.x_adv)
            out = model(x_adv)
    finally:
        model.train(was_training)
    change = (out - rec).detach()
    intended = (aim.target.to(rec) - rec).detach()
    depth = intended.flatten(1).abs().amax(1).clamp(min=1e-30)
    view = (-1,) + (1,) * (change.ndim - 1)
    mask = (change.abs() > mask_fraction * depth.view(view)).any(1, keepdim=True)
    noise_ratio = result.perturbation_norm.double().cpu() / scale
    flat_i = intended.flatten(1).double()
    realised = (change.flatten(1).double() * flat_i).sum(1) / flat_i.square().sum(1).clamp(
        min=1e-30)
    if truth is not None:
        error = (rec - truth.to(rec)).flatten(1).double().norm(dim=1).clamp(min=1e-30)
        change_ratio = change.flatten(1).double().norm(dim=1) / error
    else:
        change_ratio = torch.full((b,), math.nan, dtype=torch.float64)
    return MeasurementAttack(result.x_adv, x_clean, x_adv, aim.target, mask, aim.mask,
                             noise_ratio, change_ratio.cpu(), realised.cpu(), result)


# ----------------------------------------------------------------------------------------------
# 3. Atypical artifacts


def _polygon_mask(rows, cols, vertices) -> torch.Tensor:
    """Even-odd point-in-polygon test; ``vertices`` = [(x, y)] in the same units as cols, rows."""
    inside = torch.zeros_like(rows, dtype=torch.bool)
    n = len(vertices)
    for k in range(n):
        (x1, y1), (x2, y2) = vertices[k], vertices[(k + 1) % n]
        if y1 == y2:
            continue
        crosses = (rows >= min(y1, y2)) & (rows < max(y1, y2))
        x_at = x1 + (rows - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (cols < x_at)
    return inside


def bird_silhouette(size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A bird in flight, seen from the side, drawn procedurally on a ``size x size`` canvas (bool):
    an elliptical body, a round head with a beak, a fanned tail, a raised near wing with feather
    tips and a lowered far wing. The generator jitters the wing lift, tail spread, mirroring and
    rotation, so every seed gives a different bird."""
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    r = lambda lo, hi: lo + (hi - lo) * float(torch.rand(1, generator=gen))  # noqa: E731
    lift, spread, rotation = r(-0.1, 0.15), r(0.0, 0.08), r(-0.6, 0.6)
    mirror = -1.0 if float(torch.rand(1, generator=gen)) < 0.5 else 1.0
    # canvas coordinates in [-1, 1], y up; the bird's frame rotated and possibly mirrored
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2.0 - 1.0
    y0, x0 = torch.meshgrid(-axis, axis, indexing="ij")
    x = mirror * (x0 * math.cos(rotation) + y0 * math.sin(rotation))
    y = -x0 * math.sin(rotation) + y0 * math.cos(rotation)
    tilt = math.radians(10.0)
    xb, yb = x * math.cos(tilt) + y * math.sin(tilt), -x * math.sin(tilt) + y * math.cos(tilt)
    body = (xb / 0.38) ** 2 + (yb / 0.15) ** 2 <= 1.0
    head = (x - 0.4) ** 2 + (y - 0.15) ** 2 <= 0.11 ** 2
    beak = _polygon_mask(y, x, [(0.49, 0.19), (0.64, 0.13), (0.49, 0.1)])
    tail = _polygon_mask(y, x, [(-0.28, 0.0), (-0.74, 0.1 + spread), (-0.7, -0.02),
                                (-0.74, -0.14 - spread), (-0.28, -0.1)])
    near_wing = _polygon_mask(y, x, [
        (0.2, 0.08), (0.05, 0.42 + lift), (-0.12, 0.72 + lift), (-0.26, 0.66 + lift),
        (-0.22, 0.52 + lift), (-0.36, 0.52 + lift), (-0.3, 0.38 + lift / 2), (-0.44, 0.34),
        (-0.34, 0.24), (-0.2, 0.08)])
    far_wing = _polygon_mask(y, x, [(0.1, -0.08), (-0.02, -0.36 - lift), (-0.2, -0.44 - lift),
                                    (-0.16, -0.28), (-0.26, -0.1)])
    return body | head | beak | tail | near_wing | far_wing


def load_shape(path, size: int, threshold: float = 0.5) -> torch.Tensor:
    """A bool silhouette from a user PNG (or any Pillow-readable image), resized to ``size x
    size``: the alpha channel where there is one, else dark-on-light or light-on-dark pixels
    (whichever is the minority) beyond ``threshold`` of the grey range."""
    from PIL import Image
    with Image.open(path) as img:
        img = img.convert("RGBA") if "A" in img.getbands() or "transparency" in img.info \
            else img.convert("L")
        img = img.resize((size, size), Image.Resampling.BILINEAR)
        array = torch.from_numpy(np.asarray(img, dtype=np.float64).copy())
    if array.ndim == 3:  # RGBA
        alpha = array[..., 3] / 255.0
        if float(alpha.min()) < 1.0:
            return alpha > threshold
        array = array[..., :3].mean(-1)
    grey = array
    lo, hi = float(grey.min()), float(grey.max())
    if hi <= lo:
        raise ValueError(f"{path}: the image is uniform, no shape to take")
    shape = (grey - lo) / (hi - lo) > threshold
    return ~shape if shape.float().mean() > 0.5 else shape


def metal_silhouette(size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Two or three small disks (radius ``size / 10``) on a ``size x size`` canvas (bool): the
    footprint of metal-like implants (screws, clips)."""
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    radius = max(1.0, size / 10)
    canvas = torch.zeros(size, size, dtype=torch.bool)
    for _ in range(2 + int(torch.randint(2, (1,), generator=gen))):
        center = (radius + (size - 1 - 2 * radius) * torch.rand(2, generator=gen)).tolist()
        canvas |= disk_mask(size, size, center, radius)
    return canvas


# CT artifact kinds: (silhouette, fill). The paper filled a bird with the image mean, which
# makes one more dark region of a body; the others are outside the phantom family: brighter
# than any structure, metal-like, or a fine texture the phantoms never carry.
ARTIFACT_KINDS = ("bright", "metal", "textured", "mean")
BRIGHT_CONTRAST = 1.5  # "bright" fill: x the image's maximum
METAL_CONTRAST = 3.0  # "metal" fill: x the image's maximum
TEXTURE_PERIOD = 4.0  # "textured": stripes of this period (pixels), between 0 and bright


class ArtifactCase(NamedTuple):
    input: torch.Tensor  # (B, C, H, W) the simulated network input for the altered ground truth
    ground_truth: torch.Tensor  # (B, C, H, W) the ground truth with the shape pasted in
    mask: torch.Tensor  # (B, 1, H, W) bool: the artifact's footprint


def _place(silhouette: torch.Tensor, h: int, w: int, region: torch.Tensor, gen) -> torch.Tensor:
    sh, sw = silhouette.shape
    canvas = torch.zeros(h, w, dtype=torch.bool)
    # the whole bounding box inside `region`: the centre at least half the box deep in it
    row, col = random_center(region, math.ceil(max(sh, sw) / 2), gen)
    r0 = min(max(row - sh // 2, 0), h - sh)
    c0 = min(max(col - sw // 2, 0), w - sw)
    canvas[r0:r0 + sh, c0:c0 + sw] = silhouette
    return canvas


def insert_artifact(ground_truth: torch.Tensor, simulate: Callable[[torch.Tensor], torch.Tensor], *,
                    shape: torch.Tensor | str | None = None, scale: float = 0.4, seed=0,
                    region: torch.Tensor | None = None, kind: str = "mean") -> ArtifactCase:
    """Paste a foreign shape into each ground truth ``(B, C, H, W)`` (replacing the pixels under
    it, as the paper's code did) and re-simulate the measurement and reconstruction with
    ``simulate`` (e.g. ``LimitedAngleCT.simulate``, which maps ``(B, C, H, W)`` ground truths to
    network inputs).

    ``kind`` (:data:`ARTIFACT_KINDS`) sets the fill: ``"mean"`` the image's mean intensity (the
    paper), ``"bright"`` :data:`BRIGHT_CONTRAST` x the image's maximum, ``"textured"`` stripes
    of period :data:`TEXTURE_PERIOD` between 0 and that bright value, ``"metal"``
    :data:`METAL_CONTRAST` x the maximum in a few small disks (:func:`metal_silhouette`, when
    ``shape`` is None).

    ``shape``: None = a fresh procedural bird per image (:func:`bird_silhouette`), a path = a
    user image (:func:`load_shape`), or a bool tensor; it is sized to ``scale`` x the image
    height and placed at a random position whose bounding box lies inside ``region`` (default:
    the reconstruction disc of radius ``H // 2``). Seeded: equal seeds give equal cases."""
    if ground_truth.ndim != 4:
        raise ValueError(f"ground_truth: expected (B, C, H, W), got {tuple(ground_truth.shape)}")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale: expected 0 < scale <= 1, got {scale}")
    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"kind: expected one of {ARTIFACT_KINDS}, got {kind!r}")
    b, c, h, w = ground_truth.shape
    gen = _as_generator(seed)
    side = max(3, round(scale * h))
    if region is None:
        region = disk_mask(h, w, (h // 2, w // 2), h // 2)
    fixed = None
    if isinstance(shape, torch.Tensor):
        fixed = nn.functional.interpolate(shape.to(torch.float32)[None, None], size=(side, side),
                                          mode="nearest")[0, 0] > 0.5
    elif shape is not None:
        fixed = load_shape(shape, side)
    if fixed is not None and not bool(fixed.any()):
        raise ValueError("shape: the silhouette is empty at this size")
    draw = metal_silhouette if kind == "metal" else bird_silhouette
    masks = []
    for _ in range(b):
        silhouette = fixed if fixed is not None else draw(side, gen)
        masks.append(_place(silhouette, h, w, region.cpu(), gen))
    mask = torch.stack(masks)[:, None].to(ground_truth.device)
    fill = _artifact_fill(ground_truth, kind)
    altered = torch.where(mask, fill, ground_truth)
    with torch.no_grad():
        network_input = simulate(altered)
    return ArtifactCase(network_input, altered, mask)


def _artifact_fill(ground_truth: torch.Tensor, kind: str) -> torch.Tensor:
    """The values an artifact of ``kind`` puts in, per image, shaped like ``ground_truth``."""
    peak = ground_truth.amax(dim=(1, 2, 3), keepdim=True)
    if kind == "mean":
        return ground_truth.mean(dim=(1, 2, 3), keepdim=True).expand_as(ground_truth)
    if kind == "metal":
        return (METAL_CONTRAST * peak).expand_as(ground_truth)
    bright = (BRIGHT_CONTRAST * peak).expand_as(ground_truth)
    if kind == "bright":
        return bright
    h, w = ground_truth.shape[-2:]
    rows, cols = _grid(h, w, dtype=ground_truth.dtype, device=ground_truth.device)
    stripes = (torch.sin(2 * math.pi * (rows + cols) / TEXTURE_PERIOD) > 0).to(ground_truth.dtype)
    return bright * stripes


# 1D artifact kinds, each outside the piecewise-constant training family and inside the blur's
# pass band (so the measurement shows it): a narrow spike taller than any level, or a ramp.
ARTIFACT_KINDS_1D = ("spike", "ramp", "oscillation")
SPIKE_WIDTH = 2  # samples
SPIKE_HEIGHT = 1.5  # above the local level (levels lie in [-1, 1])
RAMP_RISE = 2.0  # over the ramp's length
OSCILLATION = (0.5, 8.0)  # amplitude and period (samples) of the former oscillation artifact


def insert_artifact1d(signals: torch.Tensor, simulate, blur, *, kind: str = "spike",
                      length: int = 64, seed=0,
                      footprint_fraction: float = 0.1) -> ArtifactCase:
    """Alter 1D signals ``(B, 1, L)`` with a feature of ``kind`` (:data:`ARTIFACT_KINDS_1D`) at a
    random position and re-simulate them (``simulate(signals) -> (inputs, targets)``):
    ``"spike"`` a :data:`SPIKE_WIDTH`-sample spike :data:`SPIKE_HEIGHT` above the local level,
    ``"ramp"`` a segment of ``length`` samples replaced by a linear ramp rising
    :data:`RAMP_RISE` from the level at its start, ``"oscillation"`` (the former artifact,
    period 8: mostly removed by a wide blur, so the measurement barely shows it) a sine around
    the signal's mean. ``blur`` (the forward blur) defines the footprint: the altered samples
    plus those where the blurred change exceeds ``footprint_fraction`` of its peak, i.e. where
    the measurement carries the feature."""
    if signals.ndim != 3 or signals.shape[1] != 1:
        raise ValueError(f"signals: expected (B, 1, L), got {tuple(signals.shape)}")
    if kind not in ARTIFACT_KINDS_1D:
        raise ValueError(f"kind: expected one of {ARTIFACT_KINDS_1D}, got {kind!r}")
    b, _, n = signals.shape
    width = {"spike": SPIKE_WIDTH}.get(kind, length)
    if not 1 <= width < n - 2:
        raise ValueError(f"length: expected 1 .. {n - 3} samples for signals of {n}, got {width}")
    gen = _as_generator(seed)
    positions = torch.arange(n, dtype=signals.dtype, device=signals.device)
    altered = signals.clone()
    for i in range(b):
        start = int(torch.randint(1, n - width - 1, (1,), generator=gen))
        inside = (positions >= start) & (positions < start + width)
        level = signals[i, 0, start]
        if kind == "spike":
            feature = level + SPIKE_HEIGHT
        elif kind == "ramp":
            feature = level + RAMP_RISE * (positions - start) / width
        else:
            amplitude, period = OSCILLATION
            feature = signals[i].mean() + amplitude * torch.sin(2 * math.pi * (positions - start)
                                                                 / period)
        altered[i, 0] = torch.where(inside, feature, signals[i, 0])
    change = blur(altered - signals).abs()
    peak = change.flatten(1).amax(1).clamp(min=1e-30).view(-1, 1, 1)
    mask = (change > footprint_fraction * peak) | (altered != signals)
    with torch.no_grad():
        inputs, targets = simulate(altered)
    return ArtifactCase(inputs, targets, mask)


class ErrorRise(NamedTuple):
    ratio: torch.Tensor  # (B,) mean |error| in the footprint: artifact case / clean case
    artifact_error: torch.Tensor  # (B,) mean |error| in the footprint, artifact case
    clean_error: torch.Tensor  # (B,) the same footprint on the clean case


def error_rise(rec_artifact: torch.Tensor, truth_artifact: torch.Tensor, rec_clean: torch.Tensor,
               truth_clean: torch.Tensor, mask: torch.Tensor) -> ErrorRise:
    """Did the artifact make the network fail? Per image, the mean absolute reconstruction error
    inside the artifact's footprint ``mask`` with the artifact, relative to the same footprint of
    the clean image. A ratio near 1 is no failure: the network reconstructed the insert as well
    as the body it replaced."""
    weights = mask.expand_as(rec_artifact).flatten(1).double()
    count = weights.sum(1)
    if bool((count == 0).any()):
        raise ValueError("mask: every image needs a non-empty footprint")
    def footprint_error(rec, truth):
        return ((rec - truth).abs().flatten(1).double() * weights).sum(1) / count
    art = footprint_error(rec_artifact, truth_artifact)
    clean = footprint_error(rec_clean, truth_clean)
    return ErrorRise(art / clean.clamp(min=1e-30), art, clean)
