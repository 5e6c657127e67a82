"""Training: the point network (:func:`fit_point`), the interval offsets with a fixed, adaptive
or coverage-calibrated beta (:func:`fit_intervals`), and the one loop behind both that any other
objective can reuse (:func:`run_training`). Progress bars, JSON-lines metrics, atomic per-epoch
checkpoints with exact resume, seeds, CUDA autocast and torch.distributed (DDP) included."""

from .checkpoint import CheckpointError
from .intervals import BetaSchedule, IntervalFitResult, fit_intervals, interval_loss
from .loop import (NonFiniteError, TrainResult, evaluate, run_training, seed_everything,
                   upcast)
from .point import fit_point

__all__ = [
    "BetaSchedule",
    "CheckpointError",
    "IntervalFitResult",
    "NonFiniteError",
    "TrainResult",
    "evaluate",
    "fit_intervals",
    "fit_point",
    "interval_loss",
    "run_training",
    "seed_everything",
    "upcast",
]
