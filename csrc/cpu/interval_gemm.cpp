// Straightforward CPU implementation of the interval GEMMs (correctness baseline; one output
// element per inner loop, parallel over rows).
#include "interval_gemm.h"

#include <ATen/Parallel.h>

#include "../interval_math.h"
#include "cpu_isa.h"

namespace inn::cpu {

const char* active_isa() { return "scalar"; }

namespace {
constexpr int64_t kGrain = 4;
}

template <typename T>
void interval_gemm_forward(int64_t M, int64_t N, int64_t K, ConstView<T> x_lo, ConstView<T> x_hi,
                           ConstView<T> w_lo, ConstView<T> w_hi, View<T> y_lo, View<T> y_hi,
                           bool input_nonneg, bool accumulate) {
  at::parallel_for(0, M, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        T acc_lo = accumulate ? y_lo(m, n) : T(0);
        T acc_hi = accumulate ? y_hi(m, n) : T(0);
        for (int64_t k = 0; k < K; ++k) {
          const T l = x_lo(m, k), h = x_hi(m, k), a = w_lo(n, k), b = w_hi(n, k);
          if (input_nonneg) {
            acc_lo = fma_lo(a, nonneg_lo_input(a, l, h), acc_lo);
            acc_hi = fma_hi(b, nonneg_hi_input(b, l, h), acc_hi);
          } else {
            const TermChoice<T> lo = general_lo(a, b, l, h);
            const TermChoice<T> hi = general_hi(a, b, l, h);
            acc_lo = fma_lo(lo.weight, lo.use_l ? l : h, acc_lo);
            acc_hi = fma_hi(hi.weight, hi.use_l ? l : h, acc_hi);
          }
        }
        y_lo(m, n) = acc_lo;
        y_hi(m, n) = acc_hi;
      }
    }
  });
}

template <typename T>
void interval_gemm_backward_input(int64_t M, int64_t N, int64_t K, ConstView<T> g_lo,
                                  ConstView<T> g_hi, ConstView<T> x_lo, ConstView<T> x_hi,
                                  ConstView<T> w_lo, ConstView<T> w_hi, View<T> dx_lo,
                                  View<T> dx_hi, bool input_nonneg, bool accumulate) {
  at::parallel_for(0, M, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      for (int64_t k = 0; k < K; ++k) {
        T acc_l = accumulate ? dx_lo(m, k) : T(0);
        T acc_h = accumulate ? dx_hi(m, k) : T(0);
        const T l = x_lo(m, k), h = x_hi(m, k);
        for (int64_t n = 0; n < N; ++n) {
          const T gl = g_lo(m, n), gh = g_hi(m, n), a = w_lo(n, k), b = w_hi(n, k);
          bool lo_uses_l, hi_uses_l;
          if (input_nonneg) {
            lo_uses_l = a >= T(0);
            hi_uses_l = !(b >= T(0));
          } else {
            lo_uses_l = general_lo(a, b, l, h).use_l;
            hi_uses_l = general_hi(a, b, l, h).use_l;
          }
          const T lo_weight = input_nonneg ? a : general_lo(a, b, l, h).weight;
          const T hi_weight = input_nonneg ? b : general_hi(a, b, l, h).weight;
          (lo_uses_l ? acc_l : acc_h) += gl * lo_weight;
          (hi_uses_l ? acc_l : acc_h) += gh * hi_weight;
        }
        dx_lo(m, k) = acc_l;
        dx_hi(m, k) = acc_h;
      }
    }
  });
}

template <typename T>
void interval_gemm_backward_weight(int64_t M, int64_t N, int64_t K, ConstView<T> g_lo,
                                   ConstView<T> g_hi, ConstView<T> x_lo, ConstView<T> x_hi,
                                   ConstView<T> w_lo, ConstView<T> w_hi, View<T> dw_lo,
                                   View<T> dw_hi, bool input_nonneg, bool accumulate) {
  at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        T acc_a = accumulate ? dw_lo(n, k) : T(0);
        T acc_b = accumulate ? dw_hi(n, k) : T(0);
        const T a = w_lo(n, k), b = w_hi(n, k);
        for (int64_t m = 0; m < M; ++m) {
          const T gl = g_lo(m, n), gh = g_hi(m, n), l = x_lo(m, k), h = x_hi(m, k);
          if (input_nonneg) {
            acc_a += gl * nonneg_lo_input(a, l, h);
            acc_b += gh * nonneg_hi_input(b, l, h);
          } else {
            const TermChoice<T> lo = general_lo(a, b, l, h);
            const TermChoice<T> hi = general_hi(a, b, l, h);
            (lo.weight_is_a ? acc_a : acc_b) += gl * (lo.use_l ? l : h);
            (hi.weight_is_a ? acc_a : acc_b) += gh * (hi.use_l ? l : h);
          }
        }
        dw_lo(n, k) = acc_a;
        dw_hi(n, k) = acc_b;
      }
    }
  });
}

#define INN_INSTANTIATE(T)                                                                     \
  template void interval_gemm_forward<T>(int64_t, int64_t, int64_t, ConstView<T>, ConstView<T>, \
                                         ConstView<T>, ConstView<T>, View<T>, View<T>, bool,   \
                                         bool);                                                \
  template void interval_gemm_backward_input<T>(int64_t, int64_t, int64_t, ConstView<T>,       \
                                                ConstView<T>, ConstView<T>, ConstView<T>,      \
                                                ConstView<T>, ConstView<T>, View<T>, View<T>,  \
                                                bool, bool);                                   \
  template void interval_gemm_backward_weight<T>(int64_t, int64_t, int64_t, ConstView<T>,      \
                                                 ConstView<T>, ConstView<T>, ConstView<T>,     \
                                                 ConstView<T>, ConstView<T>, View<T>, View<T>, \
                                                 bool, bool);
INN_INSTANTIATE(float)
INN_INSTANTIATE(double)
#undef INN_INSTANTIATE

}  // namespace inn::cpu
