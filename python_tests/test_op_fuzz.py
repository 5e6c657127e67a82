"""Fuzzing of the raw ``torch.ops.inn_cuda`` ops (seeded, bounded in time).

* Malformed calls (op_fuzz_worker.py: wrong shapes of each operand, wrong dtypes / layouts /
  devices, half bias pairs and bad bias shapes, huge or invalid geometry, zero sizes) of every
  forward and backward op, in a subprocess per op family so that a crash is seen as a signal:
  each must raise a Python exception, none may be accepted.
* Random valid small calls (non-contiguous operands included): the forward bounds equal the
  float64 brute-force exact bounds (every term's four endpoint products enumerated) and contain
  the outputs at sampled points; the backward ops equal the reference's.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import inn_cuda
from inn_cuda import reference

from helpers import DEVICES, sample_inside

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "op_fuzz_worker.py"
FAMILIES = ["linear", "conv2d", "conv_transpose2d"]
ROUNDS = 10  # base cases per family; each yields ~100-300 malformed calls
CASES = 60  # valid random calls per family (each checked against the float64 brute force)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_malformed_calls_raise(device):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                    "")])}
    result = subprocess.run([sys.executable, str(WORKER), "1234", str(ROUNDS), device, *FAMILIES],
                            capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or ["(nothing)"]
        pytest.fail(f"the worker died with status {result.returncode} (negative: a signal) in "
                    f"the case: {last[0]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for family in FAMILIES:
        assert report[family]["cases"] >= 1000, family
        accepted = report[family]["accepted"]
        assert accepted == [], f"{family}: accepted {len(accepted)} malformed calls: {accepted[:5]}"


# ------------------------------------------------------------------------- valid random calls

def brute_force(x_lo, x_hi, w_lo, w_hi):
    """Exact bounds of sum_k x[m, k] * w[n, k] over the boxes: per term the min / max of its four
    endpoint products, in float64."""
    xl, xh = x_lo.double()[:, None, :], x_hi.double()[:, None, :]
    wl, wh = w_lo.double()[None], w_hi.double()[None]
    products = torch.stack([xl * wl, xl * wh, xh * wl, xh * wh])
    return products.amin(0).sum(-1), products.amax(0).sum(-1)


def conv_brute_force(x_lo, x_hi, w_lo, w_hi, stride, padding, dilation, groups):
    """Per group: im2col (padding entries are exact zeros), then brute_force."""
    n, _, h, w = x_lo.shape
    cout, cin_g, kh, kw = w_lo.shape
    unfold = dict(kernel_size=(kh, kw), dilation=dilation, padding=padding, stride=stride)
    cols = [F.unfold(t.double(), **unfold) for t in (x_lo, x_hi)]
    pixels = cols[0].shape[-1]
    k, cout_g = cin_g * kh * kw, cout // groups
    out = []
    for g in range(groups):
        xs = [c[:, g * k:(g + 1) * k].transpose(1, 2).reshape(-1, k) for c in cols]
        ws = [t[g * cout_g:(g + 1) * cout_g].reshape(cout_g, k) for t in (w_lo, w_hi)]
        out.append([b.reshape(n, pixels, cout_g) for b in brute_force(*xs, *ws)])
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    return [torch.cat([o[i] for o in out], 2).transpose(1, 2).reshape(n, cout, oh, -1)
            for i in range(2)]


def conv_transpose_brute_force(x_lo, x_hi, w_lo, w_hi, stride, padding, output_padding, groups,
                               dilation):
    """A transposed convolution is a stride-1 convolution of the zero-inserted input (exact zeros,
    finite weights here) with the flipped, transposed kernel."""
    n, cin, h, w = x_lo.shape
    _, per, kh, kw = w_lo.shape

    def insert(x):
        out = x.new_zeros(n, cin, (h - 1) * stride[0] + 1, (w - 1) * stride[1] + 1)
        out[:, :, ::stride[0], ::stride[1]] = x
        pads = []
        for d, k in ((1, kw), (0, kh)):
            edge = dilation[d] * (k - 1) - padding[d]
            pads += [edge, edge + output_padding[d]]
        return F.pad(out, pads)

    def flip(t):
        t = t.reshape(groups, cin // groups, per, kh, kw).transpose(1, 2)
        return t.reshape(groups * per, cin // groups, kh, kw).flip(-1, -2)

    return conv_brute_force(insert(x_lo), insert(x_hi), flip(w_lo), flip(w_hi), (1, 1), (0, 0),
                            dilation, groups)


def strided(t, rng):
    """t itself or the same values in a non-contiguous layout."""
    if rng.random() < 0.5 or t.dim() == 0:
        return t
    big = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    big[..., ::2] = t
    return big[..., ::2]


def random_call(family, rng, device, dtype):
    gen = torch.Generator().manual_seed(rng.randrange(2**31))

    def interval(shape, nonneg=False):
        lo = torch.randn(shape, generator=gen, dtype=torch.float64)
        lo = lo.abs() if nonneg else lo
        hi = lo + torch.rand(shape, generator=gen, dtype=torch.float64) * rng.choice([0, 0.5, 2])
        return lo.to(device, dtype), hi.to(device, dtype)

    nonneg = rng.random() < 0.3
    if family == "linear":
        m, k, n = rng.randint(1, 5), rng.randint(0, 6), rng.randint(1, 5)
        x, w, b = interval((m, k), nonneg), interval((n, k)), interval((n,))
        return dict(x=x, w=w, b=b, config=(), nonneg=nonneg, out=(m, n))
    groups = rng.choice([1, 1, 2])
    kh, kw = rng.randint(1, 3), rng.randint(1, 3)
    stride, dilation = (rng.randint(1, 2), rng.randint(1, 3)), (rng.randint(1, 2), 1)
    if family == "conv2d":
        cin, cout = groups * rng.randint(1, 2), groups * rng.randint(1, 3)
        padding = (rng.randint(0, 1), rng.randint(0, 2))
        h = dilation[0] * (kh - 1) + 1 + rng.randint(0, 3)
        wd = kw + rng.randint(0, 4)
        x, w = interval((rng.randint(1, 2), cin, h, wd), nonneg), interval((cout, cin // groups,
                                                                            kh, kw))
        return dict(x=x, w=w, b=interval((cout,)), nonneg=nonneg,
                    config=(list(stride), list(padding), list(dilation), groups))
    cin, per = groups * rng.randint(1, 2), rng.randint(1, 2)
    output_padding = tuple(rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation))
    x = interval((rng.randint(1, 2), cin, rng.randint(1, 4), rng.randint(1, 4)), nonneg)
    w = interval((cin, per, kh, kw))
    return dict(x=x, w=w, b=interval((per * groups,)), nonneg=nonneg,
                config=([*stride], [0, 0], [*output_padding], groups, [*dilation]))


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", FAMILIES)
def test_random_valid_calls_are_exact(family, device):
    rng = random.Random(99)
    op = getattr(torch.ops.inn_cuda, "interval_" + family)
    backward = [getattr(torch.ops.inn_cuda, f"interval_{family}_backward_{p}")
                for p in ("input", "weight")]
    for _ in range(CASES):
        dtype = rng.choice([torch.float32, torch.float64])
        c = random_call(family, rng, device, dtype)
        (x_lo, x_hi), (w_lo, w_hi), (b_lo, b_hi) = c["x"], c["w"], c["b"]
        args = [strided(t, rng) for t in (x_lo, x_hi, w_lo, w_hi)]
        bias = (b_lo, b_hi) if rng.random() < 0.5 else (None, None)
        y_lo, y_hi = op(*args, *bias, *c["config"], c["nonneg"])
        oracle = {"linear": brute_force,
                  "conv2d": lambda *t: conv_brute_force(*t, *c["config"][:3], c["config"][3]),
                  "conv_transpose2d": lambda *t: conv_transpose_brute_force(*t, *c["config"])}
        e_lo, e_hi = oracle[family](x_lo, x_hi, w_lo, w_hi)
        ax, aw = torch.maximum(x_lo.abs(), x_hi.abs()), torch.maximum(w_lo.abs(), w_hi.abs())
        magnitude = oracle[family](ax, ax, aw, aw)[1]  # sum of |x| |w| over each output's terms
        if bias[0] is not None:
            shape = [-1] + [1] * (e_lo.dim() - 2) if family != "linear" else [-1]
            e_lo, e_hi = e_lo + b_lo.double().reshape(shape), e_hi + b_hi.double().reshape(shape)
            magnitude = magnitude + torch.maximum(b_lo.abs(), b_hi.abs()).double().reshape(shape)
        case = f"{family} {dtype} x {tuple(x_lo.shape)} w {tuple(w_lo.shape)} {c['config']}"
        assert y_lo.shape == e_lo.shape, case
        scale = (64 * torch.finfo(dtype).eps) * (1 + magnitude.cpu())
        assert bool(((y_lo.double().cpu() - e_lo).abs() <= scale).all()), case
        assert bool(((y_hi.double().cpu() - e_hi).abs() <= scale).all()), case
        # the outputs at a sampled point lie inside
        xs, ws = sample_inside(x_lo, x_hi), sample_inside(w_lo, w_hi)
        bs = None if bias[0] is None else sample_inside(b_lo, b_hi)
        point = {"linear": lambda: F.linear(xs.double(), ws.double(),
                                            None if bs is None else bs.double()),
                 "conv2d": lambda: F.conv2d(xs.double(), ws.double(),
                                            None if bs is None else bs.double(), *c["config"]),
                 "conv_transpose2d": lambda: F.conv_transpose2d(
                     xs.double(), ws.double(), None if bs is None else bs.double(),
                     *c["config"])}[family]().cpu()
        assert bool((y_lo.double().cpu() <= point + scale).all()), case
        assert bool((point <= y_hi.double().cpu() + scale).all()), case
        # the backward ops: like the reference's
        g_lo = torch.randn(y_lo.shape, dtype=dtype, device=device)
        g_hi = torch.randn(y_lo.shape, dtype=dtype, device=device)
        for kind, bw in zip(("input", "weight"), backward):
            got = bw(g_lo, g_hi, *args, *c["config"], c["nonneg"])
            want = reference.OPS[f"interval_{family}_backward_{kind}"](
                g_lo, g_hi, *args, *c["config"], c["nonneg"])
            for a, e in zip(got, want):
                assert a.shape == e.shape, case
                tol = 1e-4 if dtype == torch.float32 else 1e-10
                torch.testing.assert_close(a, e, rtol=tol, atol=tol, msg=case)


def test_public_ops_still_validate_too():
    """The public wrappers give the same kind of error before reaching the op."""
    x = torch.zeros(1, 2, 5, 5)
    w = torch.zeros(2, 2, 3, 0)
    with pytest.raises(ValueError, match="kernel size must be >= 1"):
        inn_cuda.interval_conv2d(x, x, w, w)
