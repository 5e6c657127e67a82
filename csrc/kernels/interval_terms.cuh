// What one term of an interval product adds to the two accumulators of a tile element, for the
// forward pass and both gradients. Semantics and tie/NaN conventions: csrc/interval_math.h (the
// CPU GEMMs in csrc/cpu/interval_gemm.cpp implement the same three functions).
//
// For a term w * v with weight w in [a, b] and input v in [l, h]:
//  * forward_term:      (lo, hi) += bounds of the term;
//  * input_grad_term:   (dl, dh) += gl * d lo / d(l, h) + gh * d hi / d(l, h);
//  * weight_grad_term:  (da, db) += gl * d lo / d(a, b) + gh * d hi / d(a, b);
// where the derivatives go through the selected candidate only, and every product is a bound
// product (mul_bound: 0 * inf = 0). kNonneg is the caller's guarantee
// l >= 0 (one product per bound, chosen by the weight's sign).
#pragma once

#include "interval_dtype.cuh"

namespace inn::kernels {

enum class TermKind { kForward, kInputGrad, kWeightGrad };

template <bool kNonneg, typename Acc>
INN_HD void forward_term(Acc l, Acc h, Acc a, Acc b, Acc& lo, Acc& hi) {
  if constexpr (kNonneg) {
    lo = fma_lo(a, nonneg_lo_input(a, l, h), lo);
    hi = fma_hi(b, nonneg_hi_input(b, l, h), hi);
  } else {
    const TermChoice<Acc> cl = general_lo(a, b, l, h);
    const TermChoice<Acc> ch = general_hi(a, b, l, h);
    lo = fma_lo(cl.weight, cl.use_l ? l : h, lo);
    hi = fma_hi(ch.weight, ch.use_l ? l : h, hi);
  }
}

template <bool kNonneg, typename Acc>
INN_HD void input_grad_term(Acc gl, Acc gh, Acc a, Acc b, Acc l, Acc h, Acc& dl, Acc& dh) {
  if constexpr (kNonneg) {
    // lo = a * (a >= 0 ? l : h), hi = b * (b >= 0 ? h : l)
    const Acc pa = mul_bound(gl, a), pb = mul_bound(gh, b);
    if (a >= Acc(0)) dl += pa; else dh += pa;
    if (b >= Acc(0)) dh += pb; else dl += pb;
  } else {
    const TermChoice<Acc> cl = general_lo(a, b, l, h);
    const TermChoice<Acc> ch = general_hi(a, b, l, h);
    const Acc pl = mul_bound(gl, cl.weight), ph = mul_bound(gh, ch.weight);
    if (cl.use_l) dl += pl; else dh += pl;
    if (ch.use_l) dl += ph; else dh += ph;
  }
}

template <bool kNonneg, typename Acc>
INN_HD void weight_grad_term(Acc gl, Acc gh, Acc l, Acc h, Acc a, Acc b, Acc& da, Acc& db) {
  if constexpr (kNonneg) {
    da += mul_bound(gl, nonneg_lo_input(a, l, h));
    db += mul_bound(gh, nonneg_hi_input(b, l, h));
  } else {
    const TermChoice<Acc> cl = general_lo(a, b, l, h);
    const TermChoice<Acc> ch = general_hi(a, b, l, h);
    const Acc pl = mul_bound(gl, cl.use_l ? l : h), ph = mul_bound(gh, ch.use_l ? l : h);
    if (cl.weight_is_a) da += pl; else db += pl;
    if (ch.weight_is_a) da += ph; else db += ph;
  }
}

// One term of a tile problem. `first` and `second` are the two streamed operands, `own` the
// element's own operand (unused by the forward):
//   forward:      first = input (l, h),  second = weight (a, b)
//   input grad:   first = grad (gl, gh), second = weight (a, b), own = input (l, h)
//   weight grad:  first = grad (gl, gh), second = input (l, h),  own = weight (a, b)
template <TermKind kKind, bool kNonneg, typename Acc>
INN_HD void accumulate_term(Acc f0, Acc f1, Acc s0, Acc s1, Acc o0, Acc o1, Acc& acc0, Acc& acc1) {
  if constexpr (kKind == TermKind::kForward) {
    forward_term<kNonneg>(f0, f1, s0, s1, acc0, acc1);
  } else if constexpr (kKind == TermKind::kInputGrad) {
    input_grad_term<kNonneg>(f0, f1, s0, s1, o0, o1, acc0, acc1);
  } else {
    weight_grad_term<kNonneg>(f0, f1, s0, s1, o0, o1, acc0, acc1);
  }
}

}  // namespace inn::kernels
