"""The Interval value type's exact arithmetic and the interval forms of torch functions."""

import pickle

import pytest
import torch
import torch.nn.functional as F

import inn_cuda.nn as inn
from inn_cuda.nn import functional as IF
from helpers import sample_inside


def interval(shape=(3, 4), seed=0, spread=2.0):
    generator = torch.Generator().manual_seed(seed)
    lo = spread * torch.randn(shape, dtype=torch.float64, generator=generator)
    hi = lo + spread * torch.rand(shape, dtype=torch.float64, generator=generator)
    return inn.Interval(lo, hi, sample_inside(lo, hi, generator))


def assert_encloses(out, fn, *operands, samples=20):
    """fn of points sampled inside the operands lies inside out; the bounds are attained."""
    generator = torch.Generator().manual_seed(7)
    values = []
    for _ in range(samples):
        values.append(fn(*[sample_inside(x.lo, x.hi, generator) if isinstance(x, inn.Interval)
                           else x for x in operands]))
    values = torch.stack(values)
    assert bool((out.lo <= values).all()) and bool((values <= out.hi).all())
    points = [x.point if isinstance(x, inn.Interval) else x for x in operands]
    if out.point is not None:
        assert torch.equal(out.point, fn(*points))


def test_exact_arithmetic_and_points():
    a, b = interval(seed=1), interval(seed=2)
    c = torch.randn(3, 4, dtype=torch.float64)
    cases = [(a + b, lambda x, y: x + y, (a, b)), (a - b, lambda x, y: x - y, (a, b)),
             (-a, lambda x: -x, (a,)), (a * -2.5, lambda x: x * -2.5, (a,)),
             (a * c, lambda x: x * c, (a,)), (c * a, lambda x: c * x, (a,)),
             (a * b, lambda x, y: x * y, (a, b)), (a / c, lambda x: x / c, (a,)),
             (a / -3.0, lambda x: x / -3.0, (a,)), (2.0 - a, lambda x: 2.0 - x, (a,)),
             (c - a, lambda x: c - x, (a,)), (a + 1, lambda x: x + 1, (a,))]
    for out, fn, operands in cases:
        assert_encloses(out, fn, *operands)
    # the bounds of a sum, a difference and a product are attained at endpoints
    assert torch.equal((a - b).lo, a.lo - b.hi) and torch.equal((a - b).hi, a.hi - b.lo)
    corners = torch.stack([a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi])
    assert torch.equal((a * b).lo, corners.min(0).values)
    assert torch.equal((a * b).hi, corners.max(0).values)


def test_division_by_signed_zero_keeps_the_order():
    x = inn.Interval(torch.tensor([-1.0, 1.0]), torch.tensor([2.0, 3.0]))
    for zero in (-0.0, torch.tensor([-0.0, -0.0])):
        out = x / zero
        assert bool((out.lo <= out.hi).all())
    with pytest.raises(TypeError, match="divide an Interval by constants only"):
        1.0 / x
    with pytest.raises(TypeError, match="divide by constants only"):
        x / x


def test_value_type_helpers():
    x = torch.randn(2, 3)
    degenerate = inn.Interval.from_point(x)
    assert degenerate.lo is degenerate.hi is degenerate.point
    assert inn.Interval.from_point(x, keep_point=False).point is None
    mapped = degenerate.map(torch.relu)
    assert mapped.lo is mapped.hi is mapped.point
    a = interval()
    assert torch.equal(a.width, a.hi - a.lo) and bool(a.contains(a.mid).all())
    assert a.shape == a.lo.shape and a.size(1) == 4 and a.dim() == 2 and a.ndim == 2
    assert a.to(torch.float32).dtype == torch.float32 and a.without_point().point is None
    assert "mean width" in repr(a)


@pytest.mark.parametrize("name, fn, kwargs", [
    ("relu", F.relu, {}), ("leaky_relu", F.leaky_relu, {"negative_slope": 0.1}),
    ("sigmoid", torch.sigmoid, {}), ("softplus", F.softplus, {}), ("clamp", torch.clamp,
                                                                   {"min": -0.5, "max": 1.0}),
    ("sum", torch.sum, {"dim": 1}), ("mean", torch.mean, {}), ("amax", torch.amax, {"dim": 0}),
    ("flatten", torch.flatten, {}), ("getitem", lambda t, i: t[i], {}),
])
def test_boundwise_functions(name, fn, kwargs):
    x = interval()
    args = (x, (slice(None), slice(1, 3))) if name == "getitem" else (x,)
    out = getattr(IF, name)(*args, **kwargs)
    assert_encloses(out, lambda t: fn(t, *args[1:], **kwargs), x)
    assert torch.equal(getattr(IF, name)(x.lo, *args[1:], **kwargs), fn(x.lo, *args[1:], **kwargs))


