"""Exact interval matrix product of two interval operands, batched like ``torch.matmul``.

``[A] @ [B]`` with ``A`` of shape ``(*, M, K)`` and ``B`` of shape ``(*, K, N)`` is, for each batch
entry, the fused general product :func:`inn_cuda.interval_linear` with ``B^T`` as its interval
weight: every term ``a_mk * b_kn`` has its own two intervals, so the per-term bounds summed over
``k`` are the exact bounds of each output element.
"""

from __future__ import annotations

from typing import Tuple

import torch

from . import ops

Tensor = torch.Tensor
Pair = Tuple[Tensor, Tensor]


def interval_matmul(a_lo: Tensor, a_hi: Tensor, b_lo: Tensor, b_hi: Tensor, *,
                    input_nonneg: bool = False) -> Pair:
    """Exact interval ``torch.matmul(A, B)`` for ``A in [a_lo, a_hi]``, ``B in [b_lo, b_hi]``
    (1-D operands and broadcast batch dims as in ``torch.matmul``). ``input_nonneg=True`` is the
    caller's guarantee that ``a_lo >= 0`` (the fast path)."""
    for name, t in (("a_lo", a_lo), ("a_hi", a_hi), ("b_lo", b_lo), ("b_hi", b_hi)):
        if not isinstance(t, Tensor):
            raise TypeError(f"interval_matmul: {name} must be a tensor, got {type(t).__name__}")
        if t.dim() < 1:
            raise ValueError(f"interval_matmul: {name} must have at least 1 dim, got a scalar")
    if a_lo.shape != a_hi.shape or b_lo.shape != b_hi.shape:
        raise ValueError(f"interval_matmul: a_lo/a_hi shapes {tuple(a_lo.shape)}/"
                         f"{tuple(a_hi.shape)} and b_lo/b_hi shapes {tuple(b_lo.shape)}/"
                         f"{tuple(b_hi.shape)} must match pairwise")
    vector_a, vector_b = a_lo.dim() == 1, b_lo.dim() == 1
    if vector_a:
        a_lo, a_hi = a_lo.unsqueeze(0), a_hi.unsqueeze(0)
    if vector_b:
        b_lo, b_hi = b_lo.unsqueeze(-1), b_hi.unsqueeze(-1)
    if a_lo.shape[-1] != b_lo.shape[-2]:
        raise ValueError(f"interval_matmul: a has shape {tuple(a_lo.shape)} and b "
                         f"{tuple(b_lo.shape)}; a's last dim must equal b's second to last")
    batch = torch.broadcast_shapes(a_lo.shape[:-2], b_lo.shape[:-2])
    m, k, n = a_lo.shape[-2], a_lo.shape[-1], b_lo.shape[-1]
    a = [t.expand(*batch, m, k).reshape(-1, m, k) for t in (a_lo, a_hi)]
    b = [t.expand(*batch, k, n).reshape(-1, k, n).transpose(1, 2).contiguous()
         for t in (b_lo, b_hi)]
    outs = [ops.interval_linear(a[0][i], a[1][i], b[0][i], b[1][i], input_nonneg=input_nonneg)
            for i in range(a[0].shape[0])]
    if outs:
        lo = torch.stack([o[0] for o in outs]).reshape(*batch, m, n)
        hi = torch.stack([o[1] for o in outs]).reshape(*batch, m, n)
    else:
        lo = hi = a_lo.new_zeros(*batch, m, n)
    if vector_a:
        lo, hi = lo.squeeze(-2), hi.squeeze(-2)
    if vector_b:
        lo, hi = lo.squeeze(-1), hi.squeeze(-1)
    return lo, hi
