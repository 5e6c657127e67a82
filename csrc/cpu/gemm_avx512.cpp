// AVX-512 interval GEMMs (float: 16 lanes, double: 8). Compiled for AVX-512 through the target
// pragma below, not through -march, and only run where interval_gemm.cpp's dispatcher found the
// features at run time. Everything compiled under the pragma lives in this file's own namespace.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gemm_isa.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,fma")
// GCC 12 flags _mm512_undefined_ps() inside the min/max intrinsics as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace inn::cpu::avx512 {

#define INN_SIMD static inline __attribute__((always_inline))

// Register tiles (see gemm_simd_kernels.h): 32 vector registers and 7 usable mask registers.
//  forward nonneg  6 rows x 2 vectors: 24 accumulators, 4 weight vectors, 2 broadcasts
//  forward general 4 rows x 2 vectors: 16 accumulators + candidate temporaries
//  backward input  6 rows x 2 vectors (masked FMAs route each product)
//  backward weight 3 rows x 2 vectors, sign masks kept in vector registers for the reduction
struct Tiles {
  static constexpr int kFwdMR = 6, kFwdNV = 2, kFwdGenMR = 4;
  static constexpr int64_t kFwdKC = 128, kFwdMC = 96;
  static constexpr int kBiMR = 6, kBiKV = 2, kBiGenMR = 2, kBiGenKV = 1;
  static constexpr int64_t kBiNC = 128, kBiMC = 96;
  static constexpr int kBwNR = 3, kBwKV = 2, kBwGenNR = 2, kBwGenKV = 1;
  static constexpr int64_t kBwMC = 128;
  static constexpr int64_t kWideCols = 256;
};

struct F32 : Tiles {
  using T = float;
  using V = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  INN_SIMD V load(const T* p) { return _mm512_loadu_ps(p); }
  INN_SIMD void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  INN_SIMD V set1(T x) { return _mm512_set1_ps(x); }
  INN_SIMD V zero() { return _mm512_setzero_ps(); }
  INN_SIMD V add(V a, V b) { return _mm512_add_ps(a, b); }
  INN_SIMD V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  INN_SIMD V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  INN_SIMD M ge0(V a) { return _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GE_OQ); }
  INN_SIMD M le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  INN_SIMD M ge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  INN_SIMD M isnan(V a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  INN_SIMD M mand(M a, M b) { return static_cast<M>(a & b); }
  INN_SIMD M mor(M a, M b) { return static_cast<M>(a | b); }
  INN_SIMD M mnot(M a) { return static_cast<M>(~a); }
  INN_SIMD M mandnot(M a, M b) { return static_cast<M>(~a & b); }
  INN_SIMD V select(M m, V t, V f) { return _mm512_mask_blend_ps(m, f, t); }
  INN_SIMD V mask_fma(M m, V x, V y, V acc) { return _mm512_mask3_fmadd_ps(x, y, acc, m); }
  // min(y, x) returns x when either is NaN, min(x, y) returns y: OR-ing the two keeps a NaN
  // from either side (any NaN bits OR anything is a NaN) and is exact otherwise.
  INN_SIMD V min_nan(V x, V y) { return _mm512_or_ps(_mm512_min_ps(y, x), _mm512_min_ps(x, y)); }
  INN_SIMD V max_nan(V x, V y) { return _mm512_or_ps(_mm512_max_ps(y, x), _mm512_max_ps(x, y)); }
  INN_SIMD V vmask_ge0(V a) { return _mm512_castsi512_ps(_mm512_movm_epi32(ge0(a))); }
  INN_SIMD V vselect(V m, V t, V f) {
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        _mm512_castps_si512(m), _mm512_castps_si512(t), _mm512_castps_si512(f), 0xCA));
  }
};

struct F64 : Tiles {
  using T = double;
  using V = __m512d;
  using M = __mmask8;
  static constexpr int L = 8;
  INN_SIMD V load(const T* p) { return _mm512_loadu_pd(p); }
  INN_SIMD void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  INN_SIMD V set1(T x) { return _mm512_set1_pd(x); }
  INN_SIMD V zero() { return _mm512_setzero_pd(); }
  INN_SIMD V add(V a, V b) { return _mm512_add_pd(a, b); }
  INN_SIMD V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  INN_SIMD V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  INN_SIMD M ge0(V a) { return _mm512_cmp_pd_mask(a, _mm512_setzero_pd(), _CMP_GE_OQ); }
  INN_SIMD M le(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ); }
  INN_SIMD M ge(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
  INN_SIMD M isnan(V a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
  INN_SIMD M mand(M a, M b) { return static_cast<M>(a & b); }
  INN_SIMD M mor(M a, M b) { return static_cast<M>(a | b); }
  INN_SIMD M mnot(M a) { return static_cast<M>(~a); }
  INN_SIMD M mandnot(M a, M b) { return static_cast<M>(~a & b); }
  INN_SIMD V select(M m, V t, V f) { return _mm512_mask_blend_pd(m, f, t); }
  INN_SIMD V mask_fma(M m, V x, V y, V acc) { return _mm512_mask3_fmadd_pd(x, y, acc, m); }
  INN_SIMD V min_nan(V x, V y) { return _mm512_or_pd(_mm512_min_pd(y, x), _mm512_min_pd(x, y)); }
  INN_SIMD V max_nan(V x, V y) { return _mm512_or_pd(_mm512_max_pd(y, x), _mm512_max_pd(x, y)); }
  INN_SIMD V vmask_ge0(V a) { return _mm512_castsi512_pd(_mm512_movm_epi64(ge0(a))); }
  INN_SIMD V vselect(V m, V t, V f) {
    return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(
        _mm512_castpd_si512(m), _mm512_castpd_si512(t), _mm512_castpd_si512(f), 0xCA));
  }
};

#undef INN_SIMD

#include "gemm_simd_kernels.h"

}  // namespace inn::cpu::avx512

#pragma GCC pop_options

namespace inn::cpu {
const IsaTable kAvx512Kernels{"avx512", avx512::make_kernels<avx512::F32>(),
                              avx512::make_kernels<avx512::F64>()};
}  // namespace inn::cpu
