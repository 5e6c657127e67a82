"""Fitting the interval offsets of a converted model (docs/method.md section 4).

Objective, means over all pixels and the batch, in float32 (or float64) whatever the compute
dtype:

    L = mean(relu(lo - y)^2 + relu(y - hi)^2) + beta * mean(hi - lo)

Adam on the offsets only (``inn_cuda.nn.offset_parameters``), every other weight frozen and
bit-for-bit unchanged, offsets projected to >= 0 (``inn_cuda.nn.project_``) after every step,
dropout off unless asked.

beta, three ways:

* a number: fixed;
* ``"adaptive"`` (the authors' rule): ``0.1 x`` the point network's mean absolute validation error,
  measured once before the first epoch;
* ``target_coverage=c``: calibration. beta starts from the number or the adaptive value and, after
  every epoch, moves on a log scale toward the beta whose intervals cover a fraction ``c`` of the
  validation targets: coverage above ``c + tolerance`` multiplies beta by ``factor`` (default 2;
  narrower intervals), below ``c - tolerance`` divides it; each time the coverage crosses the
  target the step (in log beta) halves, a bisection that keeps tracking the offsets as they move.
  beta is held while the coverage is within the tolerance, and also while it is still closing in
  on the target fast enough to get there in about two more epochs: Adam moves the offsets toward
  a new beta's equilibrium over several epochs, and stepping again before they settle
  overshoots. The result reports the coverage reached. The fit needs enough optimizer steps for
  the offsets to settle (hundreds on small tasks): with few steps per epoch raise ``epochs`` or
  ``lr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .. import nn as inn
from ..nn import Interval
from .loop import (NONFINITE_TARGETS, TrainResult, check_targets, evaluate, nonfinite_targets,
                   run_training, upcast)

Tensor = torch.Tensor

ADAPTIVE_FACTOR = 0.1  # beta = 0.1 x mean |f(x_val) - y_val| (the authors' rule)


# ----------------------------------------------------------------------------------- objective

def interval_loss(out: Interval, target: Tensor, beta: float,
                  support: Optional[Tensor] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The interval objective and its parts: ``hinge`` (mean squared distance of the target
    outside [lo, hi]), ``width`` (mean hi - lo) and ``coverage`` (fraction of target elements
    inside), scalars in float32 (float64 for float64 outputs) whatever the compute dtype.
    ``support`` (a bool mask shaped like the target) restricts the reported ``width`` and
    ``coverage`` (and so the calibration of beta) to the object; the objective itself still
    covers every element."""
    if not isinstance(out, Interval):
        raise TypeError(f"the interval model must return an inn_cuda.nn.Interval, got "
                        f"{type(out).__name__}")
    if out.lo.shape != target.shape:
        raise ValueError(f"output interval has shape {tuple(out.lo.shape)}, the target "
                         f"{tuple(target.shape)}")
    lo, hi, y = upcast(out.lo, out.hi, target)
    hinge = (F.relu(lo - y).square() + F.relu(y - hi).square()).mean()
    width = (hi - lo).mean()
    inside = ((y >= lo) & (y <= hi)).to(lo.dtype)
    parts = {"hinge": hinge, "width": width, "coverage": inside.mean()}
    if support is not None:
        if support.shape != target.shape or support.dtype != torch.bool:
            raise ValueError(f"support: expected a bool mask of shape {tuple(target.shape)}, got "
                             f"{support.dtype} {tuple(support.shape)}")
        # an empty support (a batch of background) reports nothing to calibrate on: NaN
        weight = support.to(lo.dtype)
        parts["width"] = ((hi - lo) * weight).sum() / weight.sum()
        parts["coverage"] = (inside * weight).sum() / weight.sum()
    return hinge + beta * width, parts


def _point_error(out: Interval, target: Tensor) -> Tensor:
    if out.point is None:
        raise ValueError("the interval model's output carries no point prediction (Interval."
                         "point is None); the adaptive beta rule needs it")
    point, y = upcast(out.point, target)
    return (point - y).abs().mean()


