"""inn_cuda: Interval Neural Networks for PyTorch.

Fused CPU/CUDA kernels for exact interval layers (``interval_linear``, ``interval_conv1d``,
``interval_conv2d``, ``interval_conv_transpose2d``), see README.md.
"""

from ._version import __version__
from ._validation import check_bounds, set_check_bounds
from .ops import (interval_conv1d, interval_conv2d, interval_conv_transpose2d, interval_linear)
from ._backend import info
from ._algorithm import get_algorithm, path_counts, set_algorithm
from . import nn, train, uncertainty
from .matmul import interval_matmul
from .convert import ConversionError, describe, to_interval
from .nn.rules import register_equivalent

__all__ = [
    "ConversionError",
    "__version__",
    "check_bounds",
    "describe",
    "get_algorithm",
    "info",
    "interval_conv1d",
    "interval_conv2d",
    "interval_conv_transpose2d",
    "interval_linear",
    "interval_matmul",
    "nn",
    "path_counts",
    "register_equivalent",
    "set_algorithm",
    "set_check_bounds",
    "to_interval",
    "train",
    "uncertainty",
]
