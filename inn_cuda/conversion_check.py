"""Checking a converted model against the model it came from, on a real input.

``torch.fx`` traces with proxies, and Python code that inspects its input (``isinstance(x,
torch.Tensor)``, which is False for a proxy) can silently take another branch: the traced graph
then computes something else than the model. :func:`first_divergence` runs both on the same
input in eval mode and reports the first graph node whose value differs from what the model
computed there (matched by module and call count through forward hooks), else the first
differing output. With zero offsets it also checks that every node's bounds equal its point.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn as nn

from .nn.interval import Interval

Tensor = torch.Tensor


class ModelFailed(ValueError):
    """The original model cannot run on the input it is to be compared on."""


def _tolerance(expected: Tensor) -> float:
    scale = 1.0 + (float(expected.detach().abs().nan_to_num(0, 0, 0).max())
                   if expected.numel() else 0.0)
    return (1e-8 if expected.dtype == torch.float64 else 1e-3) * scale


def _differs(actual: Any, expected: Any) -> Optional[str]:
    """Why ``actual`` (a tensor) differs from ``expected``, or None."""
    if not isinstance(actual, Tensor) or not isinstance(expected, Tensor):
        return None
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
    if not expected.is_floating_point():
        return None if torch.equal(actual, expected) else "different values"
    expected = expected.to(actual.dtype)
    error = (actual.detach() - expected.detach()).abs()
    error = torch.where(torch.isnan(actual) & torch.isnan(expected), 0.0, error)
    error = torch.where(actual == expected, 0.0, error)  # equal infinities
    if not error.numel():
        return None
    worst = float(error.nan_to_num(float("inf")).max())
    tol = _tolerance(expected)
    return None if worst <= tol else f"max |difference| {worst:.3g} (tolerance {tol:.2g})"


def _point_of(value: Any) -> Any:
    if isinstance(value, Interval):
        return value.lo if value.point is None else value.point
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Interval):
        return _point_of(value[0])
    return value


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (tuple, list)) and value else value


def _flatten(value: Any) -> List[Any]:
    if isinstance(value, Interval):
        return [_point_of(value)]
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _flatten(v)]
    if isinstance(value, dict):
        return [leaf for k in sorted(value, key=str) for leaf in _flatten(value[k])]
    return [value]


class _Recorder(fx.Interpreter):
    """Runs a converted graph, keeping each original node's value and the node running now."""

    def __init__(self, module: fx.GraphModule):
        super().__init__(module)
        self.values: List[Tuple[fx.Node, Any]] = []
        self.current: Optional[fx.Node] = None

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        value = super().run_node(n)
        if "inn_cuda" in n.meta and n.op != "placeholder":
            self.values.append((n, value))
        return value


def _snapshot(value: Any) -> Any:
    """A copy of a module output (a later in-place op, e.g. ReLU(inplace=True), would change
    it)."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_snapshot(v) for v in value) if not hasattr(value, "_fields") \
            else type(value)(*(_snapshot(v) for v in value))
    return value


def _record_model(model: nn.Module, inputs: tuple) -> Tuple[Any, Dict[str, List[Any]]]:
    calls: Dict[str, List[Any]] = {}
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: calls.setdefault(name, []).append(
                    _snapshot(out))))
    try:
        return model(*inputs), calls
    finally:
        for handle in handles:
            handle.remove()


def _describe(node: fx.Node) -> str:
    info = node.meta["inn_cuda"]
    return f"node '{node.name}' ({info['op']} of {info['target']})"


def first_divergence(model: nn.Module, converted: fx.GraphModule, inputs: tuple, *,
                     check_bounds: bool) -> Optional[str]:
    """Where ``converted`` stops computing what ``model`` computes on ``inputs`` (both run in
    eval mode, no gradients, no autocast; modes are restored), or None. ``check_bounds``:
    also require every node's bounds to equal its point (true of a model whose offsets are all
    zero)."""
    modes = [(m, m.training) for m in (*model.modules(), *converted.modules())]
    like = next((x.lo if isinstance(x, Interval) else x for x in inputs
                 if isinstance(x, (Tensor, Interval))), None)
    device_type = like.device.type if like is not None else "cpu"
    try:
        model.eval()
        converted.eval()
        # full precision: an autocast region of the caller's would make both sides round apart
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            points = tuple(_point_of(x) for x in inputs)
            try:
                expected, calls = _record_model(model, points)
            except Exception as error:  # noqa: BLE001
                raise ModelFailed(f"the model itself raises {type(error).__name__} on this "
                                  f"input: {error}") from error
            recorder = _Recorder(converted)
            # an interval input without a point gets its lower bound as the point compared
            inputs = tuple(Interval(x.lo, x.hi, x.lo) if isinstance(x, Interval) and
                           x.point is None else x for x in inputs)
            try:
                actual = recorder.run(*inputs)
            except Exception as error:  # noqa: BLE001  (reported with the node that raised)
                where = _describe(recorder.current) if recorder.current is not None and \
                    "inn_cuda" in recorder.current.meta else "the converted graph"
                return (f"{where} raises {type(error).__name__}: {error}, but the model runs on "
                        f"this input")
    finally:
        for module, mode in modes:
            module.training = mode
    seen: Dict[str, int] = {}
    for node, value in recorder.values:
        if node.op == "call_module":
            index = seen.get(node.target, 0)
            seen[node.target] = index + 1
            made = calls.get(node.target, [])
            if index >= len(made):
                return (f"{_describe(node)}: the traced graph calls module '{node.target}' more "
                        f"often than the model does ({len(made)} times) on this input")
            problem = _differs(_point_of(value), _first(made[index]))
            if problem:
                return (f"{_describe(node)}: its output differs from what module "
                        f"'{node.target}' computes in the model: {problem}")
        if check_bounds:
            interval = _first(value)
            if isinstance(interval, Interval) and interval.point is not None:
                for side in ("lo", "hi"):
                    problem = _differs(getattr(interval, side), interval.point)
                    if problem:
                        return (f"{_describe(node)}: at zero width its {side} bound differs from "
                                f"its point: {problem}")
    for name, made in calls.items():
        if name in seen and seen[name] < len(made):
            return (f"module '{name}' is called {len(made)} times by the model but "
                    f"{seen[name]} times by the traced graph")
    flat_actual, flat_expected = _flatten(actual), _flatten(expected)
    if len(flat_actual) != len(flat_expected):
        return (f"the output has {len(flat_actual)} values instead of the model's "
                f"{len(flat_expected)}")
    for i, (a, e) in enumerate(zip(flat_actual, flat_expected)):
        problem = _differs(a, e)
        if problem:
            return f"output {i} differs from the model's: {problem}"
    return None
