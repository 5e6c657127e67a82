"""Post-hoc conversion of a trained model into an interval neural network.

:func:`to_interval` traces the model with ``torch.fx`` (public API only), decides for every
graph node whether it runs in *point* mode (a prefix that no interval weight reaches: the
original op, run once) or in *interval* mode (the interval counterpart from
:mod:`inn_cuda.nn.rules`), tracks which values are known non-negative, and emits a new
``torch.fx.GraphModule`` built from the converted modules, and checks it against the model on
a real input (:mod:`inn_cuda.conversion_check`): at conversion with ``example_inputs``, else on
the first call. See :func:`to_interval`.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import operator
import warnings
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.experimental.meta_tracer import MetaTracer

from .conversion_check import ModelFailed, first_divergence
from .nn import functional as IF
from .nn.interval import Interval
from .nn.offsets import _IntervalWeights
from .nn.rules import (FUNCTION_NAMES, METHOD_RULES, MODULE_RULES, FunctionRule, function_rule,
                       module_rule, supported_summary)

Tensor = torch.Tensor

POINT, INTERVAL, INTERVALS, META = "point", "interval", "intervals", "meta"
_RETURN_POINT = "return_point"

_REMEDY = ("Remedies: convert the traceable submodule instead (e.g. to_interval(model.decoder)), "
           "or assemble the interval model from the layers in inn_cuda.nn directly "
           "(IntervalConv2d.from_module(conv), IntervalMonotone(nn.ReLU()), ...).")


class ConversionError(NotImplementedError):
    """A model, or a part of it, that :func:`to_interval` cannot convert."""


@dataclass(frozen=True)
class NodeReport:
    """How one node of the traced model was converted: ``mode`` is "point" (the original op,
    before any interval weight) or "interval"; ``nonneg`` whether its output is known to be
    ``>= 0`` (its lower bound, in interval mode)."""

    name: str
    op: str
    target: str
    mode: str
    nonneg: bool


# ------------------------------------------------------------------ runtime boundary functions

@IF.graph_function
def as_interval(x: Any, return_point: bool = True) -> Any:
    """A tensor becomes the degenerate interval ``[x, x]`` (with ``x`` as its point when
    ``return_point``); an Interval passes (losing its point unless ``return_point``); anything
    else passes unchanged."""
    if isinstance(x, Interval):
        return x if return_point else x.without_point()
    if isinstance(x, Tensor):
        return Interval.from_point(x, keep_point=return_point)
    return x


@IF.graph_function
def as_point(x: Any) -> Any:
    """The input of a model whose first layers run in point mode: a tensor, or a degenerate
    Interval (read as its point)."""
    if not isinstance(x, Interval):
        return x
    if x.hi is x.lo or torch.equal(x.lo, x.hi):
        return x.lo if x.point is None else x.point
    raise ValueError(
        "this interval model was converted with last= or include=, so its first layers run in "
        "point mode and need a point input, but it got an Interval of non-zero width; pass a "
        "tensor, or convert with last=None and include=None to propagate interval inputs")


# ------------------------------------------------------------------------------------- public

def to_interval(model: nn.Module, *, last: Optional[int] = None,
                include: Union[None, str, Iterable[str], Callable[[str, nn.Module], bool]] = None,
                copy_weights: bool = False, example_inputs: Any = None) -> fx.GraphModule:
    """Convert a trained model into an interval model whose parametrised layers (``Linear``,
    ``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d``, ``MultiheadAttention``)
    carry weight intervals ``[W - offset_lo, W + offset_hi]`` with trainable non-negative
    offsets starting at 0. A ``MultiheadAttention`` counts as one layer (for ``last``,
    ``include`` and :func:`~inn_cuda.nn.interval_layers`) whose four projections all get
    intervals.

    Args:
        model: any ``nn.Module`` that ``torch.fx.symbolic_trace`` can trace.
        last: give intervals only to the last ``last`` parametrised layers (in the order the
            forward first calls them). Everything before them runs once in point mode and
            enters the interval part as a degenerate interval.
        include: alternatively, the layers that get intervals: a qualified module name (as in
            ``model.named_modules()``; a container's name selects every layer inside it), a list
            of names, or a predicate ``include(name, module) -> bool``. Layers reached by an
            interval but not selected keep point weights (``offsets=False``).
        copy_weights: copy the trained tensors instead of sharing their storage. Either way
            the interval model has its own Parameter objects (all frozen, ``requires_grad=False``,
            except the offsets) and training the offsets never writes the original model's
            weights; with sharing, loading a ``state_dict`` into the interval model does.
        example_inputs: an input of the model (a tensor, or a tuple of the forward's
            arguments). The converted model is run on it at zero width, in eval mode, next to
            the model, before it is returned: every node must reproduce what the model
            computes there (module outputs matched through forward hooks) and have bounds equal
            to its point, else :class:`ConversionError` names the first node that diverges
            (a trace that took another branch than the model, e.g. after an ``isinstance(x,
            torch.Tensor)`` check, which is False for torch.fx's proxies). Without it the same
            comparison of points runs once, on the converted model's first call (a structural
            copy of the model sharing its weights is kept until then).

    Returns:
        A ``torch.fx.GraphModule``: ``forward(*inputs, return_point=True)`` accepts tensors
        (point inputs) or, when every layer has intervals, :class:`~inn_cuda.nn.Interval`s, and
        returns an ``Interval`` (per tensor output) whose ``point`` is the original model's
        output, computed alongside; ``return_point=False`` skips computing it. Its
        ``state_dict`` holds the original keys plus ``<layer>.weight_offset_lo/_hi`` and
        ``<layer>.bias_offset_lo/_hi`` (a MultiheadAttention: ``<parameter>_offset_lo/_hi`` of
        each projection parameter, e.g. ``attn.in_proj_weight_offset_lo``,
        ``attn.out_proj.bias_offset_hi``). Each parametrised layer's ``input_nonneg`` says whether
        sign tracking proved its inputs non-negative (fast path); :func:`describe` reports every
        node. The point network stays frozen in ``train()`` mode too: BatchNorm (in the point
        prefix as well) uses and keeps its running statistics; dropout is active in train mode
        only, with one mask for point and bounds. Modules of the point prefix are replaced by
        their interval counterparts where one exists (they map tensors exactly like the torch
        modules); the others run unchanged. ``torch.save(model)`` / ``torch.load`` round-trip
        (``state_dict`` too), but :func:`describe` needs the model as converted.

    Raises:
        ConversionError: the model cannot be traced (data-dependent control flow), or its
            interval part uses an operation without an interval counterpart (the message names
            the node, the op and what is supported), or the converted graph does not compute
            what the model computes on ``example_inputs`` (on the first call without them).
        TypeError, ValueError: bad arguments.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"to_interval: model must be an nn.Module, got {type(model).__name__}")
    if any(isinstance(m, _IntervalWeights) for m in model.modules()):
        raise TypeError("to_interval: the model already contains interval layers; convert the "
                        "original point model")
    if not isinstance(copy_weights, bool):
        raise TypeError(f"to_interval: copy_weights must be a bool, got {copy_weights!r}")
    own = _own_copy(model, copy_weights)
    reference = _own_copy(own, False)  # the model as traced, sharing the converted weights
    inputs = None if example_inputs is None else \
        example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    graph = _trace(own, type(model).__name__, inputs)
    converted = _Converter(own, graph, type(model).__name__).run(last, include, model.training)
    if example_inputs is None:
        converted.register_forward_pre_hook(_FirstCallCheck(reference), with_kwargs=True)
        return converted
    try:
        problem = first_divergence(reference, converted, inputs, check_bounds=True)
    except ModelFailed as error:
        raise ValueError(f"to_interval: example_inputs: {error}") from error
    if problem:
        raise ConversionError(_diverged(type(model).__name__, problem, "example_inputs"))
    return converted


