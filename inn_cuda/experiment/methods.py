"""The three uncertainty methods and two uncertainty-free control maps behind one interface:
each maps a batch of network inputs to a :class:`Prediction` (reconstruction, lower and upper
bound, uncertainty map).

* INN: the interval model's point output, ``[lo, hi]``, uncertainty ``hi - lo``;
* MCDROP: the point network's (eval-mode) reconstruction, uncertainty = the std over T dropout
  passes; ``lo, hi`` = the 10 % and 90 % quantiles of the passes (widened to contain ``rec``),
  so the passes' skew around the reconstruction gives MC dropout a direction too;
* PROBOUT: the fine-tuned network's mean ``mu``, uncertainty ``exp(s / 2)``, ``mu -+ sigma``;
* EDGE and INTENSITY (controls, no uncertainty model): the point network's reconstruction, its
  Sobel edge magnitude or its value as the "uncertainty". A method that ranks errors or finds a
  changed region no better than these has shown nothing beyond where the image has structure.

INN, MCDROP and the controls explain the same reconstruction (the point network's); PROBOUT
explains its own.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from ..baselines import mc_dropout, probout_uncertainty
from ..tasks.filters import sobel_magnitude

MC_QUANTILES = (0.1, 0.9)  # MCDROP's directional band


class Prediction(NamedTuple):
    rec: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    uncertainty: torch.Tensor

    def cpu(self) -> "Prediction":
        return Prediction(*(t.detach().float().cpu() for t in self))


class Method(NamedTuple):
    name: str
    predict: Callable[[torch.Tensor], Prediction]  # a batch on the device -> Prediction
    symmetric: bool  # lo, hi symmetric about rec: no direction information
    has_interval: bool  # lo, hi form a trained interval (coverage and width are meaningful)
    control: bool = False  # an uncertainty-free control map, not an uncertainty method


def inn_method(interval_model: nn.Module) -> Method:
    interval_model.eval()

    @torch.no_grad()
    def predict(x):
        out = interval_model(x)
        return Prediction(out.point, out.lo, out.hi, out.hi - out.lo)

    return Method("INN", predict, symmetric=False, has_interval=True)


def mc_dropout_method(point_model: nn.Module, passes: int, seed: int) -> Method:
    @torch.no_grad()
    def predict(x):
        point_model.eval()
        rec = point_model(x)
        result = mc_dropout(point_model, x, passes, seed=seed, quantiles=MC_QUANTILES)
        low, high = result.quantiles
        return Prediction(rec, torch.minimum(low, rec), torch.maximum(high, rec), result.std)

    return Method("MCDROP", predict, symmetric=False, has_interval=False)


def probout_method(probout_model: nn.Module) -> Method:
    probout_model.eval()

    @torch.no_grad()
    def predict(x):
        mu, sigma = probout_uncertainty(probout_model(x))
        return Prediction(mu, mu - sigma, mu + sigma, sigma)

    return Method("PROBOUT", predict, symmetric=True, has_interval=False)


def control_methods(point_model: nn.Module) -> list:
    """EDGE and INTENSITY: the point network's reconstruction ``rec`` with ``lo = hi = rec`` and
    the Sobel edge magnitude of ``rec`` or ``rec`` itself as the map."""
    def control(name, of):
        @torch.no_grad()
        def predict(x):
            point_model.eval()
            rec = point_model(x)
            return Prediction(rec, rec, rec, of(rec))
        return Method(name, predict, symmetric=True, has_interval=False, control=True)

    return [control("EDGE", sobel_magnitude), control("INTENSITY", lambda rec: rec)]


def predict_all(method: Method, inputs: torch.Tensor, batch_size: int,
                device: torch.device) -> Prediction:
    """``method`` over ``inputs`` (CPU) in batches; the result on the CPU in float32."""
    parts = [method.predict(inputs[i:i + batch_size].to(device)).cpu()
             for i in range(0, inputs.shape[0], batch_size)]
    return Prediction(*(torch.cat(p) for p in zip(*parts)))
