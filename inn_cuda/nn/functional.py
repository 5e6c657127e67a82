"""Interval versions of the torch functions and tensor methods a network calls.

Each function takes the arguments of the torch callable it is named after, where any tensor
argument may be an :class:`~inn_cuda.nn.Interval`, and returns an ``Interval`` (or a tuple of
them for ``chunk``/``split``/``unbind``). Called without any ``Interval`` argument it returns the
torch result unchanged. A plain tensor next to an interval is a constant (the degenerate
interval), and every result carries the point computed by the torch callable on the points when
all interval arguments carry one.

* **Order-preserving maps** (monotone non-decreasing activations, pooling, nearest/bilinear
  interpolation, reshapes, indexing, ``cat``, sums, ``add``, ``maximum``, ...) are applied to the
  lower bounds and to the upper bounds: :func:`apply_bounds`. Their in-place forms run out of
  place (a degenerate interval holds one tensor three times).
* **Exact special cases:** ``sub``/``neg`` (bounds cross), ``mul``/``div`` by constants (swap where
  negative) and ``mul`` of two intervals, ``abs``, the valley-shaped ``gelu``/``silu``/``mish``/
  ``hardswish`` and ``prelu`` (any slope), ``interpolate`` (linear modes NaN-free on infinite
  bounds), ``batch_norm`` by running statistics, ``dropout`` and ``stochastic_depth`` (one
  mask), and ``linear``/``conv*`` with point weights (the fused ops with a degenerate weight
  interval). Normalisation by the input's statistics is in :mod:`.normalization`, softmax,
  ``matmul`` and attention in :mod:`.attention`.
* **Shape queries** (``size``, ``dim``, ``numel``, ``shape``, ``dtype``, ...) read the lower bound.

The monotonicity conditions of parametrised maps (``leaky_relu`` with a negative slope,
``interpolate`` in bicubic mode, ...) are checked by :mod:`inn_cuda.nn.rules` when a model is
converted, and by the functions here when they are called.
"""

from __future__ import annotations

import functools
import inspect
import operator
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F

from .. import ops
from .dropout import interval_dropout, interval_stochastic_depth
from .elementwise import (GELU_ARGMIN, GELU_TANH_ARGMIN, HARDSWISH_ARGMIN, MISH_ARGMIN,
                          MONOTONE_INTERPOLATION, SILU_ARGMIN, abs_bounds, interpolate_bound,
                          prelu_bounds, valley_bounds)
from .interval import Interval

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------- machinery


def _find_proxy(value: Any) -> Optional[fx.Proxy]:
    if isinstance(value, fx.Proxy):
        return value
    if isinstance(value, (list, tuple)):
        return next((p for p in map(_find_proxy, value) if p is not None), None)
    if isinstance(value, dict):
        return _find_proxy(list(value.values()))
    return None


def graph_function(fn: Callable) -> Callable:
    """Marks a function that converted graphs call: a torch.fx tracer records it as one node
    instead of tracing into it (as when a pickled interval model is loaded: GraphModule re-traces
    its code)."""

    @functools.wraps(fn)
    def traceable(*args, **kwargs):
        proxy = _find_proxy((args, kwargs))
        if proxy is not None:
            return proxy.tracer.create_proxy("call_function", traceable, args, kwargs)
        return fn(*args, **kwargs)

    return traceable


def _pick(value: Any, which: int) -> Any:
    """``value`` with every Interval replaced by its lo (0), hi (1) or point (2)."""
    if isinstance(value, Interval):
        return value[which]
    if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        return type(value)(_pick(v, which) for v in value)
    if isinstance(value, dict):
        return {k: _pick(v, which) for k, v in value.items()}
    return value


def intervals_in(value: Any) -> List[Interval]:
    """Every Interval inside nested lists, tuples and dicts."""
    if isinstance(value, Interval):
        return [value]
    if isinstance(value, (list, tuple)):
        return [i for v in value for i in intervals_in(v)]
    if isinstance(value, dict):
        return [i for v in value.values() for i in intervals_in(v)]
    return []


