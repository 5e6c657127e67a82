// Interval arithmetic shared by the CPU and CUDA kernels.
//
// Everything here is a plain inline function that compiles as host code (g++) and as device code
// (nvcc). No torch headers: the CUDA kernel bodies in csrc/kernels/ include this file, and the
// CPU emulation of those kernels (python_tests/cuda_emulation) compiles them with g++ alone.
//
// Conventions (documented for users in README "Semantics"):
//  * A weight `w in [a, b]` or an input `v in [l, h]` counts as non-negative when its bound is
//    `>= 0`; an exact zero therefore takes the non-negative branch.
//  * The general product picks, for each bound, one of two candidate products. At a tie the
//    candidate built from the lower input bound `l` wins; a NaN candidate always wins, so NaN
//    propagates to the output instead of being dropped by a min/max.
//  * Gradients flow only through the selected candidate.
//  * A bound product of an exact zero and an infinity is 0 (`mul_bound`): a zero weight (or input)
//    bound contributes nothing, however unbounded the other factor is. NaN operands still give NaN.
#pragma once

#if defined(__CUDACC__)
#define INN_HD __host__ __device__ __forceinline__
#else
#define INN_HD inline
#endif

namespace inn {


template <typename T>
INN_HD bool is_nan(T x) { return x != x; }

// The product of two bounds under the convention 0 * inf = 0. A NaN product of two non-NaN
// factors can only be 0 * inf, so only that case is replaced; NaN factors propagate.
template <typename T>
INN_HD T mul_bound(T x, T y) {
  const T p = x * y;
  return (is_nan(p) && !is_nan(x) && !is_nan(y)) ? T(0) : p;
}

// The one place where a bound product is accumulated (under the 0 * inf = 0 convention). A
// floating-point-sound mode (round down for the lower bound, up for the upper) will specialise
// these two functions.
template <typename T>
INN_HD T fma_lo(T x, T y, T acc) { return mul_bound(x, y) + acc; }
template <typename T>
INN_HD T fma_hi(T x, T y, T acc) { return mul_bound(x, y) + acc; }

// Weight interval [a, b] times a non-negative input interval [l, h] (0 <= l <= h): each bound is
// one product, the input bound chosen by the weight's sign.
template <typename T>
INN_HD T nonneg_lo_input(T a, T l, T h) { return a >= T(0) ? l : h; }
template <typename T>
INN_HD T nonneg_hi_input(T b, T l, T h) { return b >= T(0) ? h : l; }

// Which candidate the general product takes for each bound. For a term w*v with w in [a, b] and
// v in [l, h]:
//   lo = min(l * (l >= 0 ? a : b), h * (h >= 0 ? a : b))
//   hi = max(l * (l >= 0 ? b : a), h * (h >= 0 ? b : a))
// `use_l` tells whether the l-candidate was selected (tie: l wins; NaN candidate wins). The
// candidates are bound products (mul_bound: 0 * inf = 0).
template <typename T>
struct TermChoice {
  T value;     // the selected product
  T weight;    // the weight bound it multiplies (a or b)
  bool use_l;  // the input bound it multiplies is l (else h)
  bool weight_is_a;
};

template <typename T>
INN_HD TermChoice<T> general_lo(T a, T b, T l, T h) {
  const T wl = l >= T(0) ? a : b;
  const T wh = h >= T(0) ? a : b;
  const T pl = mul_bound(l, wl);
  const T ph = mul_bound(h, wh);
  const bool take_l = (pl <= ph) || is_nan(pl);
  return take_l ? TermChoice<T>{pl, wl, true, l >= T(0)} : TermChoice<T>{ph, wh, false, h >= T(0)};
}

template <typename T>
INN_HD TermChoice<T> general_hi(T a, T b, T l, T h) {
  const T wl = l >= T(0) ? b : a;
  const T wh = h >= T(0) ? b : a;
  const T pl = mul_bound(l, wl);
  const T ph = mul_bound(h, wh);
  const bool take_l = (pl >= ph) || is_nan(pl);
  return take_l ? TermChoice<T>{pl, wl, true, !(l >= T(0))} : TermChoice<T>{ph, wh, false, !(h >= T(0))};
}

// When the general product's choice follows from signs alone (the CPU pixel-lane kernels'
// classified terms). For a weight of one sign (a and b both >= 0, or both <= 0, in either order)
// each candidate is monotonic in the input bound it multiplies, so one candidate of each bound is
// never beaten (rounding is monotonic too):
//   a, b >= 0: lo takes l's candidate, hi takes h's unless the two tie;
//   a, b <= 0: hi takes l's candidate, lo takes h's unless the two tie.
// The forward needs nothing more (a tie is one value). The gradients do: at a tie the
// l-candidate wins, so the gradient goes to l (and the weight's gradient through l). A tie of
// two candidates cannot happen, except at l == h, where the weight and the input are
// sign-routed:
//   * weight: a and b nonzero, of one sign, magnitudes in [2^-60, 2^60] (a zero bound makes
//     both candidates zero on some lanes; an extreme one lets products underflow or overflow);
//   * input: each bound zero or of magnitude in [2^-60, 2^60], and l == h (the candidates are
//     one product: every term's gradient goes to l), or l < h with h - l at least
//     2^-19 max(|l|, |h|) (the products more than their rounding apart) and not l < 0 == h
//     (the h-candidate then is zero, as the l-candidate is for a zero l).
template <typename T>
INN_HD bool one_sign(T a, T b) {
  return (a >= T(0) && b >= T(0)) || (a <= T(0) && b <= T(0));
}

// Nonzero, of magnitude in [2^-60, 2^60]. (These tests return int and combine with & and |: no
// branches and no bool, so that a loop of them vectorises.)
template <typename T>
INN_HD int routable_magnitude(T v) {
  const T m = v < T(0) ? -v : v;
  return (m >= T(0x1p-60)) & (m <= T(0x1p60));
}

template <typename T>
INN_HD int sign_routed_weight(T a, T b) {
  return (((a > T(0)) & (b > T(0))) | ((a < T(0)) & (b < T(0)))) & routable_magnitude(a) &
         routable_magnitude(b);
}

template <typename T>
INN_HD int sign_routed_input(T l, T h) {
  const T ml = l < T(0) ? -l : l, mh = h < T(0) ? -h : h;
  const T larger = ml > mh ? ml : mh;
  const int ordered = (l < h) & ((l == T(0)) | routable_magnitude(l)) &
                      ((h == T(0)) | routable_magnitude(h)) & (1 - ((l < T(0)) & (h == T(0)))) &
                      (h - l >= T(0x1p-19) * larger);
  return (l == h) | ordered;
}

}  // namespace inn
