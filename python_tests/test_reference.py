"""The explicit backward formulas of inn_cuda.reference (what serves the backward ops wherever no
kernel is compiled) against autograd through the reference forward."""

import pytest
import torch

from inn_cuda import reference

from helpers import random_interval

CASES = [  # op, x shape, w shape, config before input_nonneg
    ("interval_linear", (2, 3, 7), (5, 7), ()),
    ("interval_linear", (0, 7), (5, 7), ()),
    ("interval_conv2d", (2, 4, 7, 6), (6, 2, 3, 2), ((2, 1), (1, 0), (1, 2), 2)),
    ("interval_conv2d", (1, 3, 5, 5), (4, 3, 1, 1), ((1, 1), (0, 0), (1, 1), 1)),
    ("interval_conv_transpose2d", (2, 4, 4, 3), (4, 3, 3, 2), ((2, 3), (1, 0), (1, 2), 2, (1, 1))),
    ("interval_conv_transpose2d", (1, 2, 3, 3), (2, 3, 2, 2), ((2, 2), (0, 0), (0, 0), 1, (2, 1))),
]


@pytest.mark.parametrize("nonneg", [False, True], ids=["general", "nonneg"])
@pytest.mark.parametrize("op,x_shape,w_shape,config", CASES)
def test_explicit_backward_equals_autograd(op, x_shape, w_shape, config, nonneg):
    x_lo, x_hi = random_interval(x_shape, nonneg=nonneg)
    w_lo, w_hi = random_interval(w_shape, width=0.4)
    forward = reference.OPS[op]
    y_lo, _ = forward(x_lo, x_hi, w_lo, w_hi, None, None, *config, nonneg)
    g_lo, g_hi = torch.randn_like(y_lo), torch.randn_like(y_lo)
    expected = reference.vjp(forward, (x_lo, x_hi, w_lo, w_hi, None, None, *config, nonneg),
                             range(4), g_lo, g_hi)
    args = (g_lo, g_hi, x_lo, x_hi, w_lo, w_hi, *config, nonneg)
    got = (*reference.OPS[op + "_backward_input"](*args),
           *reference.OPS[op + "_backward_weight"](*args))
    for name, a, b in zip(("x_lo", "x_hi", "w_lo", "w_hi"), got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"gradient of {name}")
