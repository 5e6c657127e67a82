"""The op contract between C++ and Python: the schemas declared in csrc/ops.cpp, the copies in
inn_cuda/_backend.py (used when the extension is not loaded), the schemas the dispatcher holds,
and the fake (meta) functions of inn_cuda/ops.py; and the reference fallback's warn-once rule."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch._library import simple_registry
from torch._subclasses.fake_tensor import FakeTensorMode

import inn_cuda
from inn_cuda import _backend

PACKAGE = Path(inn_cuda.__file__).resolve().parent
ops = torch.ops.inn_cuda


@pytest.mark.skipif(_backend._C is None, reason="extension not loaded")
def test_python_copies_equal_the_cpp_declarations():
    """The schemas csrc/ops.cpp declares (as the dispatcher holds them) equal the copies in
    _backend.SCHEMAS, and every op has its `_check_` twin with the same arguments."""
    for name, schema in _backend.SCHEMAS.items():
        declared = str(getattr(ops, name).default._schema)
        assert declared == f"inn_cuda::{name}{schema}", name
        check = str(getattr(ops, "_check_" + name).default._schema)
        assert check == f"inn_cuda::_check_{name}{schema.rsplit(' -> ', 1)[0]} -> ()", name
    assert str(ops._set_cpu_isa.default._schema) == "inn_cuda::_set_cpu_isa(str isa) -> str"


def example_calls():
    """name -> args of one small call of every public op."""
    x = torch.rand(2, 3, 6, 5)
    w = torch.randn(4, 3, 3, 3)
    conv = ([1, 2], [1, 0], [1, 1], 1, True)
    wt = torch.randn(3, 2, 2, 3)
    transpose = ([2, 1], [0, 1], [1, 0], 1, [1, 2], True)
    xl, wl = torch.rand(5, 7), torch.randn(4, 7)
    calls = {
        "interval_linear": (xl, xl + 1, wl, wl + 1, None, None, True),
        "interval_conv2d": (x, x + 1, w, w + 1, None, None, *conv),
        "interval_conv_transpose2d": (x, x + 1, wt, wt + 1, None, None, *transpose),
    }
    for op in list(calls):
        y = getattr(ops, op)(*calls[op])[0]
        x_lo, x_hi, w_lo, w_hi, _, _, *config = calls[op]
        for part in ("input", "weight"):
            calls[f"{op}_backward_{part}"] = (y, y + 1, x_lo, x_hi, w_lo, w_hi, *config)
        calls[f"{op}_backward_weight_point"] = (y, y + 1, x_lo, x_hi, w_lo, *config)
    return calls


def test_every_op_has_a_fake_that_agrees_with_the_kernel():
    calls = example_calls()
    assert set(calls) == set(_backend.SCHEMAS)
    for name, args in calls.items():
        entry = simple_registry.singleton.find(f"inn_cuda::{name}")
        assert entry.fake_impl.kernel is not None, f"{name} has no fake function"
        assert Path(entry.fake_impl.kernel.source.split(":")[0]).resolve().is_relative_to(PACKAGE)
        real = getattr(ops, name)(*args)
        with FakeTensorMode() as mode:
            fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
            fake = getattr(ops, name)(*fake_args)
        if name.endswith("_point"):  # one tensor: the total weight gradient
            fake, real = [fake], [real]
        assert len(fake) == len(real) == (1 if name.endswith("_point") else 2), name
        for f, r in zip(fake, real):
            assert (f.shape, f.dtype, f.stride()) == (r.shape, r.dtype, r.stride()), name


# ----------------------------------------------------------------------- reference fallback


def test_fallback_warns_once_per_op_and_device(monkeypatch):
    monkeypatch.setattr(_backend, "_warned", set())
    linear = _backend._fallback("interval_linear", "cpu", "no kernel here")
    linear_cuda = _backend._fallback("interval_linear", "cuda", "no kernel there")
    conv = _backend._fallback("interval_conv2d", "cpu", "no kernel here")
    x, w = torch.rand(3, 4), torch.randn(2, 4)
    image, kernel = torch.rand(1, 2, 4, 4), torch.randn(3, 2, 3, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # so only the fallback's own rule can drop a repeat
        for _ in range(3):
            linear(x, x + 1, w, w + 1, None, None, True)
            linear_cuda(x, x + 1, w, w + 1, None, None, True)
            conv(image, image, kernel, kernel, None, None, [1, 1], [0, 0], [1, 1], 1, False)
    messages = [str(w.message) for w in caught]
    assert messages == [
        "inn_cuda: interval_linear on cpu runs the pure-PyTorch reference (no kernel here); "
        "expect it to be slow.",
        "inn_cuda: interval_linear on cuda runs the pure-PyTorch reference (no kernel there); "
        "expect it to be slow.",
        "inn_cuda: interval_conv2d on cpu runs the pure-PyTorch reference (no kernel here); "
        "expect it to be slow."]
    assert all(w.category is RuntimeWarning for w in caught)


@pytest.mark.slow
def test_registered_fallback_warns_once():
    """End to end: with INN_CUDA_BACKEND=reference the registered CPU ops warn on first use
    only."""
    code = ("import warnings, torch, inn_cuda\n"
            "warnings.simplefilter('always')\n"
            "x, w = torch.rand(3, 4), torch.randn(2, 4)\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    for _ in range(3):\n"
            "        inn_cuda.interval_linear(x, x + 1, w, w + 1, input_nonneg=True)\n"
            "print(len(caught), caught[0].message if caught else '')\n")
    env = dict(os.environ, INN_CUDA_BACKEND="reference")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE.parent),
                                                    env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 inn_cuda: interval_linear on cpu runs the pure-PyTorch "
                                  "reference (INN_CUDA_BACKEND=reference)"), done.stdout
