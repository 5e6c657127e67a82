"""Uncertainty maps of an interval prediction and per-image scores.

Per pixel: the width ``hi - lo`` (the INN heatmap) and its two directional parts ``rec - lo``
(room below the reconstruction ``rec``) and ``hi - rec`` (room above it): where one side is much
longer, the interval points to the direction of the likely error, which a symmetric method
cannot. Per image: mean, max and quantiles of each map, the scores that rank images (e.g. clean
vs. perturbed).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, NamedTuple, Optional, Sequence

import torch
# Not tqdm.auto: its asyncio variant calls iter() on the loader once more (an extra pass of
# loader workers, and a shift of the shuffling RNG that breaks exact resume).
from tqdm import tqdm

from .nn import Interval

Tensor = torch.Tensor

DEFAULT_QUANTILES = (0.5, 0.9, 0.99)
_QUANTILE_MAX_NUMEL = 2 ** 24  # torch.quantile refuses larger inputs


class UncertaintyMaps(NamedTuple):
    """Per-pixel maps, each shaped like the prediction."""

    width: Tensor  # hi - lo
    below: Tensor  # rec - lo
    above: Tensor  # hi - rec


class LoaderUncertainty(NamedTuple):
    """``scores[f"{map}_{stat}"]``: one value per image, in loader order, for map in width/below/
    above and stat in mean, max, q<quantile>; ``maps``: the per-pixel maps of all images (on the
    CPU) when asked for, else None."""

    scores: Dict[str, Tensor]
    maps: Optional[UncertaintyMaps]


def uncertainty_maps(out: Interval, rec: Optional[Tensor] = None) -> UncertaintyMaps:
    """The maps of an output interval around the reconstruction ``rec`` (default: the point
    prediction the interval carries)."""
    if not isinstance(out, Interval):
        raise TypeError(f"out must be an inn_cuda.nn.Interval, got {type(out).__name__}")
    rec = out.point if rec is None else rec
    if rec is None:
        raise ValueError("the interval carries no point prediction; pass rec= (the "
                         "reconstruction the directional maps are measured from)")
    if rec.shape != out.lo.shape:
        raise ValueError(f"rec has shape {tuple(rec.shape)}, the interval "
                         f"{tuple(out.lo.shape)}")
    return UncertaintyMaps(out.hi - out.lo, rec - out.lo, out.hi - rec)


def image_scores(values: Tensor, quantiles: Sequence[float] = DEFAULT_QUANTILES
                 ) -> Dict[str, Tensor]:
    """Per image (dim 0) ``mean``, ``max`` and ``q<q>`` (linear-interpolated quantile, e.g.
    ``q0.9``) of a map, in float32 (float64 for float64 maps)."""
    if values.dim() < 1 or values.shape[0] == 0:
        raise ValueError(f"values must have a batch dim with at least one image, got shape "
                         f"{tuple(values.shape)}")
    if any(not 0 <= q <= 1 for q in quantiles):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    flat = values.reshape(values.shape[0], -1)
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    scores = {"mean": flat.mean(1), "max": flat.amax(1)}
    if quantiles:
        qs = torch.tensor(list(quantiles), dtype=flat.dtype, device=flat.device)
        rows = max(1, _QUANTILE_MAX_NUMEL // max(flat.shape[1], 1))
        per_q = torch.cat([torch.quantile(chunk, qs, dim=1) for chunk in flat.split(rows)], 1)
        for q, row in zip(quantiles, per_q):
            scores[f"q{q:g}"] = row
    return scores


def _default_input(batch):
    """A batch is the input tensor itself or a tuple/list whose first entry is the input."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def uncertainty_over_loader(model: torch.nn.Module, loader: Iterable, *,
                            quantiles: Sequence[float] = DEFAULT_QUANTILES,
                            keep_maps: bool = False, device=None,
                            input_of: Callable[[Any], Tensor] = _default_input,
                            progress: bool = True, desc: str = "uncertainty"
                            ) -> LoaderUncertainty:
    """Run an interval model over a loader (eval mode, no gradients, one batch at a time) and
    collect the per-image scores of its maps (optionally the maps themselves)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    modes = [(m, m.training) for m in model.modules()]
    collected: Dict[str, list] = {}
    maps_kept: list = []
    try:
        model.eval()
        with torch.no_grad(), tqdm(loader, desc=desc, dynamic_ncols=True,
                                   disable=not progress) as bar:
            for batch in bar:
                maps = uncertainty_maps(model(input_of(batch).to(device)))
                for name, values in maps._asdict().items():
                    for stat, score in image_scores(values, quantiles).items():
                        collected.setdefault(f"{name}_{stat}", []).append(score.cpu())
                if keep_maps:
                    maps_kept.append(UncertaintyMaps(*(m.cpu() for m in maps)))
    finally:
        for module, training in modes:
            module.training = training
    if not collected:
        raise ValueError(f"{desc}: the loader yielded no batches")
    scores = {k: torch.cat(v) for k, v in collected.items()}
    maps_out = (UncertaintyMaps(*(torch.cat(parts) for parts in zip(*maps_kept)))
                if keep_maps else None)
    return LoaderUncertainty(scores, maps_out)
