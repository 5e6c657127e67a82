"""The 0 * inf = 0 bound convention (``inn::mul_bound``, csrc/interval_math.h) in every CPU
kernel: linear, conv2d and conv_transpose2d, forward and both gradients, non-negative and
general mode, on every SIMD path this CPU supports (the ``cpu_isa`` fixture of conftest.py).

The SIMD kernels multiply plainly and route a call with a non-finite operand to the scalar
kernels, whose products are bound products; these tests feed such operands (infinite bounds,
exact zeros in inputs, weights and gradients) through every path of test_cpu_conv_paths.py and
compare exactly with an independent brute-force float64 oracle: every term of the layer listed
as (output, input, weight) indices, each bound product under the convention, gradients routed
through the selected candidate. Small integers keep every finite sum exact; a sum of +inf and
-inf is NaN in the oracle and the kernels alike.
"""

import pytest
import torch

import inn_cuda

from bound_oracle import check, conv_terms, linear_terms, with_infinities
from conv_cases import CASES, config

pytestmark = pytest.mark.usefixtures("cpu_isa")
ops = torch.ops.inn_cuda


DTYPES = [torch.float32, torch.float64]
MODES = [pytest.param(False, id="general"), pytest.param(True, id="nonneg")]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("mkn", [(5, 37, 9), (33, 130, 40)], ids=str)
def test_linear_follows_the_convention(mkn, nonneg, dtype):
    m, k, n = mkn
    operands = with_infinities((m, k), (n, k), (m, n), nonneg=nonneg, dtype=dtype, seed=m + k)
    check(ops, "interval_linear", linear_terms(m, n, k), [], operands, nonneg)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nonneg", MODES)
@pytest.mark.parametrize("case", [c for c in CASES if c[1][0] > 0],
                         ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
def test_convolutions_follow_the_convention(case, nonneg, dtype):
    op, x_shape, w_shape, c = case
    cfg = config(op, c)
    terms = conv_terms(op, x_shape, w_shape, cfg)
    operands = with_infinities(x_shape, w_shape, terms[3], nonneg=nonneg, dtype=dtype,
                               seed=sum(x_shape) + sum(w_shape))
    check(ops, "interval_" + op, terms, cfg, operands, nonneg)


def test_nan_operands_still_propagate():
    x = torch.tensor([[float("nan"), 1.0]])
    w = torch.tensor([[0.0, 1.0]])
    with inn_cuda.check_bounds(False):
        lo, hi = ops.interval_linear(x, x, w, w, None, None, True)
    assert torch.isnan(lo).all() and torch.isnan(hi).all()  # NaN * 0 is NaN, not 0