def _diverged(name: str, problem: str, where: str) -> str:
    return (f"to_interval: the converted {name} does not compute what the model computes on "
            f"{where}: {problem}. The trace took another path than the model (Python code that "
            f"inspects its input, such as isinstance(x, torch.Tensor), sees torch.fx proxies "
            f"while tracing), or an op's interval counterpart is wrong. {_REMEDY}")


class _FirstCallCheck:
    """Forward pre-hook: compares the converted model with the model (points only: the offsets
    may have been widened by then) on its first call, then removes itself and the model copy.
    Skipped while torch.compile traces. Copies and pickles of the converted model do not
    check."""

    def __init__(self, reference: Optional[nn.Module]):
        self.reference = reference

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        if torch.compiler.is_compiling():
            return None
        reference, self.reference = self.reference, None
        for key, hook in list(module._forward_pre_hooks.items()):  # what handle.remove() does
            if hook is self:
                module._forward_pre_hooks.pop(key)
                module._forward_pre_hooks_with_kwargs.pop(key, None)
        if reference is None or kwargs:
            return None
        like = next((x.lo if isinstance(x, Interval) else x for x in args
                     if isinstance(x, (Tensor, Interval))), None)
        if like is not None:
            reference.to(device=like.device)
            if like.is_floating_point():
                reference.to(dtype=like.dtype)
        try:
            problem = first_divergence(reference, module, args, check_bounds=False)
        except ModelFailed as error:
            warnings.warn(f"to_interval: the conversion could not be checked on the first "
                          f"call ({error}); pass example_inputs= to check it", stacklevel=3)
            return None
        if problem:
            raise ConversionError(_diverged(module.__class__.__name__.removeprefix("Interval"),
                                            problem, "its first input"))
        return None

    def __reduce__(self):
        return (_FirstCallCheck, (None,))

    def __deepcopy__(self, memo):
        return _FirstCallCheck(None)


