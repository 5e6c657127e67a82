"""What :func:`inn_cuda.to_interval` converts, and into what.

Three tables map what a traced ``torch.fx`` graph calls to its interval counterpart:

* :data:`MODULE_RULES`: torch modules (fx leaves) -> interval modules;
* :data:`FUNCTION_RULES`: functions (``F.relu``, ``torch.cat``, ``operator.add``, ...) and
  :data:`METHOD_RULES`: tensor methods (``x.view``, ``x.relu()``) -> :mod:`.functional`.

Each rule also states how the sign of its output follows from the signs of its inputs (sign
tracking: a value is known non-negative when its lower bound is ``>= 0`` for every input; the
first parametrised layer fed by such a value takes the fused ops' ``input_nonneg`` fast path).
A sign rule is ``sign(args, kwargs, nonneg) -> bool`` where ``nonneg(value)`` tells whether an
argument (a graph value, a constant, or a list of them) is known non-negative.
"""

from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import functional as IF
from .dropout import IntervalDropout
from . import attention as IA
from . import normalization as IN
from .attention import IntervalMultiheadAttention, IntervalSoftmax
from .elementwise import IntervalMonotone, IntervalPReLU, IntervalValley, monotonicity_problem
from .layers import (IntervalConv1d, IntervalConv2d, IntervalConvTranspose1d,
                     IntervalConvTranspose2d, IntervalLinear)
from .norm import IntervalBatchNorm
from .normalization import IntervalGroupNorm, IntervalInstanceNorm, IntervalLayerNorm

SignRule = Callable[[tuple, Dict[str, Any], Callable[[Any], bool]], bool]


def ALWAYS(args, kwargs, nonneg) -> bool:
    return True


def NEVER(args, kwargs, nonneg) -> bool:
    return False


def FIRST(args, kwargs, nonneg) -> bool:
    """Non-negative where the first argument is (order-preserving maps fixing 0)."""
    return nonneg(args[0])


def ALL_ARGS(args, kwargs, nonneg) -> bool:
    """Non-negative where every positional argument is (add, cat, maximum, mul, ...)."""
    return all(nonneg(a) for a in args)


def _kwarg(args, kwargs, name, position, default):
    return kwargs.get(name, args[position] if len(args) > position else default)


def _add_sign(args, kwargs, nonneg) -> bool:
    alpha = kwargs.get("alpha", 1)
    return nonneg(args[0]) and nonneg(args[1]) and isinstance(alpha, Real) and alpha >= 0


def clamp_nonneg(low_nonneg: bool, high, high_nonneg: bool, input_nonneg: bool) -> bool:
    """``min(max(x, low), high)`` is >= 0 iff ``high`` is absent or >= 0 (else every output is
    ``<= high < 0``, torch's result for ``low > high`` included) and ``max(x, low) >= 0``, i.e.
    ``low >= 0`` or ``x >= 0``."""
    return (high is None or high_nonneg) and (low_nonneg or input_nonneg)


def _clamp_sign(args, kwargs, nonneg) -> bool:
    low = _kwarg(args, kwargs, "min", 1, None)
    high = _kwarg(args, kwargs, "max", 2, None)
    return clamp_nonneg(low is not None and nonneg(low), high, high is not None and nonneg(high),
                        nonneg(args[0]))


def _hardtanh_sign(args, kwargs, nonneg) -> bool:
    low = _kwarg(args, kwargs, "min_val", 1, -1.0)
    high = _kwarg(args, kwargs, "max_val", 2, 1.0)
    return clamp_nonneg(nonneg(low), high, nonneg(high), nonneg(args[0]))


def _threshold_sign(args, kwargs, nonneg) -> bool:
    limit = _kwarg(args, kwargs, "threshold", 1, 0.0)
    value = _kwarg(args, kwargs, "value", 2, 0.0)
    return value >= 0 and (limit >= 0 or nonneg(args[0]))


def _softplus_sign(args, kwargs, nonneg) -> bool:
    return _kwarg(args, kwargs, "beta", 1, 1.0) > 0  # a negative beta flips the sign


