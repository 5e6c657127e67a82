"""A small trainer for the point network, for users (and the demo) without a trained model:
mean squared error, Adam on every trainable parameter, the same loop, progress, logging and
checkpoints as the interval fit."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Tuple

import torch
import torch.nn.functional as F

from .intervals import default_unpack
from .loop import (NONFINITE_TARGETS, TrainResult, check_targets, evaluate, nonfinite_targets,
                   run_training, upcast)

Tensor = torch.Tensor


def _check_prediction(pred, y: Tensor) -> None:
    if not isinstance(pred, Tensor):
        raise TypeError(f"fit_point trains a point network whose forward returns a tensor, got "
                        f"{type(pred).__name__} (interval models are fitted with fit_intervals)")
    if pred.shape != y.shape:
        raise ValueError(f"the model's output has shape {tuple(pred.shape)}, the target "
                         f"{tuple(y.shape)}")


def fit_point(model: torch.nn.Module, train_loader: Iterable,
              val_loader: Optional[Iterable] = None, *, epochs: int = 20, lr: float = 1e-3,
              unpack: Callable[[Any], Tuple[Tensor, Tensor]] = default_unpack, run_dir=None,
              resume=False, overwrite: bool = False, seed: Optional[int] = None, device=None,
              autocast=None, progress: bool = True) -> TrainResult:
    """Train ``model`` (a plain ``nn.Module``: input -> prediction) with MSE and Adam(lr) on all its
    parameters that require gradients, in train mode (dropout on). Logged per epoch:
    ``train_loss`` (MSE) and, with ``val_loader``, ``val_loss`` and ``val_mae``.

    Defaults: epochs 20, lr 1e-3 (the paper trained its U-Net 400 epochs at 7.5e-5 and its
    DnCNN 50 epochs at 1e-4). The other arguments as in :func:`inn_cuda.train.run_training`.
    """
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_fn(module, batch):
        x, y = unpack(batch)
        pred = module(x)
        _check_prediction(pred, y)
        return F.mse_loss(*upcast(pred, y))

    def metrics(module, batch):
        x, y = unpack(batch)
        pred = module(x)
        _check_prediction(pred, y)
        pred, y = upcast(pred, y)
        err = pred - y
        return {"loss": err.square().mean(), "mae": err.abs().mean(),
                NONFINITE_TARGETS: nonfinite_targets(y)}

    def validate(module):
        return check_targets(evaluate(module, val_loader, metrics, progress=progress,
                                      desc="val"), "val_loader")

    return run_training(model, loss_fn, params, train_loader, epochs=epochs, lr=lr,
                        validate=validate if val_loader is not None else None, kind="point",
                        run_dir=run_dir, resume=resume, overwrite=overwrite, seed=seed,
                        device=device, autocast=autocast, progress=progress, desc="point")
