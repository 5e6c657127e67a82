"""The two baseline uncertainty methods of the paper (docs/method.md section 5.3).

* MC dropout: :func:`mc_dropout` runs T stochastic passes with only the dropout modules in training
  mode (BatchNorm and everything else in eval mode) and returns the mean and the Bessel-corrected
  standard deviation.
* Probabilistic output: :class:`ProbOut` adds a log-variance head to a trained network,
  :func:`probout_loss` is the fine-tuning loss and :func:`probout_uncertainty` the uncertainty
  ``exp(s / 2)``. The fine-tuning loop itself is the shared training loop's job.
"""

from __future__ import annotations

from ._extras import require_study

require_study(__name__)

import copy
import warnings
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

# T of the paper per task (docs/method.md section 5.3): CT 16 (the authors' code used 128),
# 1D deconvolution 50, denoising 128.
PAPER_PASSES = {"ct": 16, "deconv1d": 50, "denoising": 128}


class MCDropoutResult(NamedTuple):
    mean: torch.Tensor
    std: torch.Tensor
    quantiles: torch.Tensor | None = None  # (len(q), *x_out.shape) when asked for


def _sample_quantiles(samples: torch.Tensor, levels) -> torch.Tensor:
    """Quantiles along dim 0 with linear interpolation (torch.quantile's default rule; written
    out because torch.quantile refuses inputs of more than 2**24 elements)."""
    ordered = samples.sort(0).values
    out = []
    for q in levels:
        position = q * (samples.shape[0] - 1)
        below = int(position)
        above = min(below + 1, samples.shape[0] - 1)
        out.append(ordered[below] + (position - below) * (ordered[above] - ordered[below]))
    return torch.stack(out)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The ``nn.Dropout*`` modules of ``model`` (functional dropout calls are not seen)."""
    return [m for m in model.modules() if isinstance(m, _DropoutNd)]


@torch.no_grad()
def mc_dropout(model: nn.Module, x: torch.Tensor, passes: int = PAPER_PASSES["ct"], *,
               max_batch: int = 64, seed: int | None = None,
               quantiles=None) -> MCDropoutResult:
    """Mean and Bessel-corrected std over ``passes`` forward passes of ``model`` on ``x`` with
    dropout active and every other module in eval mode.

    Passes run batched: ``x`` is repeated ``max(1, max_batch // len(x))`` times per forward
    (dropout masks are independent per sample, so each copy is an independent pass). Statistics
    accumulate in float64 (Chan et al.'s pairwise update). ``seed`` fixes the dropout masks
    without touching the global RNG state. The modules' training flags are restored afterwards.
    ``quantiles`` (levels in [0, 1]) also returns those quantiles of the passes, per element
    (all passes are then kept in memory).
    """
    if quantiles is not None and not all(0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(f"quantiles: expected levels in [0, 1], got {quantiles!r}")
    if passes < 2:
        raise ValueError(f"passes: expected >= 2 for a standard deviation, got {passes}")
    if max_batch < 1:
        raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
    if not dropout_modules(model):
        warnings.warn("mc_dropout: the model has no nn.Dropout module; every pass is the same "
                      "and the std is 0", stacklevel=2)
    modes = {m: m.training for m in model.modules()}
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        model.eval()
        for m in dropout_modules(model):
            m.train()
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            count, mean, m2, kept = 0, None, None, []
            per_forward = max(1, max_batch // max(1, x.shape[0]))
            while count < passes:
                k = min(per_forward, passes - count)
                y = model(x.repeat(k, *([1] * (x.ndim - 1))))
                y = y.reshape(k, x.shape[0], *y.shape[1:]).to(torch.float64)
                if quantiles is not None:
                    kept.append(y)
                chunk_mean = y.mean(0)
                chunk_m2 = ((y - chunk_mean) ** 2).sum(0)
                if mean is None:
                    mean, m2 = chunk_mean, chunk_m2
                else:
                    delta = chunk_mean - mean
                    total = count + k
                    mean = mean + delta * (k / total)
                    m2 = m2 + chunk_m2 + delta ** 2 * (count * k / total)
                count += k
    finally:
        for m, mode in modes.items():
            m.train(mode)
    std = (m2 / (passes - 1)).sqrt()
    levels = None if quantiles is None else \
        _sample_quantiles(torch.cat(kept), quantiles).to(x.dtype)
    return MCDropoutResult(mean.to(x.dtype), std.to(x.dtype), levels)


class ProbOut(nn.Module):
    """``model`` with an extra log-variance output ``s`` per output channel:
    ``forward(x) = cat([mu, s], dim=1)``, ``mu`` = the model's own output.

    ``model`` must follow the protocol of :mod:`inn_cuda.tasks.models` (``forward_features``,
    ``head``, ``forward_head``). The new head is a copy of ``model.head`` with weights scaled by
    ``weight_scale`` and bias ``bias_init`` (-3: the fine-tuning starts from a small, nearly
    uniform variance, exp(-3) ~ 0.05); ``model`` itself is shared, not copied.

    ``min_log_variance`` (None: no floor) clamps ``s`` from below. When all parameters are
    fine-tuned, the network can fit pixels exactly (e.g. the clamped air of a CT image), the loss
    then drives their ``s`` toward -inf, and ``exp(-s)`` overflows to NaN; a floor keeps the
    loss finite, and output and loss see the same clamped ``s``.
    """

    def __init__(self, model: nn.Module, *, bias_init: float = -3.0, weight_scale: float = 0.1,
                 min_log_variance: float | None = None):
        super().__init__()
        missing = [a for a in ("forward_features", "forward_head", "head") if not hasattr(model, a)]
        if missing:
            raise TypeError(f"model: ProbOut needs forward_features, forward_head and head "
                            f"(see inn_cuda.tasks.models); {type(model).__name__} lacks {missing}")
        if getattr(model.head, "bias", None) is None:
            raise TypeError(f"model.head: expected a layer with a bias, got {model.head}")
        self.model = model
        self.min_log_variance = min_log_variance
        self.logvar_head = copy.deepcopy(model.head)
        with torch.no_grad():
            self.logvar_head.weight.mul_(weight_scale)
            self.logvar_head.bias.fill_(bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(x)
        mu = self.model.forward_head(features, x)
        s = self.logvar_head(features)
        if self.min_log_variance is not None:
            s = s.clamp(min=self.min_log_variance)
        return torch.cat([mu, s], dim=1)


def split_probout(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, s)`` from a :class:`ProbOut` output (channels: means, then log-variances)."""
    channels = output.shape[1]
    if channels % 2:
        raise ValueError(f"output: expected an even channel count (mu, s), got {channels}")
    return output[:, : channels // 2], output[:, channels // 2:]


def probout_loss(output: torch.Tensor, target: torch.Tensor, *, log_variance_weight: float = 3.0):
    """``mean((mu - y)^2 * exp(-s)) + 3 * mean(s)`` (docs/method.md section 5.3; the weight 3 is the
    authors' choice, 1 would be the Gaussian negative log-likelihood up to constants)."""
    mu, s = split_probout(output)
    if mu.shape != target.shape:
        raise ValueError(f"target: expected shape {tuple(mu.shape)}, got {tuple(target.shape)}")
    return ((mu - target) ** 2 * torch.exp(-s)).mean() + log_variance_weight * s.mean()


def probout_uncertainty(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, exp(s / 2))``: the prediction and its uncertainty (a standard deviation)."""
    mu, s = split_probout(output)
    return mu, torch.exp(0.5 * s)