def _full_sign(position: int) -> SignRule:
    def sign(args, kwargs, nonneg) -> bool:
        value = _kwarg(args, kwargs, "fill_value", position, None)
        return isinstance(value, Real) and value >= 0
    return sign


def _pad_sign(args, kwargs, nonneg) -> bool:
    mode = _kwarg(args, kwargs, "mode", 2, "constant")
    value = _kwarg(args, kwargs, "value", 3, None)
    return nonneg(args[0]) and (mode != "constant" or value is None or value >= 0)


# --------------------------------------------------------------------------------- functions

@dataclass(frozen=True)
class FunctionRule:
    """``impl``: the interval function; ``sign``: the sign rule; ``result``: "interval", a
    tuple of them ("intervals") or a point value derived from an interval's description such as
    its size or ``zeros_like`` ("meta"); ``point_args``:
    (position, name) of arguments that must be point values; ``takes_input_nonneg``: the
    conversion passes the input's sign as ``input_nonneg``."""

    impl: Callable
    sign: SignRule = FIRST
    result: str = "interval"
    point_args: Tuple[Tuple[int, str], ...] = ()
    takes_input_nonneg: bool = False


_NONNEG_OUTPUT = {"relu", "relu6", "sigmoid", "hardsigmoid", "exp"}
_SIGN_RULES: Dict[str, SignRule] = {
    # x - tanh(x) >= 0 holds exactly, but not after rounding for tiny x (tanh is not correctly
    # rounded), and a wrong "non-negative" claim would be unsound
    "logsigmoid": NEVER, "tanhshrink": NEVER, "softplus": _softplus_sign, "clamp": _clamp_sign,
    "hardtanh": _hardtanh_sign, "threshold": _threshold_sign, "pad": _pad_sign,
    "maximum": ALL_ARGS, "minimum": ALL_ARGS,
}
_MULTI_RESULT = {"chunk", "split", "unbind"}
_POINT_ARGS = {"prelu": ((1, "weight"),), "getitem": ((1, "index"),)}


def _boundwise_rule(name: str, impl: str = "") -> FunctionRule:
    sign = ALWAYS if name in _NONNEG_OUTPUT else _SIGN_RULES.get(name, FIRST)
    return FunctionRule(getattr(IF, impl or name), sign,
                        "intervals" if name in _MULTI_RESULT else "interval",
                        point_args=_POINT_ARGS.get(name, ()))


_LINEAR_MAP = dict(sign=NEVER, point_args=((1, "weight"), (2, "bias")), takes_input_nonneg=True)
_ARITHMETIC = {
    "add": FunctionRule(IF.add, _add_sign), "sub": FunctionRule(IF.sub, NEVER),
    "rsub": FunctionRule(IF.rsub, NEVER), "neg": FunctionRule(IF.neg, NEVER),
    "mul": FunctionRule(IF.mul, ALL_ARGS),
    "div": FunctionRule(IF.div, ALL_ARGS, point_args=((1, "other"),)),
    "abs": FunctionRule(IF.abs, ALWAYS),
}
_META = FunctionRule(IF.size, NEVER, "meta")

_F_BOUNDWISE = (
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "softplus", "hardtanh", "hardsigmoid",
    "logsigmoid", "softsign", "tanhshrink", "softshrink", "hardshrink", "threshold", "prelu",
    "sigmoid", "tanh", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate", "pad",
    "pixel_shuffle", "pixel_unshuffle")
_TORCH_BOUNDWISE = (
    "relu", "selu", "celu", "sigmoid", "tanh", "exp", "clamp", "maximum", "minimum", "prelu",
    "flatten", "unflatten", "reshape", "permute", "transpose", "t", "movedim", "squeeze",
    "unsqueeze", "clone", "detach", "narrow", "flip", "roll", "tile", "cat", "stack", "chunk",
    "split", "unbind", "sum", "mean", "amax", "amin")
