"""Interval layers, the value type they exchange, and the helpers that train them.

Drop-in layers (each takes an :class:`Interval` or a tensor and returns an ``Interval``):
``IntervalLinear``, ``IntervalConv1d``, ``IntervalConv2d``, ``IntervalConvTranspose1d``,
``IntervalConvTranspose2d`` (frozen point weights plus trainable offsets), ``IntervalMonotone``
(any order-preserving module: ReLU, pooling, upsampling, flatten, ...), ``IntervalValley``
(exact GELU/SiLU/Mish/Hardswish), ``IntervalPReLU`` (any slope), ``IntervalBatchNorm``
(running statistics), ``IntervalLayerNorm``/``IntervalGroupNorm``/``IntervalInstanceNorm``
(sound bounds of normalisation by the input's statistics), ``IntervalSoftmax`` (exact),
``IntervalMultiheadAttention`` (interval projection weights) and ``IntervalDropout`` (one shared
mask).
:mod:`inn_cuda.nn.functional` holds the interval versions of torch functions;
:func:`inn_cuda.to_interval` converts a whole trained model.
"""

from . import functional
from .dropout import IntervalDropout
from .attention import IntervalMultiheadAttention, IntervalSoftmax
from .elementwise import IntervalMonotone, IntervalPReLU, IntervalValley
from .interval import Interval
from .layers import (IntervalConv1d, IntervalConv2d, IntervalConvTranspose1d,
                     IntervalConvTranspose2d, IntervalLinear)
from .norm import IntervalBatchNorm
from .normalization import IntervalGroupNorm, IntervalInstanceNorm, IntervalLayerNorm
from .parameters import (interval_layers, named_interval_layers, offset_parameters,
                         point_parameters, project_)

__all__ = [
    "Interval",
    "IntervalBatchNorm",
    "IntervalConv1d",
    "IntervalConv2d",
    "IntervalConvTranspose1d",
    "IntervalConvTranspose2d",
    "IntervalDropout",
    "IntervalGroupNorm",
    "IntervalInstanceNorm",
    "IntervalLayerNorm",
    "IntervalMultiheadAttention",
    "IntervalPReLU",
    "IntervalSoftmax",
    "IntervalLinear",
    "IntervalMonotone",
    "IntervalValley",
    "functional",
    "interval_layers",
    "named_interval_layers",
    "offset_parameters",
    "point_parameters",
    "project_",
]