def describe(interval_model: fx.GraphModule) -> List[NodeReport]:
    """One :class:`NodeReport` per node of the original graph, in execution order."""
    reports = []
    for node in interval_model.graph.nodes:
        info = node.meta.get("inn_cuda")
        if info is not None:
            reports.append(NodeReport(node.name, info["op"], info["target"], info["mode"],
                                      info["nonneg"]))
    if not reports:
        raise ValueError("describe: this module holds no conversion records; pass the model "
                         "returned by inn_cuda.to_interval (a reloaded pickle has lost them)")
    return reports


# ----------------------------------------------------------------------------------- machinery

def _own_copy(model: nn.Module, copy_weights: bool) -> nn.Module:
    """A deep copy of the model whose parameters and buffers share (or copy) the original
    storage, every parameter frozen."""
    memo: Dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        data = t.detach().clone() if copy_weights else t.detach()
        memo[id(t)] = nn.Parameter(data, requires_grad=False) \
            if isinstance(t, nn.Parameter) else data
    try:
        return copy.deepcopy(model, memo)
    except Exception as error:  # noqa: BLE001
        raise TypeError(f"to_interval: cannot copy the structure of {type(model).__name__} "
                        f"({type(error).__name__}: {error}); the interval model needs its own "
                        f"modules (sharing only the weight storage)") from error