_DISPLAYED: Tuple[Tuple[str, Callable, FunctionRule], ...] = (
    *((f"F.{name}", getattr(F, name), _boundwise_rule(name)) for name in _F_BOUNDWISE),
    *((f"torch.{name}", getattr(torch, name), _boundwise_rule(name)) for name in _TORCH_BOUNDWISE),
    ("torch.clip", torch.clip, _boundwise_rule("clamp")),
    ("torch.concat", torch.concat, _boundwise_rule("cat")),
    ("torch.concatenate", torch.concatenate, _boundwise_rule("cat")),
    ("operator.getitem", operator.getitem, _boundwise_rule("getitem")),
    ("F.gelu", F.gelu, FunctionRule(IF.gelu)), ("F.silu", F.silu, FunctionRule(IF.silu)),
    ("F.mish", F.mish, FunctionRule(IF.mish)),
    ("F.hardswish", F.hardswish, FunctionRule(IF.hardswish)),
    ("operator.add", operator.add, _ARITHMETIC["add"]),
    ("torch.add", torch.add, _ARITHMETIC["add"]),
    ("operator.sub", operator.sub, _ARITHMETIC["sub"]),
    ("torch.sub", torch.sub, _ARITHMETIC["sub"]),
    ("torch.rsub", torch.rsub, _ARITHMETIC["rsub"]),
    ("operator.neg", operator.neg, _ARITHMETIC["neg"]),
    ("torch.neg", torch.neg, _ARITHMETIC["neg"]),
    ("operator.mul", operator.mul, _ARITHMETIC["mul"]),
    ("torch.mul", torch.mul, _ARITHMETIC["mul"]),
    ("operator.truediv", operator.truediv, _ARITHMETIC["div"]),
    ("torch.div", torch.div, _ARITHMETIC["div"]),
    ("torch.true_divide", torch.true_divide, _ARITHMETIC["div"]),
    ("torch.abs", torch.abs, _ARITHMETIC["abs"]),
    ("operator.abs", operator.abs, _ARITHMETIC["abs"]),
    ("F.batch_norm", F.batch_norm,
     FunctionRule(IF.batch_norm, NEVER, point_args=((1, "running_mean"), (2, "running_var"),
                                                    (3, "weight"), (4, "bias")))),
    ("F.layer_norm", F.layer_norm,
     FunctionRule(IN.layer_norm, NEVER, point_args=((2, "weight"), (3, "bias")))),
    ("F.group_norm", F.group_norm,
     FunctionRule(IN.group_norm, NEVER, point_args=((2, "weight"), (3, "bias")))),
    ("F.instance_norm", F.instance_norm,
     FunctionRule(IN.instance_norm, NEVER, point_args=(
         (1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias")))),
    ("F.softmax", F.softmax, FunctionRule(IA.softmax, ALWAYS)),
    ("torch.softmax", torch.softmax, FunctionRule(IA.softmax, ALWAYS)),
    ("torch.matmul", torch.matmul, FunctionRule(IA.matmul, NEVER)),
    ("operator.matmul", operator.matmul, FunctionRule(IA.matmul, NEVER)),
    ("torch.bmm", torch.bmm, FunctionRule(IA.matmul, NEVER)),
    ("F.scaled_dot_product_attention", F.scaled_dot_product_attention,
     FunctionRule(IA.scaled_dot_product_attention, NEVER, point_args=((3, "attn_mask"),))),
    ("F.dropout", F.dropout, FunctionRule(IF.dropout)),
    ("F.dropout1d", F.dropout1d, FunctionRule(IF.dropout1d)),
    ("F.dropout2d", F.dropout2d, FunctionRule(IF.dropout2d)),
    ("F.dropout3d", F.dropout3d, FunctionRule(IF.dropout3d)),
    ("F.linear", F.linear, FunctionRule(IF.linear, **_LINEAR_MAP)),
    ("F.conv1d", F.conv1d, FunctionRule(IF.conv1d, **_LINEAR_MAP)),
    ("F.conv2d", F.conv2d, FunctionRule(IF.conv2d, **_LINEAR_MAP)),
    ("F.conv_transpose2d", F.conv_transpose2d, FunctionRule(IF.conv_transpose2d, **_LINEAR_MAP)),
    ("getattr (shape, dtype, device, ...)", getattr, FunctionRule(IF.getattr_meta, NEVER, "meta")),
    *((f"torch.{name}", getattr(torch, name), FunctionRule(getattr(IF, name), sign, "meta"))
      for name, sign in (("zeros_like", ALWAYS), ("ones_like", ALWAYS), ("rand_like", ALWAYS),
                         ("full_like", _full_sign(1)), ("empty_like", NEVER),
                         ("randn_like", NEVER))),
)

#: function object -> rule (``F.relu`` and ``torch.relu`` share one)
FUNCTION_RULES: Dict[Callable, FunctionRule] = {fn: rule for _, fn, rule in _DISPLAYED}
#: function object -> the name error messages use
FUNCTION_NAMES: Dict[Callable, str] = {}
for _display, _fn, _ in _DISPLAYED:
    FUNCTION_NAMES.setdefault(_fn, _display)

#: functions of optional libraries, matched by (module, name) without importing them
NAMED_FUNCTION_RULES: Dict[Tuple[str, str], FunctionRule] = {
    ("torchvision.ops.stochastic_depth", "stochastic_depth"): FunctionRule(IF.stochastic_depth),
}
for (_module, _name), _rule in NAMED_FUNCTION_RULES.items():
    FUNCTION_NAMES.setdefault(_rule.impl, f"{_module}.{_name}")


def function_rule(fn: Callable) -> Optional[FunctionRule]:
    """The rule of a function a graph calls, None where there is none."""
    try:
        rule = FUNCTION_RULES.get(fn)
    except TypeError:  # an unhashable callable
        return None
    if rule is None:
        key = (getattr(fn, "__module__", None), getattr(fn, "__name__", None))
        rule = NAMED_FUNCTION_RULES.get(key)
    return rule


#: tensor method name -> rule
METHOD_RULES: Dict[str, FunctionRule] = {
    "softmax": FunctionRule(IA.softmax, ALWAYS),
    "matmul": FunctionRule(IA.matmul, NEVER), "bmm": FunctionRule(IA.matmul, NEVER),
    **{name: _boundwise_rule("clamp" if name == "clip" else name, f"tensor_{name}")
       for name in IF.BOUNDWISE_METHODS},
    **_ARITHMETIC,
    "size": _META, "dim": FunctionRule(IF.dim, NEVER, "meta"),
    "numel": FunctionRule(IF.numel, NEVER, "meta"),
    **{name: FunctionRule(getattr(IF, f"tensor_{name}"), sign, "meta")
       for name, sign in (("new_zeros", ALWAYS), ("new_ones", ALWAYS), ("new_full", _full_sign(2)),
                          ("new_empty", NEVER), ("new_tensor", NEVER))},
}

# ----------------------------------------------------------------------------------- modules


@dataclass(frozen=True)
class ModuleRule:
    """``convert(module, offsets)`` builds the interval module (``offsets`` only matters for
    parametrised layers); ``sign(module, input_nonneg)`` is its output's sign; ``inputs``: how
    many leading positional arguments are its interval inputs (all must be known
    non-negative for a parametrised layer's fast path: MultiheadAttention's query, key and
    value)."""

    types: Tuple[type, ...]
    convert: Callable[[nn.Module, bool], nn.Module]
    sign: Callable[[nn.Module, bool], bool]
    parametrised: bool = False
    result: str = "interval"
    inputs: int = 1

    def matches(self, module: nn.Module) -> bool:
        """An instance of one of the types that keeps its forward (a subclass that overrides
        forward computes something else), or whose forward is equivalent to the base's
        (:func:`register_equivalent`, or found equivalent by :func:`_traces_like_base`)."""
        if not isinstance(module, self.types):
            return False
        if type(module).forward in {t.forward for t in self.types}:
            return True
        base = EQUIVALENTS.get(type(module))
        if base is None and self.parametrised:
            base = _traces_like_base(module)
        return base is not None and issubclass(base, self.types)


#: subclass -> the supported base class whose forward its forward is equivalent to
EQUIVALENTS: Dict[type, type] = {}
_TRACED_EQUIVALENCE: "weakref.WeakKeyDictionary[nn.Module, Optional[type]]" = \
    weakref.WeakKeyDictionary()


def register_equivalent(cls: type, base: type) -> None:
    """Declare that ``cls`` (a subclass of a supported module ``base`` that overrides
    ``forward``) computes exactly what ``base.forward`` computes, so that
    :func:`inn_cuda.to_interval` converts it like ``base`` (with interval weights for a Linear
    or Conv). The caller vouches for the equivalence; :func:`inn_cuda.to_interval` with
    ``example_inputs`` checks it on an input."""
    if not isinstance(cls, type) or not isinstance(base, type) or not issubclass(cls, base):
        raise TypeError(f"register_equivalent: cls must be a subclass of base, got {cls!r} and "
                        f"{base!r}")
    if not any(base in rule.types for rule in MODULE_RULES):
        supported = ", ".join(sorted(t.__name__ for r in MODULE_RULES for t in r.types))
        raise ValueError(f"register_equivalent: base must be a supported module type "
                         f"({supported}), got {base.__name__}")
    EQUIVALENTS[cls] = base


#: functional form of each parametrised layer and the attributes its arguments come from
_FUNCTIONAL_FORM = {
    nn.Linear: (F.linear, ()),
    nn.Conv1d: (F.conv1d, ("stride", "padding", "dilation", "groups")),
    nn.Conv2d: (F.conv2d, ("stride", "padding", "dilation", "groups")),
}


def _traces_like_base(module: nn.Module) -> Optional[type]:
    """The base Linear/Conv1d/Conv2d of a subclass whose overriding forward traces (torch.fx) to
    exactly the base's functional call on its own weight and bias (as timm's ``Linear`` does,
    which only adds a TorchScript branch); None otherwise. Cached per module (its forward may
    branch on its configuration)."""
    if module in _TRACED_EQUIVALENCE:
        return _TRACED_EQUIVALENCE[module]
    found = None
    base = next((b for b in _FUNCTIONAL_FORM if isinstance(module, b)), None)
    if base is not None and getattr(module, "padding_mode", "zeros") == "zeros":
        import torch.fx as fx
        try:
            graph = fx.Tracer().trace(module)
        except Exception:  # noqa: BLE001  (untraceable: not provably equivalent)
            graph = None
        if graph is not None:
            fn, config = _FUNCTIONAL_FORM[base]
            calls = [n for n in graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
            inputs = [n for n in graph.nodes if n.op == "placeholder"]
            output = next(n for n in graph.nodes if n.op == "output")
            if len(calls) == 1 and calls[0].target is fn and len(inputs) == 1 and \
                    output.args[0] is calls[0]:
                call = calls[0]
                args = list(call.args) + [None] * (3 + len(config) - len(call.args))
                names = ("input", "weight", "bias") + config
                args = [call.kwargs.get(name, a) for name, a in zip(names, args)]
                weight, bias = args[1], args[2]
                same = args[0] is inputs[0] and getattr(weight, "target", None) == "weight" \
                    and (getattr(bias, "target", None) == "bias" if module.bias is not None
                         else bias is None)
                for name, value in zip(config, args[3:]):
                    expected = getattr(module, name)
                    same = same and (value == expected or (isinstance(expected, tuple) and
                                                           value in (expected[0], list(expected))
                                                           and len(set(expected)) == 1))
                found = base if same else None
    _TRACED_EQUIVALENCE[module] = found
    return found


def _monotone(module: nn.Module, offsets: bool) -> nn.Module:
    problem = monotonicity_problem(module)
    if problem:
        raise ValueError(problem)
    converted = IntervalMonotone(module)
    converted.train(module.training)
    return converted


def _valley(module: nn.Module, offsets: bool) -> nn.Module:
    converted = IntervalValley(module)
    converted.train(module.training)
    return converted


def _layer(cls):
    # module_rule matched: the module's forward is the base's or declared/traced equivalent
    return lambda module, offsets: cls.from_module(module, offsets=offsets,
                                                   equivalent_forward=True)


def _same(module, input_nonneg) -> bool:
    return input_nonneg


MODULE_RULES: Tuple[ModuleRule, ...] = (
    ModuleRule((nn.Linear,), _layer(IntervalLinear), lambda m, s: False, parametrised=True),
    ModuleRule((nn.Conv1d,), _layer(IntervalConv1d), lambda m, s: False, parametrised=True),
    ModuleRule((nn.Conv2d,), _layer(IntervalConv2d), lambda m, s: False, parametrised=True),
    ModuleRule((nn.ConvTranspose1d,), _layer(IntervalConvTranspose1d), lambda m, s: False,
               parametrised=True),
    ModuleRule((nn.ConvTranspose2d,), _layer(IntervalConvTranspose2d), lambda m, s: False,
               parametrised=True),
    ModuleRule((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm),
               lambda m, offsets: IntervalBatchNorm.from_module(m, equivalent_forward=True),
               lambda m, s: False),
    ModuleRule((nn.ReLU, nn.Sigmoid, nn.Hardsigmoid), _monotone, lambda m, s: True),
    ModuleRule((nn.Softplus,), _monotone, lambda m, s: m.beta > 0),
    ModuleRule((nn.Hardtanh,), _monotone,  # includes ReLU6
               lambda m, s: clamp_nonneg(m.min_val >= 0, m.max_val, m.max_val >= 0, s)),
    ModuleRule((nn.Threshold,), _monotone,
               lambda m, s: m.value >= 0 and (m.threshold >= 0 or s)),
    ModuleRule((nn.LogSigmoid, nn.Tanhshrink), _monotone, lambda m, s: False),
    ModuleRule((nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Tanh, nn.Softsign,
                nn.Softshrink, nn.Hardshrink, nn.MaxPool1d, nn.MaxPool2d,
                nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.Flatten,
                nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle, nn.ReflectionPad1d,
                nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d,
                nn.ReplicationPad2d, nn.ReplicationPad3d, nn.CircularPad1d, nn.CircularPad2d,
                nn.CircularPad3d, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d),
               _monotone, _same),
    ModuleRule((nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d), _monotone,
               lambda m, s: s and m.value >= 0),
    ModuleRule((nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish), _valley, _same),
    ModuleRule((nn.PReLU,), lambda m, offsets: IntervalPReLU.from_module(m),
               lambda m, s: s or bool((m.weight <= 0).all())),
    ModuleRule((nn.LayerNorm,), lambda m, offsets: IntervalLayerNorm(m), lambda m, s: False),
    ModuleRule((nn.GroupNorm,), lambda m, offsets: IntervalGroupNorm(m), lambda m, s: False),
    ModuleRule((nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d),
               lambda m, offsets: IntervalInstanceNorm(m), lambda m, s: False),
    ModuleRule((nn.Softmax,), lambda m, offsets: IntervalSoftmax.from_module(m),
               lambda m, s: True),
    ModuleRule((nn.MultiheadAttention,),
               lambda m, offsets: IntervalMultiheadAttention.from_module(m, offsets=offsets),
               lambda m, s: False, parametrised=True, result="intervals", inputs=3),
    ModuleRule((nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d),
               lambda m, offsets: IntervalDropout.from_module(m), _same),
    ModuleRule((nn.Identity,), lambda m, offsets: nn.Identity(), _same),
)


def module_rule(module: nn.Module) -> Optional[ModuleRule]:
    for rule in MODULE_RULES:
        if rule.matches(module):
            return rule
    return None


def supported_summary() -> str:
    """The supported modules, functions and methods, for error messages."""
    modules = sorted({t.__name__ for rule in MODULE_RULES for t in rule.types})
    functions = sorted(set(FUNCTION_NAMES.values()))
    return (f"Supported modules: {', '.join(modules)}. Supported functions: "
            f"{', '.join(functions)}. Supported tensor methods: {', '.join(sorted(METHOD_RULES))}.")