def _zip(lo: Any, hi: Any, point: Any) -> Any:
    if isinstance(lo, Tensor):
        return Interval(lo, hi, point)
    if isinstance(lo, (list, tuple)):
        points = [None] * len(lo) if point is None else point
        return type(lo)(_zip(l, h, p) for l, h, p in zip(lo, hi, points))
    raise TypeError(f"an interval function returned {type(lo).__name__}, expected tensors")


def apply_bounds(fn: Callable, args: tuple, kwargs: Dict[str, Any]) -> Any:
    """``fn`` applied to the lower bounds, the upper bounds and the points of its interval
    arguments. Correct for ``fn`` monotone non-decreasing in every interval argument; one
    evaluation serves all three where the intervals are degenerate."""
    intervals = intervals_in((args, kwargs))
    if not intervals:
        return fn(*args, **kwargs)
    lo = fn(*_pick(args, 0), **_pick(kwargs, 0))
    hi = lo if all(i.hi is i.lo for i in intervals) else fn(*_pick(args, 1), **_pick(kwargs, 1))
    if any(i.point is None for i in intervals):
        point = None
    elif all(i.point is i.lo for i in intervals):
        point = lo
    else:
        point = fn(*_pick(args, 2), **_pick(kwargs, 2))
    return _zip(lo, hi, point)


def _argument(args: tuple, kwargs: Dict[str, Any], name: str, position: int, default: Any):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


#: name -> (args, kwargs) -> why this call is not order preserving, or None. Shared by the calls
#: below and by the conversion, which evaluates them on the constant arguments of a graph node.
CONDITIONS: Dict[str, Callable[[tuple, Dict[str, Any]], Optional[str]]] = {
    "leaky_relu": lambda a, k: None if _argument(a, k, "negative_slope", 1, 0.01) >= 0 else
    f"negative_slope {_argument(a, k, 'negative_slope', 1, 0.01)} < 0 is not monotone",
    "elu": lambda a, k: None if _argument(a, k, "alpha", 1, 1.0) >= 0 else
    f"alpha {_argument(a, k, 'alpha', 1, 1.0)} < 0 is not monotone",
    "threshold": lambda a, k: None if _argument(a, k, "value", 2, 0) <=
    _argument(a, k, "threshold", 1, 0) else "value > threshold is not monotone",
    "interpolate": lambda a, k: None if _argument(a, k, "mode", 3, "nearest") in
    MONOTONE_INTERPOLATION else f"mode {_argument(a, k, 'mode', 3, 'nearest')!r} has negative "
    f"weights; supported modes: {', '.join(MONOTONE_INTERPOLATION)}",
    **{f"max_pool{d}d": (lambda a, k: "return_indices=True returns indices"
                         if _argument(a, k, "return_indices", 6, False) else None)
       for d in (1, 2, 3)},
    **{f"adaptive_max_pool{d}d": (lambda a, k: "return_indices=True returns indices"
                                  if _argument(a, k, "return_indices", 2, False) else None)
       for d in (1, 2, 3)},
}


def _define(name: str, fn: Callable, doc: str) -> Callable:
    """A module-level interval function named ``name`` (so that converted graphs print and
    pickle it by name) applying ``fn`` bound-wise; an ``inplace`` argument is forced off and
    the order-preservation condition of ``name`` (if any) is checked."""
    try:
        signature: Optional[inspect.Signature] = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a Python signature have no inplace
        signature = None
    takes_inplace = signature is not None and "inplace" in signature.parameters
    condition = CONDITIONS.get(name)

    def interval_fn(*args, **kwargs):
        if takes_inplace:
            bound = signature.bind(*args, **kwargs)
            bound.arguments["inplace"] = False
            args, kwargs = bound.args, bound.kwargs
        if condition is not None and intervals_in((args, kwargs)):
            problem = condition(args, kwargs)
            if problem:
                raise ValueError(f"{name}: {problem}, so it has no bound-wise interval form")
        return apply_bounds(fn, args, kwargs)

    interval_fn.__name__ = interval_fn.__qualname__ = name
    interval_fn.__module__ = __name__
    interval_fn.__doc__ = doc
    globals()[name] = graph_function(interval_fn)
    return globals()[name]


