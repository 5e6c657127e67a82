"""The paper's noise protocol: for each noise level, retrain the point network and refit the
INN on data carrying that noise (1D: on input and target, as the paper; CT: on the sinogram,
the phantoms being noise-free ground truth), then measure the INN's width on fresh test data of
the same noise, restricted to the task's support when it has one, after scaling its band to the
study's ``interval_coverage`` on validation data of that noise (widths at one coverage compare
across levels; the band as fitted is reported too). Repeated for
``retrain_seeds`` seeds, so the report shows the width against the noise level with its spread.

This is the claim "the interval width grows with the data noise" tested as the paper tested it;
the study's other noise cases (noise added at test time to a network trained without it) are a
distribution shift, reported separately under that name. Each fit is a resumable stage under
``<out>/stages/noise-protocol/``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..calibration import band_scores, calibrate_scale, scale_band
from ..convert import to_interval
from ..train import fit_intervals, fit_point

STAGE_DIR = "noise-protocol"


def _loader(split, batch, shuffle=False, seed=0):
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(split.inputs, split.targets), batch_size=batch,
                      shuffle=shuffle, generator=gen)


@torch.no_grad()
def _interval(model, inputs, batch, device):
    model.eval()
    outs = [model(inputs[i:i + batch].to(device)) for i in range(0, inputs.shape[0], batch)]
    cat = lambda name: torch.cat([getattr(o, name).cpu() for o in outs])  # noqa: E731
    return cat("point"), cat("lo"), cat("hi")


def _fit_one(problem, s, level: float, replicate: int, root: Path, device,
             start=None) -> Dict[str, float]:
    seed = 1000 * s.seed + 500 + 37 * replicate
    counts = (s.retrain_images, min(s.n_val, s.calibration_images), s.n_test)
    train, val, test = problem.noisy_splits(level, counts, seed)
    run = root / f"level{level:g}-seed{replicate}"
    torch.manual_seed(seed)
    point = problem.network() if start is None else copy.deepcopy(start)
    resume = (run / "point" / "checkpoint.pt").exists()
    fit_point(point, _loader(train, s.batch_size, True, seed), _loader(val, s.eval_batch_size),
              epochs=s.retrain_epochs, lr=s.lr, run_dir=run / "point", resume=resume, seed=seed,
              device=device, progress=False)
    point.eval()
    inn = to_interval(point, last=s.inn_last)
    resume = (run / "intervals" / "checkpoint.pt").exists()
    fit = fit_intervals(inn, _loader(train, s.inn_batch_size, True, seed + 1),
                        _loader(val, s.eval_batch_size), beta=s.inn_beta,
                        target_coverage=s.inn_target_coverage,
                        calibration_factor=s.inn_calibration_factor,
                        epochs=s.retrain_inn_epochs, lr=s.inn_lr, run_dir=run / "intervals",
                        resume=resume, seed=seed, device=device, progress=False)
    support_of = getattr(problem, "support", None)
    region = (lambda t: support_of(t)) if support_of is not None else (lambda t: None)
    # the band scaled to `interval_coverage` on the validation split (as for every method in
    # the study): widths at one coverage are comparable across levels, whatever the fit reached
    v_rec, v_lo, v_hi = _interval(inn, val.inputs, s.eval_batch_size, device)
    k = calibrate_scale(v_rec, v_lo, v_hi, val.targets, s.interval_coverage, region(val.targets))
    rec, lo, hi = _interval(inn, test.inputs, s.eval_batch_size, device)
    raw = band_scores(lo, hi, test.targets, s.interval_coverage, region(test.targets))
    cal = band_scores(*scale_band(rec, lo, hi, k), test.targets, s.interval_coverage,
                      region(test.targets))
    return {"level": level, "seed": replicate, "width": float(cal.width.nanmean()),
            "coverage": float(cal.coverage.nanmean()), "raw_width": float(raw.width.nanmean()),
            "raw_coverage": float(raw.coverage.nanmean()), "scale": k, "beta": fit.beta,
            "rmse": math.sqrt(float((rec - test.targets).double().square().mean()))}


def run_noise_protocol(problem, s, out: Path, device, journal=None,
                       point=None) -> Dict[str, object]:
    """Every (level, seed) fit and, per level, the mean and sd (over seeds) of each number.
    ``point``: the study's point network, the warm start when ``retrain_from == "study"``."""
    root = out / "stages" / STAGE_DIR
    levels = s.retrain_levels or s.noise_levels
    start = point if s.retrain_from == "study" else None
    if s.retrain_from == "study" and point is None:
        raise ValueError("retrain_from='study' needs the study's point network")
    rows: List[Dict[str, float]] = []
    for level in levels:
        for replicate in range(s.retrain_seeds):
            rows.append(_fit_one(problem, s, level, replicate, root, device, start))
            if journal is not None:
                journal(f"[noise protocol] level {level:g} seed {replicate}: width "
                        f"{rows[-1]['width']:.4g}, coverage {rows[-1]['coverage']:.3f}")
    summary = []
    for level in levels:
        mine = [r for r in rows if r["level"] == level]
        entry = {"level": level, "seeds": len(mine)}
        for key in ("width", "coverage", "raw_width", "raw_coverage", "rmse", "beta"):
            values = torch.tensor([r[key] for r in mine], dtype=torch.float64)
            entry[key] = float(values.mean())
            entry[f"{key}_sd"] = float(values.std()) if len(mine) > 1 else None
        summary.append(entry)
    support = "support" if getattr(problem, "support", None) is not None else "all pixels"
    return {"region": support, "start": s.retrain_from, "train_images": s.retrain_images,
            "epochs": s.retrain_epochs,
            "inn_epochs": s.retrain_inn_epochs, "runs": rows, "levels": summary}
