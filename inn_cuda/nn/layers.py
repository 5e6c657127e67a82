"""Parametrised interval layers: a frozen trained layer plus trainable non-negative offsets.

For a point weight ``W`` and bias ``b`` (the convention of :mod:`.offsets`)::

    W_lo = W - weight_offset_lo,   W_hi = W + weight_offset_hi     (offsets >= 0, start at 0)
    b_lo = b - bias_offset_lo,     b_hi = b + bias_offset_hi

``W`` and ``b`` are frozen ``Parameter``s under the original names ``weight`` and ``bias``; a
layer's ``state_dict`` is that of the torch layer plus the four offsets. Only the offsets train.

Every layer takes an :class:`~inn_cuda.nn.Interval` (or a tensor, read as the degenerate interval
``[x, x]`` carrying ``x`` as its point) and returns an ``Interval`` whose bounds come from the
fused ops and whose point is the torch layer's own output on the input's point. A layer built with
``offsets=False`` has the degenerate weight interval ``[W, W]``: it passes intervals through and
maps a plain tensor exactly like the torch layer (the conversion uses it for layers that should
keep point weights but may receive intervals).

``input_nonneg`` is the caller's guarantee that ``lo >= 0`` at this layer's input; it selects the
ops' fast path (sign-split weights). :func:`inn_cuda.to_interval` sets it from sign tracking.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import ops
from .interval import Interval
from .offsets import _IntervalWeights, _frozen

Tensor = torch.Tensor
Pair = Tuple[Tensor, Tensor]


def _check_convertible(cls, module: nn.Module, equivalent_forward: bool) -> None:
    point_type = cls.point_type
    if not isinstance(module, point_type):
        raise TypeError(f"{cls.__name__}.from_module expects an nn.{point_type.__name__}, got "
                        f"{type(module).__name__}")
    if type(module).forward is not point_type.forward and not equivalent_forward:
        raise TypeError(f"{cls.__name__}.from_module: {type(module).__name__} overrides "
                        f"nn.{point_type.__name__}.forward, so its interval counterpart is "
                        f"unknown; build the interval layer by hand")
    if isinstance(module.weight, nn.parameter.UninitializedParameter):
        raise ValueError(f"{cls.__name__}.from_module: the lazy module has not been initialised; "
                         f"run one forward pass first")


class _IntervalLayer(_IntervalWeights):
    """Shared machinery; subclasses set ``point_type``, ``_config`` and the two forwards."""

    point_type: type = nn.Module
    widened = ("weight", "bias")
    _config: Tuple[str, ...] = ()

    def __init__(self, *args, offsets: bool = True, input_nonneg: bool = False, **kwargs):
        """Same arguments as the torch layer (randomly initialised like it), plus ``offsets``
        and ``input_nonneg`` (see the module docstring)."""
        self._init_from(self.point_type(*args, **kwargs), offsets=offsets,
                        input_nonneg=input_nonneg, copy_weights=False)

    @classmethod
    def from_module(cls, module: nn.Module, *, offsets: bool = True, input_nonneg: bool = False,
                    copy_weights: bool = False, equivalent_forward: bool = False):
        """The interval counterpart of a trained torch layer, with zero offsets.

        ``copy_weights=False`` shares the trained tensors' storage (nothing here ever writes
        them, but loading a ``state_dict`` into this layer does); ``True`` copies them.
        ``equivalent_forward=True`` accepts a subclass that overrides ``forward`` (the caller
        vouches that it computes what the base layer computes)."""
        _check_convertible(cls, module, equivalent_forward)
        layer = cls.__new__(cls)
        layer._init_from(module, offsets=offsets, input_nonneg=input_nonneg,
                         copy_weights=copy_weights)
        return layer

    def _init_from(self, module: nn.Module, *, offsets: bool, input_nonneg: bool,
                   copy_weights: bool) -> None:
        nn.Module.__init__(self)
        for name in self._config:
            setattr(self, name, getattr(module, name))
        self.weight = _frozen(module.weight, copy_weights)
        self.bias = None if module.bias is None else _frozen(module.bias, copy_weights)
        self._register_offsets(offsets)
        self.input_nonneg = bool(input_nonneg)
        self.train(module.training)

    def weight_bounds(self) -> Pair:
        return self.bounds("weight")

    def bias_bounds(self) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        return self.bounds("bias")

    # --------------------------------------------------------------------------------- forward

    def forward(self, x: Union[Interval, Tensor], *extra) -> Union[Interval, Tensor]:
        if not isinstance(x, Interval):
            if not self.has_offsets:
                return self.point_forward(x, *extra)
            x = Interval.from_point(x)
        w_lo, w_hi = self.weight_bounds()
        b_lo, b_hi = self.bias_bounds()
        lo, hi = self.interval_forward(x.lo, x.hi, w_lo, w_hi, b_lo, b_hi, *extra)
        point = None if x.point is None else self.point_forward(x.point, *extra)
        return Interval(lo, hi, point)

    def point_forward(self, x: Tensor, *extra) -> Tensor:
        raise NotImplementedError

    def interval_forward(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, *extra) -> Pair:
        raise NotImplementedError

    def extra_repr(self) -> str:
        config = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._config)
        return (f"{config}, bias={self.bias is not None}, offsets={self.has_offsets}, "
                f"input_nonneg={self.input_nonneg}")


class IntervalLinear(_IntervalLayer):
    """Interval ``nn.Linear``."""

    point_type = nn.Linear
    _config = ("in_features", "out_features")

    def point_forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def interval_forward(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi) -> Pair:
        return ops.interval_linear(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi,
                                   input_nonneg=self.input_nonneg)


def _padding_for_pad(padding: Union[str, Sequence[int]], kernel: Sequence[int],
                     dilation: Sequence[int]) -> list:
    """The explicit ``F.pad`` list (last dim first) of a conv's padding, as torch's conv layers
    compute it for a non-zero ``padding_mode`` ('same': the odd remainder goes right)."""
    pads = []
    for dim in reversed(range(len(kernel))):
        if padding == "valid":
            left = right = 0
        elif padding == "same":
            total = dilation[dim] * (kernel[dim] - 1)
            left, right = total // 2, total - total // 2
        else:
            left = right = padding[dim]
        pads += [left, right]
    return pads


class _IntervalConvNd(_IntervalLayer):
    _config = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
               "groups", "padding_mode")

    def _padded(self, x: Tensor) -> Tuple[Tensor, Union[str, Tuple[int, ...]]]:
        """The input and padding handed to the zero-padding convolution (torch's conv layers pad
        explicitly for any other ``padding_mode``)."""
        if self.padding_mode == "zeros":
            return x, self.padding
        pads = _padding_for_pad(self.padding, self.kernel_size, self.dilation)
        return F.pad(x, pads, mode=self.padding_mode), (0,) * len(self.kernel_size)

    def point_forward(self, x: Tensor) -> Tensor:
        return self._point_op(*self._padded(x))

    def interval_forward(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi) -> Pair:
        padded_lo, padding = self._padded(x_lo)
        padded_hi = padded_lo if x_hi is x_lo else self._padded(x_hi)[0]
        return self._interval_op(padded_lo, padded_hi, w_lo, w_hi, b_lo, b_hi, padding)


class IntervalConv1d(_IntervalConvNd):
    """Interval ``nn.Conv1d``."""

    point_type = nn.Conv1d

    def _point_op(self, x, padding):
        return F.conv1d(x, self.weight, self.bias, self.stride, padding, self.dilation,
                        self.groups)

    def _interval_op(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, padding):
        return ops.interval_conv1d(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, self.stride, padding,
                                   self.dilation, self.groups, input_nonneg=self.input_nonneg)


class IntervalConv2d(_IntervalConvNd):
    """Interval ``nn.Conv2d``."""

    point_type = nn.Conv2d

    def _point_op(self, x, padding):
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation,
                        self.groups)

    def _interval_op(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, padding):
        return ops.interval_conv2d(x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, self.stride, padding,
                                   self.dilation, self.groups, input_nonneg=self.input_nonneg)


class _IntervalConvTransposeNd(_IntervalLayer):
    _config = ("in_channels", "out_channels", "kernel_size", "stride", "padding",
               "output_padding", "dilation", "groups")

    def _output_padding(self, x: Tensor, output_size) -> Tuple[int, ...]:
        """torch's rule: ``output_size`` (spatial, or with batch and channel dims) fixes the
        output padding, which must lie in [0, max(stride, dilation))."""
        if output_size is None:
            return self.output_padding
        dims = len(self.kernel_size)
        size = list(output_size)
        if len(size) == dims + 2:
            size = size[2:]
        if len(size) != dims:
            raise ValueError(f"{type(self).__name__}: output_size must have {dims} or "
                             f"{dims + 2} entries, got {output_size!r}")
        padding = []
        for d in range(dims):
            smallest = ((x.shape[x.dim() - dims + d] - 1) * self.stride[d] - 2 * self.padding[d]
                        + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            extra = int(size[d]) - smallest
            if not 0 <= extra < max(self.stride[d], self.dilation[d]):
                raise ValueError(f"{type(self).__name__}: requested output size {output_size!r} "
                                 f"is not reachable from input {tuple(x.shape)} (dim {d} allows "
                                 f"{smallest} to "
                                 f"{smallest + max(self.stride[d], self.dilation[d]) - 1})")
            padding.append(extra)
        return tuple(padding)

    def forward(self, x, output_size=None):
        return super().forward(x, output_size)


class IntervalConvTranspose2d(_IntervalConvTransposeNd):
    """Interval ``nn.ConvTranspose2d`` (``forward(x, output_size=None)`` like torch's)."""

    point_type = nn.ConvTranspose2d

    def point_forward(self, x: Tensor, output_size=None) -> Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(x, output_size), self.groups,
                                  self.dilation)

    def interval_forward(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, output_size=None) -> Pair:
        return ops.interval_conv_transpose2d(
            x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, self.stride, self.padding,
            self._output_padding(x_lo, output_size), self.groups, self.dilation,
            input_nonneg=self.input_nonneg)