def _method(name: str) -> Callable:
    return lambda self, *args, **kwargs: getattr(self, name)(*args, **kwargs)


def _reshape_view(t: Tensor, *shape) -> Tensor:
    """``view`` as ``reshape``: the same values, but the bounds (made by other kernels than the
    point) may be laid out so that a view of them does not exist. Nothing aliases them, since
    in-place ops are not converted."""
    if len(shape) == 1 and isinstance(shape[0], torch.dtype):
        raise TypeError("view(dtype) reinterprets bits, which has no interval counterpart")
    return t.reshape(*shape)


# --------------------------------------------------------- order-preserving (bound-wise) maps

#: name -> torch callable applied bound-wise: monotone non-decreasing in every tensor argument.
#: (Conditions such as a non-negative leaky_relu slope are in CONDITIONS.)
BOUNDWISE: Dict[str, Callable] = {
    # activations
    "relu": F.relu, "relu6": F.relu6, "leaky_relu": F.leaky_relu, "elu": F.elu, "selu": F.selu,
    "celu": F.celu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softplus": F.softplus,
    "hardtanh": F.hardtanh, "hardsigmoid": F.hardsigmoid, "logsigmoid": F.logsigmoid,
    "softsign": F.softsign, "tanhshrink": F.tanhshrink, "softshrink": F.softshrink,
    "hardshrink": F.hardshrink, "threshold": F.threshold, "exp": torch.exp,
    "clamp": torch.clamp, "maximum": torch.maximum, "minimum": torch.minimum,
    # pooling and resampling
    "max_pool1d": F.max_pool1d, "max_pool2d": F.max_pool2d, "max_pool3d": F.max_pool3d,
    "avg_pool1d": F.avg_pool1d, "avg_pool2d": F.avg_pool2d, "avg_pool3d": F.avg_pool3d,
    "adaptive_avg_pool1d": F.adaptive_avg_pool1d, "adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "adaptive_avg_pool3d": F.adaptive_avg_pool3d, "adaptive_max_pool1d": F.adaptive_max_pool1d,
    "adaptive_max_pool2d": F.adaptive_max_pool2d, "adaptive_max_pool3d": F.adaptive_max_pool3d,
    "pad": F.pad, "pixel_shuffle": F.pixel_shuffle,
    "pixel_unshuffle": F.pixel_unshuffle,
    # shapes, selection, joins, reductions (all order preserving)
    "flatten": torch.flatten, "unflatten": torch.unflatten, "reshape": torch.reshape,
    "permute": torch.permute, "transpose": torch.transpose, "t": torch.t,
    "movedim": torch.movedim, "squeeze": torch.squeeze, "unsqueeze": torch.unsqueeze,
    "clone": torch.clone, "detach": torch.detach, "narrow": torch.narrow, "flip": torch.flip,
    "roll": torch.roll, "tile": torch.tile, "getitem": operator.getitem, "cat": torch.cat,
    "stack": torch.stack, "chunk": torch.chunk, "split": torch.split, "unbind": torch.unbind,
    "sum": torch.sum, "mean": torch.mean, "amax": torch.amax, "amin": torch.amin,
}

#: tensor methods applied bound-wise, defined as ``tensor_<name>`` (their signatures differ from
#: the torch functions': ``x.permute(1, 0)`` against ``torch.permute(x, (1, 0))``); dtype and
#: device casts are order preserving too
BOUNDWISE_METHODS: Dict[str, Callable] = {
    **{name: _method(name) for name in (
        "relu", "sigmoid", "tanh", "exp", "clamp", "clip", "reshape", "reshape_as", "expand",
        "expand_as", "flatten", "unflatten", "permute", "transpose", "t", "movedim", "squeeze",
        "unsqueeze", "contiguous", "clone", "detach", "narrow", "flip", "roll", "repeat", "tile",
        "chunk", "split", "unbind", "sum", "mean", "amax", "amin", "to", "float", "double",
        "type_as")},
    "view": _reshape_view, "view_as": _method("reshape_as"),
}

for _name, _fn in BOUNDWISE.items():
    _define(_name, _fn, f"Interval ``{getattr(_fn, '__name__', _name)}``, applied bound-wise "
                        f"(an order-preserving map).")
