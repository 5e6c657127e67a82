"""Runs malformed calls of the raw ``torch.ops.inn_cuda`` ops of one family (linear, conv2d or
conv_transpose2d; forward, both backward ops and the point-weight gradient) in this process, for
test_op_fuzz.py, which runs it in a subprocess so that a crash (a signal) is seen as such.

Usage: python op_fuzz_worker.py SEED ROUNDS DEVICE FAMILY...

Each case is announced on stderr before it runs (so the parent can name the case that killed the
process), and the last stdout line is a JSON object: {family: {"cases": n, "accepted": [cases
that did not raise], "errors": {exception type: count}}}. One process runs every family: importing
torch costs far more than the thousands of calls.
"""

from __future__ import annotations

import json
import random
import sys
import warnings

import torch

import inn_cuda  # noqa: F401  (loads the ops)

ops = torch.ops.inn_cuda
BIG = [2**31, 2**40, 2**61, 2**62, 2**63 - 1]


def base_case(family: str, rng: random.Random, device: str):
    """A valid call: (tensors by name, config by name, output shape)."""
    f64 = dict(dtype=torch.float64, device=device)
    if family == "linear":
        m, k, n = rng.randint(1, 4), rng.randint(1, 5), rng.randint(1, 4)
        t = {"x": (m, k), "w": (n, k), "b": (n,), "grad": (m, n)}
        config = {}
    elif family == "conv2d":
        groups = rng.choice([1, 2])
        cin, cout = groups * rng.randint(1, 2), groups * rng.randint(1, 2)
        kh, kw = rng.randint(2, 3), rng.randint(2, 3)
        h, w = rng.randint(kh, 6), rng.randint(kw, 6)
        stride, dil = [1, rng.randint(1, 2)], [1, 1]
        oh, ow = h - kh + 1, (w - kw) // stride[1] + 1
        t = {"x": (2, cin, h, w), "w": (cout, cin // groups, kh, kw), "b": (cout,),
             "grad": (2, cout, oh, ow)}
        config = {"stride": stride, "padding": [0, 0], "dilation": dil, "groups": groups}
    else:
        groups = rng.choice([1, 2])
        cin, per = groups * rng.randint(1, 2), rng.randint(1, 2)
        kh, kw = rng.randint(2, 3), rng.randint(2, 3)
        h, w = rng.randint(2, 4), rng.randint(2, 4)  # > 1: a huge stride must overflow
        stride = [rng.randint(1, 2), 1]
        oh, ow = (h - 1) * stride[0] + kh, w - 1 + kw
        t = {"x": (2, cin, h, w), "w": (cin, per, kh, kw), "b": (per * groups,),
             "grad": (2, per * groups, oh, ow)}
        config = {"stride": stride, "padding": [0, 0], "output_padding": [0, 0],
                  "groups": groups, "dilation": [1, 1]}
    tensors = {}
    for name in ("x", "w", "b", "grad"):
        lo = torch.randn(t[name], **f64)
        tensors[name + "_lo"], tensors[name + "_hi"] = lo, lo + 0.5
    return tensors, config


def call(family: str, kind: str, tensors, config, nonneg=False):
    """Calls the op `kind` (forward, backward_input, backward_weight, backward_weight_point) of
    `family`."""
    name = "interval_" + family + ("" if kind == "forward" else "_" + kind)
    op = getattr(ops, name)
    operands = [tensors[n] for n in ("x_lo", "x_hi", "w_lo", "w_hi")]
    if kind == "backward_weight_point":  # one weight w, passed as w_lo here
        operands = operands[:3]
    if kind == "forward":
        operands += [tensors.get("b_lo"), tensors.get("b_hi")]
    else:
        operands = [tensors["grad_lo"], tensors["grad_hi"]] + operands
    return op(*operands, *config.values(), nonneg)


def malformed(family: str, tensors, config, rng: random.Random, device: str):
    """(description, kind, tensors, config) of calls every backend must refuse."""
    kinds = ["forward", "backward_input", "backward_weight", "backward_weight_point"]
    cases = []

    def add(desc, kinds_, **changes):
        for kind in kinds_:
            t, c = dict(tensors), dict(config)
            for key, value in changes.items():
                (c if key in config else t)[key] = value
            cases.append((desc, kind, t, c))

    used = {"forward": ["x_lo", "x_hi", "w_lo", "w_hi"],
            "backward_input": ["grad_lo", "grad_hi", "x_lo", "x_hi", "w_lo", "w_hi"],
            "backward_weight": ["grad_lo", "grad_hi", "x_lo", "x_hi", "w_lo", "w_hi"],
            "backward_weight_point": ["grad_lo", "grad_hi", "x_lo", "x_hi", "w_lo"]}
    for kind in kinds:
        for name in used[kind]:
            t = tensors[name]
            shapes = [t.shape[:-1] + (t.shape[-1] + 1,), (t.shape[0] + 1,) + t.shape[1:],
                      t.shape + (1,)]
            if t.dim() > 1:
                shapes += [t.shape[1:], (max(t.shape[0] - 1, 0),) + t.shape[1:]]
            if kind == "backward_weight_point" and name == "w_lo" and family != "linear":
                # the one weight a kernel column wider can give the same output width with a
                # stride: a valid call (the other ops see it against an unchanged w_hi)
                shapes = shapes[1:]
            for shape in shapes:
                add(f"{name} shape {tuple(shape)}", [kind], **{name: torch.zeros(shape,
                                                                                 dtype=t.dtype,
                                                                                 device=device)})
            for dtype in (torch.int32, torch.float32, torch.complex128, torch.bool):
                add(f"{name} dtype {dtype}", [kind], **{name: t.to(dtype)})
            if device == "cpu":
                add(f"{name} float16", [kind], **{name: t.half()})
                add(f"{name} sparse", [kind], **{name: t.to_sparse()})
            if torch.cuda.is_available():
                other = "cpu" if device == "cuda" else "cuda"
                add(f"{name} on {other}", [kind], **{name: t.to(other)})
    b = tensors["b_lo"]
    n = b.shape[0]
    add("b_lo without b_hi", ["forward"], b_hi=None)
    add("b_hi without b_lo", ["forward"], b_lo=None)
    for shape in [(n + 1,), (1,) if n > 1 else (2,), (n, 1), (1, n), ()]:
        z = torch.zeros(shape, dtype=b.dtype, device=device)
        add(f"bias shape {shape}", ["forward"], b_lo=z, b_hi=z)
    add("b_hi shape", ["forward"], b_hi=torch.zeros(n + 1, dtype=b.dtype, device=device))
    add("bias dtype", ["forward"], b_lo=b.float(), b_hi=b.float())
    if family == "linear":
        x = tensors["x_lo"]
        add("x 0-d", kinds[:1], x_lo=x[0, 0], x_hi=x[0, 0])
        w = tensors["w_lo"]
        add("w 1-d", kinds, w_lo=w[0], w_hi=w[0])
        add("w 3-d", kinds, w_lo=w[None], w_hi=w[None])
        return cases
    # convolutions: geometry
    for key in ("stride", "dilation"):
        for bad in [[0, 1], [1, -1]] + [[v, 1] for v in BIG[2:]] + [[1, v] for v in BIG[2:]]:
            if key == "stride" and family == "conv2d" and bad[0] > 0 and bad[1] > 0:
                continue  # a huge conv2d stride is valid: one output pixel
            add(f"{key} {bad}", kinds, **{key: bad})
    for bad in [[-1, 0], [0, -5]] + [[v, 0] for v in BIG[2:]]:
        if family == "conv2d" or bad[0] < 0 or bad[1] < 0:
            add(f"padding {bad}", kinds, padding=bad)
    for bad in [0, -1, 3, 2**40, 2**62]:
        add(f"groups {bad}", kinds, groups=bad)
    for bad in [[1], [1, 1, 1]]:
        add(f"stride {bad}", kinds, stride=bad)
    if family == "conv_transpose2d":
        stride = config["stride"]
        add("output_padding = stride", kinds, output_padding=[stride[0], 0])
        add("output_padding -1", kinds, output_padding=[-1, 0])
        add("output_padding 2^62", kinds, output_padding=[2**62, 0])
        add("padding leaves nothing", kinds, padding=[50, 0])
    else:
        add("dilation too large", kinds, dilation=[50, 1])
        add("padding 2^62 (overflow)", kinds, padding=[2**62, 2**62])
    x, w = tensors["x_lo"], tensors["w_lo"]
    zeros = dict(dtype=x.dtype, device=device)
    add("kernel width 0", kinds, w_lo=torch.zeros(*w.shape[:3], 0, **zeros),
        w_hi=torch.zeros(*w.shape[:3], 0, **zeros))
    add("kernel height 0", kinds, w_lo=torch.zeros(w.shape[0], w.shape[1], 0, w.shape[3],
                                                   **zeros),
        w_hi=torch.zeros(w.shape[0], w.shape[1], 0, w.shape[3], **zeros))
    add("input height 0", kinds, x_lo=torch.zeros(x.shape[0], x.shape[1], 0, x.shape[3], **zeros),
        x_hi=torch.zeros(x.shape[0], x.shape[1], 0, x.shape[3], **zeros))
    add("no channels at all", kinds, x_lo=torch.zeros(1, 0, 5, 5, **zeros),
        x_hi=torch.zeros(1, 0, 5, 5, **zeros), w_lo=torch.zeros(0, 0, 3, 3, **zeros),
        w_hi=torch.zeros(0, 0, 3, 3, **zeros))
    add("x 3-d", kinds, x_lo=x[0], x_hi=x[0])
    add("w 3-d", kinds, w_lo=w[0], w_hi=w[0])
    return cases


def fuzz(family: str, seed: int, rounds: int, device: str) -> dict:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    accepted, errors, count = [], {}, 0
    for _ in range(rounds):
        tensors, config = base_case(family, rng, device)
        for desc, kind, t, c in malformed(family, tensors, config, rng, device):
            count += 1
            label = f"{family} {kind}: {desc} (config {c})"
            print(label, file=sys.stderr, flush=True)
            try:
                call(family, kind, t, c)
            except (ValueError, TypeError, RuntimeError, IndexError, NotImplementedError) as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            else:
                accepted.append(label)
    return {"cases": count, "accepted": accepted, "errors": errors}


def main() -> None:
    seed, rounds, device, families = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    warnings.simplefilter("ignore")
    print(json.dumps({family: fuzz(family, seed, rounds, device) for family in families}))


if __name__ == "__main__":
    main()
