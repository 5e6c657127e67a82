// AVX2 + FMA interval GEMMs (float: 8 lanes, double: 4). Compiled for AVX2 through the target
// pragma below, not through -march, and only run where interval_gemm.cpp's dispatcher found the
// features at run time. Everything compiled under the pragma lives in this file's own namespace.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gemm_isa.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace inn::cpu::avx2 {

#define INN_SIMD static inline __attribute__((always_inline))

// Register tiles for 16 vector registers; masks are vectors too (no mask registers).
struct Tiles {
  static constexpr int kFwdMR = 4, kFwdNV = 1, kFwdGenMR = 2;
  static constexpr int64_t kFwdKC = 256, kFwdMC = 96;
  static constexpr int kBiMR = 3, kBiKV = 1, kBiGenMR = 1, kBiGenKV = 1;
  static constexpr int64_t kBiNC = 256, kBiMC = 96;
  static constexpr int kBwNR = 2, kBwKV = 1, kBwGenNR = 1, kBwGenKV = 1;
  static constexpr int64_t kBwMC = 256;
  static constexpr int64_t kWideCols = 256;
};

struct F32 : Tiles {
  using T = float;
  using V = __m256;
  using M = __m256;
  static constexpr int L = 8;
  INN_SIMD V load(const T* p) { return _mm256_loadu_ps(p); }
  INN_SIMD void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  INN_SIMD V set1(T x) { return _mm256_set1_ps(x); }
  INN_SIMD V zero() { return _mm256_setzero_ps(); }
  INN_SIMD V add(V a, V b) { return _mm256_add_ps(a, b); }
  INN_SIMD V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  INN_SIMD V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  INN_SIMD M ge0(V a) { return _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GE_OQ); }
  INN_SIMD M le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  INN_SIMD M ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  INN_SIMD M isnan(V a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  INN_SIMD M mand(M a, M b) { return _mm256_and_ps(a, b); }
  INN_SIMD M mor(M a, M b) { return _mm256_or_ps(a, b); }
  INN_SIMD M mnot(M a) { return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(-1))); }
  INN_SIMD M mandnot(M a, M b) { return _mm256_andnot_ps(a, b); }
  INN_SIMD V select(M m, V t, V f) { return _mm256_blendv_ps(f, t, m); }
  // The product is masked (not the weight), so an unselected lane adds exactly +0.
  INN_SIMD V mask_fma(M m, V x, V y, V acc) {
    return _mm256_add_ps(acc, _mm256_and_ps(m, _mm256_mul_ps(x, y)));
  }
  // min(y, x) returns x when either is NaN, min(x, y) returns y: OR-ing the two keeps a NaN
  // from either side (any NaN bits OR anything is a NaN) and is exact otherwise.
  INN_SIMD V min_nan(V x, V y) { return _mm256_or_ps(_mm256_min_ps(y, x), _mm256_min_ps(x, y)); }
  INN_SIMD V max_nan(V x, V y) { return _mm256_or_ps(_mm256_max_ps(y, x), _mm256_max_ps(x, y)); }
  INN_SIMD V vmask_ge0(V a) { return ge0(a); }
  INN_SIMD V vselect(V m, V t, V f) { return select(m, t, f); }
};

struct F64 : Tiles {
  using T = double;
  using V = __m256d;
  using M = __m256d;
  static constexpr int L = 4;
  INN_SIMD V load(const T* p) { return _mm256_loadu_pd(p); }
  INN_SIMD void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  INN_SIMD V set1(T x) { return _mm256_set1_pd(x); }
  INN_SIMD V zero() { return _mm256_setzero_pd(); }
  INN_SIMD V add(V a, V b) { return _mm256_add_pd(a, b); }
  INN_SIMD V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  INN_SIMD V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  INN_SIMD M ge0(V a) { return _mm256_cmp_pd(a, _mm256_setzero_pd(), _CMP_GE_OQ); }
  INN_SIMD M le(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LE_OQ); }
  INN_SIMD M ge(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
  INN_SIMD M isnan(V a) { return _mm256_cmp_pd(a, a, _CMP_UNORD_Q); }
  INN_SIMD M mand(M a, M b) { return _mm256_and_pd(a, b); }
  INN_SIMD M mor(M a, M b) { return _mm256_or_pd(a, b); }
  INN_SIMD M mnot(M a) { return _mm256_xor_pd(a, _mm256_castsi256_pd(_mm256_set1_epi64x(-1))); }
  INN_SIMD M mandnot(M a, M b) { return _mm256_andnot_pd(a, b); }
  INN_SIMD V select(M m, V t, V f) { return _mm256_blendv_pd(f, t, m); }
  INN_SIMD V mask_fma(M m, V x, V y, V acc) {
    return _mm256_add_pd(acc, _mm256_and_pd(m, _mm256_mul_pd(x, y)));
  }
  INN_SIMD V min_nan(V x, V y) { return _mm256_or_pd(_mm256_min_pd(y, x), _mm256_min_pd(x, y)); }
  INN_SIMD V max_nan(V x, V y) { return _mm256_or_pd(_mm256_max_pd(y, x), _mm256_max_pd(x, y)); }
  INN_SIMD V vmask_ge0(V a) { return ge0(a); }
  INN_SIMD V vselect(V m, V t, V f) { return select(m, t, f); }
};

#undef INN_SIMD

#include "gemm_simd_kernels.h"

}  // namespace inn::cpu::avx2

#pragma GCC pop_options

namespace inn::cpu {
const IsaTable kAvx2Kernels{"avx2", avx2::make_kernels<avx2::F32>(),
                            avx2::make_kernels<avx2::F64>()};
}  // namespace inn::cpu