def test_joins_splits_and_shape_queries():
    a, b = interval(seed=1), interval(seed=2)
    c = torch.randn(3, 4, dtype=torch.float64)
    joined = IF.cat([a, c, b], dim=1)
    assert torch.equal(joined.lo, torch.cat([a.lo, c, b.lo], 1))
    assert torch.equal(joined.point, torch.cat([a.point, c, b.point], 1))
    parts = IF.chunk(joined, 3, dim=1)
    assert isinstance(parts, tuple) and all(isinstance(p, inn.Interval) for p in parts)
    assert torch.equal(parts[2].hi, b.hi) and torch.equal(parts[2].point, b.point)
    no_point = IF.split(joined.without_point(), 4, dim=1)
    assert no_point[0].point is None
    assert IF.size(a, 1) == 4 and IF.dim(a) == 2 and IF.numel(a) == 12
    assert IF.getattr_meta(a, "shape") == (3, 4) and IF.getattr_meta(a, "dtype") == torch.float64
    with pytest.raises(AttributeError, match="no tensor attribute 'grad'"):
        IF.getattr_meta(a, "grad")


def test_arithmetic_functions_with_alpha():
    a, b = interval(seed=1), interval(seed=2)
    for alpha in (2.0, -1.5):
        out = IF.add(a, b, alpha=alpha)
        assert_encloses(out, lambda x, y: torch.add(x, y, alpha=alpha), a, b)
        out = IF.sub(a, b, alpha=alpha)
        assert_encloses(out, lambda x, y: torch.sub(x, y, alpha=alpha), a, b)
    assert_encloses(IF.rsub(a, 1.0), lambda x: 1.0 - x, a)
    assert_encloses(IF.sub(3.0, a), lambda x: 3.0 - x, a)
    assert_encloses(IF.add(3.0, a), lambda x: 3.0 + x, a)
    assert_encloses(IF.mul(2.0, a), lambda x: 2.0 * x, a)
    assert_encloses(IF.div(a, -2.0), lambda x: x / -2.0, a)
    assert_encloses(IF.abs(a), torch.abs, a)
    assert_encloses(IF.neg(a), torch.neg, a)
    straddling = inn.Interval(torch.tensor([-1.0, 0.5, -3.0]), torch.tensor([2.0, 1.0, -1.0]))
    out = IF.abs(straddling)
    assert out.lo.tolist() == [0.0, 0.5, 1.0] and out.hi.tolist() == [2.0, 1.0, 3.0]
    with pytest.raises(TypeError, match="rounding_mode"):
        IF.div(a, 2.0, rounding_mode="floor")
    with pytest.raises(TypeError, match="dividing by an Interval"):
        IF.div(1.0, a)


def test_valley_and_norm_and_dropout_functions():
    x = interval(spread=3.0)
    for fn, f in ((IF.gelu, F.gelu), (IF.silu, F.silu), (IF.mish, F.mish),
                  (IF.hardswish, F.hardswish)):
        assert_encloses(fn(x), f, x)
    assert_encloses(IF.gelu(x, approximate="tanh"), lambda t: F.gelu(t, approximate="tanh"), x)
    mean, var = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    weight, bias = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.randn(3).double()
    x3 = interval((4, 3))
    out = IF.batch_norm(x3, mean, var, weight, bias)
    assert_encloses(out, lambda t: F.batch_norm(t, mean, var, weight, bias), x3)
    # the point network is frozen: training=True (as traced in train mode) still uses the
    # running statistics; without them there is no interval counterpart
    trained = IF.batch_norm(x3, mean, var, weight, bias, training=True)
    assert torch.equal(trained.lo, out.lo) and torch.equal(trained.hi, out.hi)
    with pytest.raises(ValueError, match="running statistics"):
        IF.batch_norm(x3, None, None, weight, bias, training=True)
    dropped = IF.dropout(inn.Interval(x.lo.abs() + 1, x.hi.abs() + 2, x.point.abs() + 1.5),
                         p=0.5, training=True)
    assert torch.equal(dropped.lo == 0, dropped.point == 0)
    assert IF.dropout(x, 0.5, training=False) is x


def test_linear_maps_with_point_weights():
    x = interval((2, 3, 6, 6))
    weight, bias = torch.randn(4, 3, 3, 3, dtype=torch.float64), torch.randn(4).double()
    out = IF.conv2d(x, weight, bias, padding=1)
    assert_encloses(out, lambda t: F.conv2d(t, weight, bias, padding=1), x, samples=5)
    flat = interval((5, 3))
    w = torch.randn(2, 3, dtype=torch.float64)
    assert_encloses(IF.linear(flat, w), lambda t: F.linear(t, w), flat)
    with pytest.raises(TypeError, match="must be point tensors"):
        IF.linear(flat, inn.Interval(w, w))


def test_runtime_conditions_and_inplace_arguments():
    x = interval()
    with pytest.raises(ValueError, match="negative_slope -0.1 < 0"):
        IF.leaky_relu(x, -0.1)
    with pytest.raises(ValueError, match="'bicubic' has negative weights"):
        IF.interpolate(interval((1, 1, 4, 4)), scale_factor=2, mode="bicubic")
    t = torch.randn(5)
    kept = t.clone()
    out = IF.relu(inn.Interval.from_point(t), True)  # inplace=True is forced off
    assert torch.equal(t, kept) and bool((out.lo >= 0).all())
    assert torch.equal(IF.relu(t), F.relu(t))  # no interval: the torch function


def test_functions_are_named_for_graphs_and_pickling():
    assert IF.relu.__module__ == "inn_cuda.nn.functional" and IF.relu.__name__ == "relu"
    assert pickle.loads(pickle.dumps(IF.max_pool2d)) is IF.max_pool2d