class IntervalConvTranspose1d(_IntervalConvTransposeNd):
    """Interval ``nn.ConvTranspose1d``, computed by the 2-D kernels on a height-1 image."""

    point_type = nn.ConvTranspose1d

    def point_forward(self, x: Tensor, output_size=None) -> Tensor:
        return F.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(x, output_size), self.groups,
                                  self.dilation)

    def interval_forward(self, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, output_size=None) -> Pair:
        (output_padding,) = self._output_padding(x_lo, output_size)
        if x_lo.dim() != 3:
            raise ValueError(f"IntervalConvTranspose1d: input must have 3 dims (N, C, L), got "
                             f"shape {tuple(x_lo.shape)}")
        lo, hi = ops.interval_conv_transpose2d(
            x_lo.unsqueeze(2), x_hi.unsqueeze(2), w_lo.unsqueeze(2), w_hi.unsqueeze(2), b_lo,
            b_hi, (1, self.stride[0]), (0, self.padding[0]), (0, output_padding), self.groups,
            (1, self.dilation[0]), input_nonneg=self.input_nonneg)
        return lo.squeeze(2), hi.squeeze(2)


PARAMETRISED_LAYERS = (IntervalLinear, IntervalConv1d, IntervalConv2d, IntervalConvTranspose1d,
                       IntervalConvTranspose2d)