class _Tracer(fx.Tracer):
    """fx's default tracer, except that every module with an interval counterpart stays whole
    (also a subclass whose forward is registered or traced as equivalent), subclasses of the
    parametrised layers stay whole too (tracing into a Conv2d subclass would leave a bare
    F.conv2d without weight intervals: the conversion names it instead), and other subclasses
    of supported modules that override forward (timm's BatchNormAct2d, LayerNorm2d) are traced
    into, down to functions with interval counterparts."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_rule(m) is not None or isinstance(m, _PARAMETRISED):
            return True
        if any(isinstance(m, t) for rule in MODULE_RULES for t in rule.types):
            return False  # a supported type whose forward was overridden: trace into it
        return super().is_leaf_module(m, module_qualified_name)


_PARAMETRISED = tuple(t for rule in MODULE_RULES if rule.parametrised for t in rule.types)


class _ShapeTracer(_Tracer, MetaTracer):
    """The second capture path: torch.fx tracing that also propagates meta tensors of the
    example input, so that shapes, sizes and ranks are concrete numbers (``if h % 32``,
    ``np.array(x.shape)`` and shape-driven reshapes such as einops' trace). The graph is
    specialised to the example's shapes."""


def _trace(model: nn.Module, name: str, example_inputs: Optional[tuple]) -> fx.Graph:
    """torch.fx's symbolic trace; where that fails and an example input is given, the
    shape-specialising trace of :class:`_ShapeTracer`."""
    try:
        return _Tracer().trace(model)
    except Exception as error:  # noqa: BLE001  (every tracing failure gets the same remedy)
        first = error
    control_flow = isinstance(first, fx.proxy.TraceError) or "control flow" in str(first)
    what = ("it has data-dependent control flow (Python if/for/while on tensor values), "
            "which torch.fx cannot trace" if control_flow else "torch.fx failed")
    symbolic = f"{what}: {type(first).__name__}: {first}"
    if example_inputs is None:
        raise ConversionError(f"to_interval: cannot trace {name}: {symbolic}. If the model "
                              f"only branches on shapes, pass example_inputs= to trace it with "
                              f"the example's concrete shapes. {_REMEDY}") from first
    names = [p for p in inspect.signature(model.forward).parameters]
    meta = {}
    for param, value in zip(names, example_inputs):
        value = value.lo if isinstance(value, Interval) else value
        if isinstance(value, Tensor):
            meta[param] = value.to("meta")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ops without a meta kernel just stay symbolic
            return _ShapeTracer().trace(model, meta_args=meta)
    except Exception as error:  # noqa: BLE001
        raise ConversionError(
            f"to_interval: cannot trace {name}: {symbolic}; tracing with the concrete shapes "
            f"of example_inputs failed too: {type(error).__name__}: {error} (tensor values "
            f"decide the control flow, which no trace can capture). {_REMEDY}") from error


def _keep_unused_state(result: fx.GraphModule, root: nn.Module) -> None:
    """Registers on the GraphModule the parameters and buffers that its graph does not use (a
    traced-into module's ``num_batches_tracked``, say), so that its ``state_dict`` keeps every
    key of the model's and loads the model's checkpoints."""
    have = set(result.state_dict(keep_vars=True))
    for key, value in root.state_dict(keep_vars=True).items():
        if key in have:
            continue
        path, _, leaf = key.rpartition(".")
        owner: nn.Module = result
        for atom in path.split(".") if path else ():
            if atom not in owner._modules:
                owner.add_module(atom, nn.Module())
            owner = owner._modules[atom]
        if isinstance(value, nn.Parameter):
            owner.register_parameter(leaf, value)
        else:
            owner.register_buffer(leaf, value)


def _nodes_in(value: Any) -> List[fx.Node]:
    found: List[fx.Node] = []
    fx.node.map_arg(value, found.append)
    return found


_MODULE_ALIASES = {"_operator": "operator", "torch.nn.functional": "F", "torch._C._nn": "F",
                   "torch._C._VariableFunctions": "torch", "": "torch"}


def _target_name(node: fx.Node) -> str:
    if node.op == "call_function":
        if node.target in FUNCTION_NAMES:
            return FUNCTION_NAMES[node.target]
        module = getattr(node.target, "__module__", None) or ""
        name = getattr(node.target, "__name__", repr(node.target))
        return f"{_MODULE_ALIASES.get(module, module)}.{name}"
    return str(node.target)


class _Converter:
    def __init__(self, root: nn.Module, graph: fx.Graph, model_name: str):
        self.root = root
        self.graph = graph
        self.model_name = model_name
        self.modules = dict(root.named_modules())
        self.kind: Dict[fx.Node, str] = {}
        self.nonneg: Dict[fx.Node, bool] = {}
        self.rules: Dict[fx.Node, Any] = {}

    # ------------------------------------------------------------------ errors and helpers

    def _where(self, node: fx.Node) -> str:
        if node.op == "call_module":
            what = f"module '{node.target}' ({type(self.modules[node.target]).__name__})"
        elif node.op == "call_method":
            what = f"tensor method .{node.target}()"
        else:
            what = f"function {_target_name(node)}"
        return f"node '{node.name}' ({node.op} of {what})"

    def _unsupported(self, node: fx.Node, reason: str) -> ConversionError:
        return ConversionError(
            f"to_interval: cannot convert {self._where(node)} in the interval part of "
            f"{self.model_name}: {reason}. {supported_summary()} An op before the first "
            f"interval layer may be anything: choose the interval layers with last= or "
            f"include= to keep it in the point prefix.")

    def _is_nonneg(self, value: Any) -> bool:
        if isinstance(value, fx.Node):
            return self.nonneg.get(value, False)
        if isinstance(value, bool):
            return True
        if isinstance(value, Real):
            return value >= 0
        if isinstance(value, (list, tuple)):
            return all(self._is_nonneg(v) for v in value)
        return False

    def _sign(self, rule: FunctionRule, node: fx.Node) -> bool:
        try:
            return bool(rule.sign(node.args, dict(node.kwargs), self._is_nonneg))
        except (TypeError, IndexError):  # a graph value where a constant decides the sign
            return False

    def _carries_interval(self, node: fx.Node) -> bool:
        return any(self.kind[n] in (INTERVAL, INTERVALS)
                   for n in _nodes_in((node.args, node.kwargs)))

    # -------------------------------------------------------------------------- selection

    def _layer_order(self) -> List[str]:
        order: List[str] = []
        for node in self.graph.nodes:
            if node.op == "call_module" and node.target not in order:
                rule = module_rule(self.modules[node.target])
                if rule is not None and rule.parametrised:
                    order.append(node.target)
        return order

    def _select(self, order: List[str], last, include) -> List[str]:
        if not order:
            raise ValueError(f"to_interval: {self.model_name} has no Linear, Conv1d, Conv2d, "
                             f"ConvTranspose1d, ConvTranspose2d or MultiheadAttention layer to "
                             f"give intervals")
        if last is not None and include is not None:
            raise ValueError("to_interval: pass last= or include=, not both")
        listing = ", ".join(order)
        if last is not None:
            if isinstance(last, bool) or not isinstance(last, int):
                raise TypeError(f"to_interval: last must be an int, got {last!r}")
            if not 1 <= last <= len(order):
                raise ValueError(f"to_interval: last must be between 1 and {len(order)} (the "
                                 f"number of parametrised layers: {listing}), got {last}")
            return order[-last:]
        if include is None:
            return order
        if callable(include):
            chosen = [name for name in order if include(name, self.modules[name])]
        else:
            names = [include] if isinstance(include, str) else list(include)
            chosen = []
            for name in names:
                if not isinstance(name, str):
                    raise TypeError(f"to_interval: include must hold module names (str), got "
                                    f"{name!r}")
                matched = [n for n in order if n == name or n.startswith(name + ".")]
                if not matched:
                    raise ValueError(f"to_interval: include={name!r} names no parametrised "
                                     f"layer; the parametrised layers are: {listing}")
                chosen += matched
        if not chosen:
            raise ValueError(f"to_interval: include selects no layer; the parametrised layers "
                             f"are: {listing}")
        return [name for name in order if name in chosen]

    # ------------------------------------------------------------------------------ analysis

    def _analyse(self, selected: Sequence[str], inputs_are_intervals: bool) -> None:
        for node in self.graph.nodes:
            if node.op == "placeholder":
                if node.target.startswith("**") or node.target == _RETURN_POINT:
                    raise ConversionError(f"to_interval: the forward parameter {node.target!r} "
                                          f"of {self.model_name} is not supported")
                self.kind[node] = INTERVAL if inputs_are_intervals else POINT
                self.nonneg[node] = False
            elif node.op == "get_attr":
                self.kind[node], self.nonneg[node] = POINT, False
            elif node.op == "call_module":
                self._analyse_module(node, selected)
            elif node.op in ("call_function", "call_method"):
                self._analyse_function(node)

    def _analyse_module(self, node: fx.Node, selected: Sequence[str]) -> None:
        module = self.modules[node.target]
        rule = module_rule(module)
        interval = self._carries_interval(node) or node.target in selected
        if interval and rule is None:
            base = next((t for r in MODULE_RULES for t in r.types if isinstance(module, t)), None)
            raise self._unsupported(node, f"{type(module).__name__} subclasses nn.{base.__name__} "
                                          f"but overrides forward with something that is not "
                                          f"a plain call of its functional form; if it computes "
                                          f"the same, declare it with inn_cuda.register_"
                                          f"equivalent({type(module).__name__}, "
                                          f"nn.{base.__name__})" if base else
                                    f"{type(module).__name__} has no interval counterpart")
        self.kind[node] = (rule.result if rule else INTERVAL) if interval else POINT
        self.rules[node] = rule
        first = node.args[0] if node.args else None
        self.nonneg[node] = bool(rule.sign(module, self._is_nonneg(first))) if rule else False

    def _function_rule(self, node: fx.Node) -> Optional[FunctionRule]:
        if node.op == "call_method":
            return METHOD_RULES.get(node.target)
        return function_rule(node.target)

    def _analyse_function(self, node: fx.Node) -> None:
        rule = self._function_rule(node)
        if not self._carries_interval(node):
            self.kind[node] = POINT
            self.nonneg[node] = self._sign(rule, node) if rule else False
            return
        first = node.args[0] if node.args else None
        if node.target is operator.getitem and isinstance(first, fx.Node) and \
                self.kind[first] == INTERVALS:
            self.kind[node], self.nonneg[node] = INTERVAL, self.nonneg[first]
            self.rules[node] = "select"  # plain indexing of a tuple of intervals
            return
        if rule is None:
            in_place = node.op == "call_method" and node.target.endswith("_") or \
                getattr(node.target, "__name__", "").endswith("_")
            raise self._unsupported(node, "in-place operations cannot be converted (use the "
                                          "out-of-place form)" if in_place else
                                    "it has no interval counterpart")
        self._check_arguments(node, rule)
        self.kind[node] = rule.result
        self.nonneg[node] = self._sign(rule, node)
        self.rules[node] = rule

    def _check_arguments(self, node: fx.Node, rule: FunctionRule) -> None:
        for position, name in rule.point_args:
            value = node.kwargs.get(name, node.args[position] if len(node.args) > position
                                    else None)
            if any(self.kind[n] in (INTERVAL, INTERVALS) for n in _nodes_in(value)):
                raise self._unsupported(node, f"its argument {name!r} must be a point value "
                                              f"(constant or computed before any interval "
                                              f"weight), but it is an interval")
        if rule.impl is IF.getattr_meta and node.args[1] not in IF.META_ATTRIBUTES:
            raise self._unsupported(node, f"attribute {node.args[1]!r} of an interval is not "
                                          f"available (only {', '.join(IF.META_ATTRIBUTES)})")
        condition = IF.CONDITIONS.get(rule.impl.__name__)
        if condition is not None:
            try:
                problem = condition(node.args, dict(node.kwargs))
            except (TypeError, AttributeError):  # decided by a graph value: checked at run time
                problem = None
            if problem:
                raise self._unsupported(node, problem)

    # ------------------------------------------------------------------------------ emission

    def run(self, last, include, training: bool) -> fx.GraphModule:
        order = self._layer_order()
        selected = self._select(order, last, include)
        self._analyse(selected, inputs_are_intervals=len(selected) == len(order))
        converted = self._convert_modules(selected)
        graph = self._emit()
        for name, module in converted.items():  # into our private copy, in place of the original
            parent, _, child = name.rpartition(".")
            setattr(self.root.get_submodule(parent), child, module)
        # copies what the graph uses, in execution order (so modules register in that order)
        result = fx.GraphModule(self.root, graph, class_name=f"Interval{self.model_name}")
        _keep_unused_state(result, self.root)
        result.training = training
        return result

    def _convert_modules(self, selected: Sequence[str]) -> Dict[str, nn.Module]:
        """Every called module with an interval counterpart is converted, in the point prefix
        too: the counterparts map tensors exactly like the torch modules, and freeze what the
        point network must not change in train() mode (BatchNorm statistics). A prefix module
        that cannot be converted runs as it is."""
        sites: Dict[str, List[fx.Node]] = {}
        for node in self.graph.nodes:
            if node.op == "call_module" and self.rules.get(node) is not None:
                sites.setdefault(node.target, []).append(node)
        converted: Dict[str, nn.Module] = {}
        for target, calls in sites.items():
            rule = self.rules[calls[0]]
            interval_calls = [n for n in calls if self.kind[n] in (INTERVAL, INTERVALS)]
            try:
                module = rule.convert(self.modules[target], target in selected)
            except (TypeError, ValueError) as error:
                if interval_calls:
                    raise self._unsupported(interval_calls[0], str(error)) from error
                continue
            if rule.parametrised:
                # the fast path needs non-negative inputs at every interval call
                module.input_nonneg = bool(interval_calls) and all(
                    len(n.args) >= rule.inputs and
                    all(self._is_nonneg(a) for a in n.args[:rule.inputs])
                    for n in interval_calls)
            converted[target] = module
        return converted

    def _emit(self) -> fx.Graph:
        graph = fx.Graph()
        env: Dict[fx.Node, fx.Node] = {}
        nodes = list(self.graph.nodes)
        placeholders = [n for n in nodes if n.op == "placeholder"]
        for node in placeholders:
            env[node] = graph.node_copy(node)
            env[node].meta["inn_cuda"] = {"op": node.op, "target": str(node.target),
                                          "mode": self.kind[node], "nonneg": False}
        return_point = graph.placeholder(_RETURN_POINT, default_value=True)
        for node in placeholders:
            boundary = (as_interval, (env[node], return_point)) if self.kind[node] == INTERVAL \
                else (as_point, (env[node],))
            env[node] = graph.call_function(*boundary)

        entered: Dict[fx.Node, fx.Node] = {}

        def enter(node: fx.Node) -> fx.Node:
            """A point-mode value entering the interval part."""
            if node not in entered:
                entered[node] = graph.call_function(as_interval, (env[node], return_point))
            return entered[node]

        for node in nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                graph.output(fx.node.map_arg(
                    node.args[0],
                    lambda n: enter(n) if self.kind[n] in (POINT, META) else env[n]))
                continue
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            rule = self.rules.get(node)
            if self.kind[node] == POINT or rule == "select":
                new = graph.node_copy(node, lambda n: env[n])
            elif node.op == "call_module":
                first = node.args[0] if node.args else None
                if isinstance(first, fx.Node) and self.kind[first] in (POINT, META):
                    args = (enter(first),) + tuple(args[1:])
                new = graph.create_node("call_module", node.target, args, kwargs, name=node.name)
            else:
                if rule.takes_input_nonneg:
                    kwargs = {**kwargs, "input_nonneg": self._is_nonneg(node.args[0])}
                new = graph.create_node("call_function", rule.impl, args, kwargs,
                                        name=node.name)
            new.meta["inn_cuda"] = {
                "op": node.op, "target": _target_name(node),
                "mode": POINT if self.kind[node] == POINT else INTERVAL,
                "nonneg": self.nonneg.get(node, False)}
            env[node] = new
        return graph