for _name, _fn in BOUNDWISE_METHODS.items():
    _define(f"tensor_{_name}", _fn, f"Interval ``Tensor.{_name}``, applied bound-wise.")


# ------------------------------------------------------------------------------- arithmetic

@graph_function
def add(x, y, *, alpha=1):
    """``x + alpha * y``; exact for intervals (bounds cross where ``alpha < 0``)."""
    if not intervals_in((x, y)):
        return operator.add(x, y) if alpha == 1 else torch.add(x, y, alpha=alpha)
    if alpha == 1:
        return apply_bounds(operator.add, (x, y), {})
    if alpha < 0:  # x + alpha y = x + |alpha| (-y), rounded alike
        y, alpha = -y, -alpha
    return apply_bounds(torch.add, (x, y), {"alpha": alpha})


@graph_function
def sub(x, y, *, alpha=1):
    """``x - alpha * y``, exact: ``[x.lo - alpha y.hi, x.hi - alpha y.lo]`` for alpha >= 0."""
    if not intervals_in((x, y)):
        return operator.sub(x, y) if alpha == 1 else torch.sub(x, y, alpha=alpha)
    if alpha != 1:
        return add(x, y, alpha=-alpha)
    return x - y if isinstance(x, Interval) else y.__rsub__(x)


@graph_function
def rsub(x, y, *, alpha=1):
    """``y - alpha * x`` (``torch.rsub``)."""
    return sub(y, x, alpha=alpha)


@graph_function
def neg(x):
    """``-x``: the bounds swap."""
    return -x if isinstance(x, Interval) else torch.neg(x)


@graph_function
def mul(x, y):
    """``x * y`` for an interval and a constant (bounds swap where the constant is negative) or
    two intervals (exact: min and max of the four endpoint products)."""
    if isinstance(x, Interval):
        return x * y
    if isinstance(y, Interval):
        return y.__rmul__(x)
    return torch.mul(x, y)


@graph_function
def div(x, y, *, rounding_mode=None):
    """``x / y`` for an interval ``x`` and a constant ``y`` (bounds swap where ``y`` is
    negative). Dividing by an interval, or with a ``rounding_mode``, is not supported."""
    if isinstance(y, Interval):
        raise TypeError("div: dividing by an Interval is not supported (its reciprocal is "
                        "unbounded when it contains 0); divide by constants only")
    if not isinstance(x, Interval):
        return torch.div(x, y, rounding_mode=rounding_mode)
    if rounding_mode is not None:
        raise TypeError(f"div: rounding_mode={rounding_mode!r} is not supported for intervals")
    return x / y


@graph_function
def abs(x):  # noqa: A001  (named after torch.abs)
    """Exact ``|x|``."""
    return abs_bounds(x) if isinstance(x, Interval) else torch.abs(x)


# ---------------------------------------------------------------------- valley activations

@graph_function
def gelu(x, approximate: str = "none"):
    """Exact interval GELU (minimum at its single argmin)."""
    fn = lambda t: F.gelu(t, approximate=approximate)  # noqa: E731
    if not isinstance(x, Interval):
        return fn(x)
    return valley_bounds(fn, GELU_TANH_ARGMIN if approximate == "tanh" else GELU_ARGMIN, x)


@graph_function
def silu(x, inplace: bool = False):
    """Exact interval SiLU (x * sigmoid(x))."""
    return valley_bounds(F.silu, SILU_ARGMIN, x) if isinstance(x, Interval) else F.silu(x)


@graph_function
def mish(x, inplace: bool = False):
    """Exact interval Mish."""
    return valley_bounds(F.mish, MISH_ARGMIN, x) if isinstance(x, Interval) else F.mish(x)


@graph_function
def hardswish(x, inplace: bool = False):
    """Exact interval Hardswish."""
    if isinstance(x, Interval):
        return valley_bounds(F.hardswish, HARDSWISH_ARGMIN, x)
    return F.hardswish(x)