def default_unpack(batch) -> Tuple[Tensor, Tensor]:
    """(input, target) of a batch given as a tuple or list ``(x, y, ...)``."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(f"a batch must be (input, target, ...), got {type(batch).__name__}; pass "
                        f"unpack=... to fit_intervals to read other batch layouts")
    return batch[0], batch[1]


# ----------------------------------------------------------------------------------------- beta

class BetaSchedule:
    """The beta of the objective and its rule (see the module docstring); its state is saved in
    checkpoints."""

    def __init__(self, beta: Union[float, str], target_coverage: Optional[float],
                 factor: float, tolerance: float):
        if isinstance(beta, str):
            if beta != "adaptive":
                raise ValueError(f"beta must be a positive number or 'adaptive', got {beta!r}")
            self.value: Optional[float] = None
        elif isinstance(beta, (int, float)) and beta > 0 and math.isfinite(beta):
            self.value = float(beta)
        else:
            raise ValueError(f"beta must be a positive number or 'adaptive', got {beta!r}")
        if target_coverage is not None and not 0 < target_coverage < 1:
            raise ValueError(f"target_coverage must lie in (0, 1), got {target_coverage!r}")
        if not factor > 1:
            raise ValueError(f"calibration_factor must be > 1, got {factor!r}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"coverage_tolerance must lie in [0, 1), got {tolerance!r}")
        self.config = {"beta": beta, "target_coverage": target_coverage, "factor": factor,
                       "tolerance": tolerance}
        self.target = target_coverage
        self.tolerance = tolerance
        self.log_step = math.log(factor)
        self.direction = 0
        self.last_error: Optional[float] = None

    @property
    def adaptive(self) -> bool:
        return self.config["beta"] == "adaptive"

    def set_from_point_error(self, mae: float) -> None:
        if not mae > 0:
            raise ValueError(f"beta='adaptive' needs a point network with a non-zero error, but "
                             f"its mean absolute error is {mae}; pass a number as beta")
        self.value = ADAPTIVE_FACTOR * mae

    def update(self, coverage: float) -> None:
        """The calibration step after an epoch whose validation coverage was ``coverage``."""
        if self.target is None:
            return
        error = coverage - self.target
        previous, self.last_error = self.last_error, error
        if abs(error) <= self.tolerance:
            return
        if previous is not None and error * previous > 0:
            gain = abs(previous) - abs(error)
            if 0 < gain and abs(error) <= 2 * gain:  # closing in at a pace that arrives soon
                return
        direction = 1 if error > 0 else -1
        if direction == -self.direction:
            self.log_step /= 2
        self.direction = direction
        self.value *= math.exp(direction * self.log_step)

    def state_dict(self) -> Dict[str, Any]:
        return {"config": dict(self.config), "value": self.value, "log_step": self.log_step,
                "direction": self.direction, "last_error": self.last_error}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state is None or state.get("config") != self.config:
            raise ValueError(f"the checkpoint was written with beta settings "
                             f"{None if state is None else state.get('config')}, this run has "
                             f"{self.config}")
        self.value, self.log_step, self.direction, self.last_error = (
            state["value"], state["log_step"], state["direction"], state["last_error"])


# ------------------------------------------------------------------------------------- trainer

@dataclass
class IntervalFitResult(TrainResult):
    """A :class:`TrainResult` plus the fitted interval summary: ``beta`` used in the last epoch,
    the ``coverage`` and mean ``width`` measured after it (on the validation set, or the
    training epoch's running figures without one; ``coverage_on`` says which) and the
    ``target_coverage`` asked for."""

    beta: float = math.nan
    coverage: float = math.nan
    width: float = math.nan
    coverage_on: str = "val"
    target_coverage: Optional[float] = None


def _is_dropout(module: torch.nn.Module) -> bool:
    """torch's Dropout, Dropout1d/2d/3d, AlphaDropout and the interval layers' dropout."""
    return "dropout" in type(module).__name__.lower()


def _fit_mode(dropout: bool) -> Callable[[torch.nn.Module], None]:
    def set_mode(model: torch.nn.Module) -> None:
        model.eval()  # frozen BatchNorm statistics; dropout off ...
        if dropout:  # ... unless asked for
            for module in model.modules():
                if _is_dropout(module):
                    module.train()
    return set_mode


def fit_intervals(model: torch.nn.Module, train_loader: Iterable,
                  val_loader: Optional[Iterable] = None, *,
                  beta: Union[float, str] = "adaptive", target_coverage: Optional[float] = None,
                  epochs: int = 10, lr: float = 1e-3, dropout: bool = False,
                  calibration_factor: float = 2.0, coverage_tolerance: float = 0.01,
                  support: Optional[Callable[[Tensor], Tensor]] = None,
                  unpack: Callable[[Any], Tuple[Tensor, Tensor]] = default_unpack,
                  run_dir=None, resume=False, overwrite: bool = False,
                  seed: Optional[int] = None, device=None, autocast=None,
                  progress: bool = True) -> IntervalFitResult:
    """Fit the interval offsets of ``model`` (from :func:`inn_cuda.to_interval`, whose forward
    returns an :class:`~inn_cuda.nn.Interval` with the point prediction).

    Defaults (for the package's small image/1-D tasks; the paper's values in brackets):
    epochs 10 [CT 15, denoising 10], lr 1e-3 [1e-6 on full-size CT/BSDS data with thousands of
    steps per epoch], beta 'adaptive' = 0.1 x point MAE [fixed 1e-4 CT, 1e-3 denoising,
    0.002-0.01 1-D], no coverage target [none], dropout off [left on].

    beta / target_coverage / calibration_factor / coverage_tolerance: see the module docstring;
        'adaptive' and calibration measure on ``val_loader`` (adaptive falls back to
        ``train_loader`` when there is none; calibration requires one).
    support(target) -> bool mask: the object support of a target batch; the reported width and
        coverage, and so the calibration of beta, count only its elements (default: all).
    unpack(batch) -> (input, target): how to read a batch (default: ``(x, y, ...)``).
    The rest (run_dir, resume, overwrite, seed, device, autocast, progress) as in
    :func:`inn_cuda.train.run_training`; checkpoints also hold the beta state.
    """
    if target_coverage is not None and val_loader is None:
        raise ValueError("target_coverage needs a val_loader: calibrating beta on the training "
                         "data would report a coverage the model does not have on new data")
    schedule = BetaSchedule(beta, target_coverage, calibration_factor, coverage_tolerance)
    offsets = list(inn.offset_parameters(model))
    if not offsets:
        raise ValueError("the model has no interval offsets to fit; convert it with "
                         "inn_cuda.to_interval first")

    def mask(y):
        return None if support is None else support(y)

    def loss_fn(module, batch):
        x, y = unpack(batch)
        return interval_loss(module(x), y, schedule.value, mask(y))

    def metrics(module, batch):
        x, y = unpack(batch)
        out = module(x)
        loss, parts = interval_loss(out, y, schedule.value or 0.0, mask(y))
        if schedule.value is not None:  # still unknown when measuring for the adaptive rule
            parts["loss"] = loss
        return {**parts, "point_mae": _point_error(out, y),
                NONFINITE_TARGETS: nonfinite_targets(y)}

    measure_on = "val" if val_loader is not None else "train"

    def on_start():
        if not schedule.adaptive and val_loader is None:
            return {"beta": schedule.value}
        source = val_loader if val_loader is not None else train_loader
        desc = f"{measure_on} (start)"
        before = check_targets(evaluate(model, source, metrics, progress=progress, desc=desc),
                               f"{measure_on}_loader")
        if schedule.adaptive:
            schedule.set_from_point_error(before["point_mae"])
        before.pop("loss", None)
        return {"beta": schedule.value, **{f"{measure_on}_{k}": v for k, v in before.items()}}

    def validate(module):
        return check_targets(evaluate(module, val_loader, metrics, progress=progress,
                                      desc="val"), "val_loader")

    def on_epoch_end(record):
        used = schedule.value
        schedule.update(record[f"{measure_on}_coverage"])
        return {"beta": used}

    result = run_training(
        model, loss_fn, offsets, train_loader, epochs=epochs, lr=lr,
        validate=validate if val_loader is not None else None,
        after_step=lambda: inn.project_(model), on_start=on_start, on_epoch_end=on_epoch_end,
        state=schedule, set_mode=_fit_mode(dropout), kind="intervals", run_dir=run_dir,
        resume=resume, overwrite=overwrite, seed=seed, device=device, autocast=autocast,
        progress=progress, desc="intervals", show=("loss", "coverage", "width"))
    final = result.final
    return IntervalFitResult(
        **vars(result), beta=final.get("beta", schedule.value),
        coverage=final.get(f"{measure_on}_coverage", math.nan),
        width=final.get(f"{measure_on}_width", math.nan), coverage_on=measure_on,
        target_coverage=target_coverage)
