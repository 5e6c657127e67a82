"""Calibrated intervals for any uncertainty method, and the interval score that compares them.

Every method of the study gives a band ``[lo, hi]`` around its reconstruction ``rec`` (the INN
its interval, MC dropout ``rec -+ std``, PROBOUT ``mu -+ sigma``). :func:`calibrate_scale` finds
the smallest factor ``k`` such that the band with both sides scaled by ``k``,
``[rec - k (rec - lo), rec + k (hi - rec)]``, contains a fraction ``coverage`` of the
calibration targets (a split-conformal quantile: exact on the calibration data, up to ties).
All methods calibrated on the same data to the same coverage are then compared by width and by
the interval score (Winkler 1972; Gneiting & Raftery 2007), which adds a penalty ``2 / alpha`` x
the distance of every target outside the band (``alpha = 1 - coverage``): lower is better, and
a band cannot win by being narrow and wrong.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(x.shape[0], -1).to(torch.float64)


def _check(rec, lo, hi, target, support):
    shapes = {name: tuple(t.shape) for name, t in
              (("rec", rec), ("lo", lo), ("hi", hi), ("target", target)) if t is not None}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"expected equal shapes, got {shapes}")
    if support is not None and tuple(support.shape) != tuple(lo.shape):
        raise ValueError(f"support: expected shape {tuple(lo.shape)}, got {tuple(support.shape)}")


def required_scale(rec, lo, hi, target) -> torch.Tensor:
    """Per element, the smallest ``k >= 0`` whose scaled band contains the target (``inf`` where
    the target lies on a side of zero length)."""
    rec, lo, hi, y = (t.detach().to(torch.float64) for t in (rec, lo, hi, target))
    above, below = hi - rec, rec - lo
    if bool((above < 0).any() | (below < 0).any()):
        raise ValueError("lo, hi: expected lo <= rec <= hi everywhere")
    need_up = torch.where(above > 0, (y - rec) / above.clamp(min=1e-300),
                          torch.where(y > rec, math.inf, 0.0))
    need_down = torch.where(below > 0, (rec - y) / below.clamp(min=1e-300),
                            torch.where(y < rec, math.inf, 0.0))
    return torch.where(y >= rec, need_up, need_down).clamp(min=0.0)


def calibrate_scale(rec, lo, hi, target, coverage: float,
                    support: Optional[torch.Tensor] = None) -> float:
    """The smallest ``k`` whose scaled band contains at least ``coverage`` of the target elements
    (of ``support`` when given): the ``ceil(coverage * n)``-th smallest required scale.
    ``inf`` when that many targets cannot be reached by any scale (zero-length sides)."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage: expected a fraction in (0, 1), got {coverage}")
    _check(rec, lo, hi, target, support)
    need = required_scale(rec, lo, hi, target).reshape(-1)
    if support is not None:
        need = need[support.reshape(-1).to(torch.bool)]
    if need.numel() == 0:
        raise ValueError("support: no element to calibrate on")
    rank = min(need.numel(), math.ceil(coverage * need.numel()))
    return float(torch.kthvalue(need, rank).values)


def scale_band(rec, lo, hi, k: float):
    """``(rec - k (rec - lo), rec + k (hi - rec))``."""
    if not k >= 0:
        raise ValueError(f"k: expected >= 0, got {k}")
    return rec - k * (rec - lo), rec + k * (hi - rec)


class BandScores(NamedTuple):
    coverage: torch.Tensor  # (B,) share of support elements inside the band
    width: torch.Tensor  # (B,) mean hi - lo over the support
    interval_score: torch.Tensor  # (B,) mean Winkler score over the support


def band_scores(lo, hi, target, coverage: float,
                support: Optional[torch.Tensor] = None) -> BandScores:
    """Per image coverage, mean width and mean interval score
    ``(hi - lo) + (2 / alpha) (lo - y)_+ + (2 / alpha) (y - hi)_+`` with ``alpha = 1 - coverage``,
    over the ``support`` elements (all when None; NaN for an image with an empty support)."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage: expected a fraction in (0, 1), got {coverage}")
    _check(None, lo, hi, target, support)
    lo, hi, y = _flat(lo), _flat(hi), _flat(target)
    weights = torch.ones_like(lo) if support is None else _flat(support.to(torch.float64))
    count = weights.sum(1)
    alpha = 1.0 - coverage
    inside = ((lo <= y) & (y <= hi)).to(torch.float64)
    score = (hi - lo) + (2.0 / alpha) * ((lo - y).clamp(min=0) + (y - hi).clamp(min=0))
    mean = lambda v: (v * weights).sum(1) / count  # noqa: E731  (0/0 = NaN: empty support)
    return BandScores(mean(inside), mean(hi - lo), mean(score))