@graph_function
def prelu(x, weight):
    """Exact interval PReLU for slopes of either sign (a negative slope is a valley at 0)."""
    if isinstance(weight, Interval):
        raise TypeError("prelu: the slope must be a point tensor")
    if not isinstance(x, Interval):
        return F.prelu(x, weight)
    return prelu_bounds(lambda t: F.prelu(t, weight), x)


@graph_function
def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """``F.interpolate`` in a mode with non-negative weights, bound-wise; linear modes map
    infinite bounds without NaN (:func:`~inn_cuda.nn.elementwise.interpolate_bound`)."""
    fn = lambda t: F.interpolate(t, size, scale_factor, mode, align_corners,  # noqa: E731
                                 recompute_scale_factor, antialias)
    if not isinstance(x, Interval):
        return fn(x)
    problem = CONDITIONS["interpolate"]((x, size, scale_factor, mode), {})
    if problem:
        raise ValueError(f"interpolate: {problem}, so it has no bound-wise interval form")
    if mode in ("linear", "bilinear", "trilinear"):
        return x.map(lambda t: interpolate_bound(fn, t))
    return x.map(fn)


# ---------------------------------------------------------------- normalisation and dropout

@graph_function
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Eval-mode ``F.batch_norm`` of an interval with point statistics and affine parameters
    (per-channel scale of either sign: bounds swap where ``weight < 0``)."""
    if not isinstance(x, Interval):
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    if running_mean is None:
        raise ValueError("batch_norm: only batch norm with running statistics has an interval "
                         "counterpart; the point network is frozen, so an interval always uses "
                         "them (training=True as traced in train mode included)")
    if isinstance(weight, Interval) or isinstance(bias, Interval):
        raise TypeError("batch_norm: the affine parameters must be point tensors")
    y = x.map(lambda t: F.batch_norm(t, running_mean, running_var, weight, bias, False,
                                     momentum, eps))
    if weight is None or y.hi is y.lo:
        return y
    shape = [1] * y.lo.dim()
    shape[1] = -1
    negative = (weight < 0).reshape(shape)
    return Interval(torch.where(negative, y.hi, y.lo), torch.where(negative, y.lo, y.hi), y.point)


@graph_function
def dropout(x, p: float = 0.5, training: bool = True, inplace: bool = False):
    """``F.dropout`` with one mask shared by the point and both bounds."""
    return interval_dropout(x, p, training, 0)


@graph_function
def dropout1d(x, p: float = 0.5, training: bool = True, inplace: bool = False):
    """``F.dropout1d`` (channel dropout) with one mask shared by the point and both bounds."""
    return interval_dropout(x, p, training, 1)


@graph_function
def dropout2d(x, p: float = 0.5, training: bool = True, inplace: bool = False):
    """``F.dropout2d`` (channel dropout) with one mask shared by the point and both bounds."""
    return interval_dropout(x, p, training, 2)


@graph_function
def dropout3d(x, p: float = 0.5, training: bool = True, inplace: bool = False):
    """``F.dropout3d`` (channel dropout) with one mask shared by the point and both bounds."""
    return interval_dropout(x, p, training, 3)


@graph_function
def stochastic_depth(input, p: float, mode: str, training: bool = True):
    """``torchvision.ops.stochastic_depth`` (timm's ``drop_path``): identity in eval mode, else
    one per-sample (or per-batch) mask shared by the point and both bounds."""
    return interval_stochastic_depth(input, p, mode, training)


# --------------------------------------------------------------- linear maps with point weights

def _point_weights(op: str, weight, bias) -> None:
    if isinstance(weight, Interval) or isinstance(bias, Interval):
        raise TypeError(f"{op}: interval weights must live in an interval layer "
                        f"(inn_cuda.nn.Interval{op.title()}); here weight and bias must be "
                        f"point tensors")


def _with_point(op_bounds, point_fn, x: Interval) -> Interval:
    lo, hi = op_bounds
    return Interval(lo, hi, None if x.point is None else point_fn(x.point))


@graph_function
def linear(x, weight, bias=None, *, input_nonneg: bool = False):
    """``F.linear`` of an interval with point weights (the fused op, degenerate weights)."""
    if not isinstance(x, Interval):
        return F.linear(x, weight, bias)
    _point_weights("linear", weight, bias)
    return _with_point(ops.interval_linear(x.lo, x.hi, weight, weight, bias, bias,
                                           input_nonneg=input_nonneg),
                       lambda t: F.linear(t, weight, bias), x)


@graph_function
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           input_nonneg: bool = False):
    """``F.conv1d`` of an interval with point weights."""
    if not isinstance(x, Interval):
        return F.conv1d(x, weight, bias, stride, padding, dilation, groups)
    _point_weights("conv1d", weight, bias)
    return _with_point(ops.interval_conv1d(x.lo, x.hi, weight, weight, bias, bias, stride,
                                           padding, dilation, groups, input_nonneg=input_nonneg),
                       lambda t: F.conv1d(t, weight, bias, stride, padding, dilation, groups), x)


@graph_function
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           input_nonneg: bool = False):
    """``F.conv2d`` of an interval with point weights."""
    if not isinstance(x, Interval):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    _point_weights("conv2d", weight, bias)
    return _with_point(ops.interval_conv2d(x.lo, x.hi, weight, weight, bias, bias, stride,
                                           padding, dilation, groups, input_nonneg=input_nonneg),
                       lambda t: F.conv2d(t, weight, bias, stride, padding, dilation, groups), x)


@graph_function
def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, input_nonneg: bool = False):
    """``F.conv_transpose2d`` of an interval with point weights."""
    if not isinstance(x, Interval):
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups,
                                  dilation)
    _point_weights("conv_transpose2d", weight, bias)
    return _with_point(
        ops.interval_conv_transpose2d(x.lo, x.hi, weight, weight, bias, bias, stride, padding,
                                      output_padding, groups, dilation,
                                      input_nonneg=input_nonneg),
        lambda t: F.conv_transpose2d(t, weight, bias, stride, padding, output_padding, groups,
                                     dilation), x)


# ------------------------------------------------------------------------------ shape queries

#: attributes of a tensor that describe it rather than its values (read from the lower bound)
META_ATTRIBUTES = ("shape", "dtype", "device", "ndim", "is_cuda", "layout", "requires_grad")


@graph_function
def size(x, *dim):
    """``x.size(*dim)`` (of the lower bound)."""
    return (x.lo if isinstance(x, Interval) else x).size(*dim)


@graph_function
def dim(x):
    """``x.dim()``."""
    return (x.lo if isinstance(x, Interval) else x).dim()


@graph_function
def numel(x):
    """``x.numel()``."""
    return (x.lo if isinstance(x, Interval) else x).numel()


def _define_point_valued(name: str, fn: Callable) -> Callable:
    """A constant built from an interval's description (``zeros_like``, ``x.new_ones``...):
    ``fn`` applied to the lower bound, a point tensor."""

    def point_fn(x, *args, **kwargs):
        return fn(x.lo if isinstance(x, Interval) else x, *args, **kwargs)

    point_fn.__name__ = point_fn.__qualname__ = name
    point_fn.__module__ = __name__
    point_fn.__doc__ = f"``{name}`` of an interval: a point tensor shaped like it."
    globals()[name] = graph_function(point_fn)
    return globals()[name]


#: functions and methods that build a point tensor from an interval's shape, dtype and device
POINT_VALUED = {
    **{name: getattr(torch, name) for name in ("zeros_like", "ones_like", "full_like",
                                                "empty_like", "rand_like", "randn_like")},
    **{f"tensor_{name}": _method(name) for name in ("new_zeros", "new_ones", "new_full",
                                                     "new_empty", "new_tensor")},
}
for _name, _fn in POINT_VALUED.items():
    _define_point_valued(_name, _fn)


@graph_function
def getattr_meta(x, name: str):
    """``getattr(x, name)`` for a describing attribute (``shape``, ``dtype``, ``device``...)."""
    if isinstance(x, Interval):
        if name not in META_ATTRIBUTES:
            raise AttributeError(f"an Interval has no tensor attribute {name!r} (supported: "
                                 f"{', '.join(META_ATTRIBUTES)})")
        return getattr(x.lo, name)
    return getattr(x, name)
