// AVX-512 interval GEMMs (float: 16 lanes, double: 8). Compiled for AVX-512 through the target
// pragma below, not through -march, and only run where interval_gemm.cpp's dispatcher found the
// features at run time. Everything compiled under the pragma lives in this file's own namespace.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "../interval_math.h"
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
//  backward input  4 rows x 2 vectors, three (masked) FMAs per term
//  backward weight 3 rows x 2 vectors, the 12 sign masks kept for the whole reduction: 6 in mask
//                  registers, 6 in vector registers
//  small batches   4 rows x 2 columns of dot products
struct Tiles {
  static constexpr int kFwdMR = 6, kFwdNV = 2, kFwdGenMR = 4;
  static constexpr int64_t kFwdKC = 256;
  static constexpr bool kFwdSplitSigns = false;  // see Forward::micro_nonneg
  static constexpr int kBiMR = 4, kBiKV = 2, kBiGenMR = 2, kBiGenKV = 1;
  static constexpr int64_t kBiNC = 128, kBiMC = 96;
  static constexpr int kBwNR = 3, kBwKV = 2, kBwGenNR = 2, kBwGenKV = 1;
  static constexpr int64_t kBwMC = 128;
  static constexpr int64_t kWideCols = 256;
  static constexpr int kDotR = 4, kDotC = 2;
  static constexpr int64_t kDotMaxRows = 8;
  static constexpr int kPixMR = 4, kPixNV = 3;  // pixel-lane forward tile (channels, vectors)
  static constexpr int kPixGenNV = 2;            // its vectors in general mode
  static constexpr int kGradMR = 3, kGradNK = 2;  // pixel-lane weight gradient tile
};

struct F32 : Tiles {
  using T = float;
  using V = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static constexpr bool kStoredMasks = true;  // a mask load is cheaper than a compare into k
  using MaskBits = __mmask16;
  INN_SIMD MaskBits mask_bits(M m) { return m; }
  INN_SIMD M load_mask(const MaskBits* p) { return _load_mask16(const_cast<MaskBits*>(p)); }
  INN_SIMD V load(const T* p) { return _mm512_loadu_ps(p); }
  INN_SIMD V load_partial(const T* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  INN_SIMD T hsum(V v) { return _mm512_reduce_add_ps(v); }
  INN_SIMD void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  INN_SIMD V set1(T x) { return _mm512_set1_ps(x); }
  INN_SIMD V zero() { return _mm512_setzero_ps(); }
  INN_SIMD V add(V a, V b) { return _mm512_add_ps(a, b); }
  INN_SIMD V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  INN_SIMD V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  INN_SIMD M ge0(V a) { return _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GE_OQ); }
  // not (p <= q or p NaN): one compare under the ordered-p mask (mask compares cost FMA slots)
  INN_SIMD M gt(V p, V q) { return _mm512_cmp_ps_mask(p, q, _CMP_GT_OQ); }  // p > q, ordered
  INN_SIMD M lo_takes_h(V p, V q) {
    return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(p, p, _CMP_ORD_Q), p, q, _CMP_NLE_UQ);
  }
  INN_SIMD M hi_takes_h(V p, V q) {
    return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(p, p, _CMP_ORD_Q), p, q, _CMP_NGE_UQ);
  }
  INN_SIMD M mnot(M a) { return static_cast<M>(~a); }
  INN_SIMD M mand(M a, M b) { return static_cast<M>(a & b); }
  INN_SIMD M mandnot(M a, M b) { return static_cast<M>(~a & b); }  // not a, and b
  INN_SIMD bool any(M a) { return a != 0; }
  INN_SIMD V select(M m, V t, V f) { return _mm512_mask_blend_ps(m, f, t); }
  INN_SIMD V mask_fma(M m, V x, V y, V acc) { return _mm512_mask3_fmadd_ps(x, y, acc, m); }
  // min(y, x) returns x when either is NaN, min(x, y) returns y: OR-ing the two keeps a NaN
  // from either side (any NaN bits OR anything is a NaN) and is exact otherwise.
  INN_SIMD V min_nan(V x, V y) { return _mm512_or_ps(_mm512_min_ps(y, x), _mm512_min_ps(x, y)); }
  INN_SIMD V min0(V x) { return _mm512_min_ps(x, _mm512_setzero_ps()); }  // min(x, 0), no NaN
  INN_SIMD V max0(V x) { return _mm512_max_ps(x, _mm512_setzero_ps()); }  // max(x, 0), no NaN
  INN_SIMD V max_nan(V x, V y) { return _mm512_or_ps(_mm512_max_ps(y, x), _mm512_max_ps(x, y)); }
  INN_SIMD V vmask_ge0(V a) { return _mm512_castsi512_ps(_mm512_movm_epi32(ge0(a))); }
  INN_SIMD V vselect(V m, V t, V f) {
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        _mm512_castps_si512(m), _mm512_castps_si512(t), _mm512_castps_si512(f), 0xCA));
  }
  // r[i][j] -> r[j][i] (16 x 16)
  INN_SIMD void transpose(V (&r)[L]) {
    V t[L];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
      r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 4; ++j) {
        t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
        t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
      }
    }
    for (int j = 0; j < 8; ++j) {
      r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
    }
  }
};

struct F64 : Tiles {
  using T = double;
  using V = __m512d;
  using M = __mmask8;
  static constexpr int L = 8;
  static constexpr bool kStoredMasks = true;
  using MaskBits = __mmask8;
  INN_SIMD MaskBits mask_bits(M m) { return m; }
  INN_SIMD M load_mask(const MaskBits* p) { return _load_mask8(const_cast<MaskBits*>(p)); }
  INN_SIMD V load(const T* p) { return _mm512_loadu_pd(p); }
  INN_SIMD V load_partial(const T* p, int n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
  INN_SIMD T hsum(V v) { return _mm512_reduce_add_pd(v); }
  INN_SIMD void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  INN_SIMD V set1(T x) { return _mm512_set1_pd(x); }
  INN_SIMD V zero() { return _mm512_setzero_pd(); }
  INN_SIMD V add(V a, V b) { return _mm512_add_pd(a, b); }
  INN_SIMD V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  INN_SIMD V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  INN_SIMD M ge0(V a) { return _mm512_cmp_pd_mask(a, _mm512_setzero_pd(), _CMP_GE_OQ); }
  // not (p <= q or p NaN): one compare under the ordered-p mask (mask compares cost FMA slots)
  INN_SIMD M gt(V p, V q) { return _mm512_cmp_pd_mask(p, q, _CMP_GT_OQ); }  // p > q, ordered
  INN_SIMD M lo_takes_h(V p, V q) {
    return _mm512_mask_cmp_pd_mask(_mm512_cmp_pd_mask(p, p, _CMP_ORD_Q), p, q, _CMP_NLE_UQ);
  }
  INN_SIMD M hi_takes_h(V p, V q) {
    return _mm512_mask_cmp_pd_mask(_mm512_cmp_pd_mask(p, p, _CMP_ORD_Q), p, q, _CMP_NGE_UQ);
  }
  INN_SIMD M mnot(M a) { return static_cast<M>(~a); }
  INN_SIMD M mand(M a, M b) { return static_cast<M>(a & b); }
  INN_SIMD M mandnot(M a, M b) { return static_cast<M>(~a & b); }  // not a, and b
  INN_SIMD bool any(M a) { return a != 0; }
  INN_SIMD V select(M m, V t, V f) { return _mm512_mask_blend_pd(m, f, t); }
  INN_SIMD V mask_fma(M m, V x, V y, V acc) { return _mm512_mask3_fmadd_pd(x, y, acc, m); }
  INN_SIMD V min_nan(V x, V y) { return _mm512_or_pd(_mm512_min_pd(y, x), _mm512_min_pd(x, y)); }
  INN_SIMD V min0(V x) { return _mm512_min_pd(x, _mm512_setzero_pd()); }  // min(x, 0), no NaN
  INN_SIMD V max0(V x) { return _mm512_max_pd(x, _mm512_setzero_pd()); }  // max(x, 0), no NaN
  INN_SIMD V max_nan(V x, V y) { return _mm512_or_pd(_mm512_max_pd(y, x), _mm512_max_pd(x, y)); }
  INN_SIMD V vmask_ge0(V a) { return _mm512_castsi512_pd(_mm512_movm_epi64(ge0(a))); }
  INN_SIMD V vselect(V m, V t, V f) {
    return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(
        _mm512_castpd_si512(m), _mm512_castpd_si512(t), _mm512_castpd_si512(f), 0xCA));
  }
  // r[i][j] -> r[j][i] (8 x 8)
  INN_SIMD void transpose(V (&r)[L]) {
    V t[L];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 2; ++j) {
        r[4 * i + j] = _mm512_shuffle_f64x2(t[4 * i + j], t[4 * i + 2 + j], 0x88);
        r[4 * i + 2 + j] = _mm512_shuffle_f64x2(t[4 * i + j], t[4 * i + 2 + j], 0xdd);
      }
    }
    for (int j = 0; j < 4; ++j) {
      t[j] = _mm512_shuffle_f64x2(r[j], r[4 + j], 0x88);
      t[4 + j] = _mm512_shuffle_f64x2(r[j], r[4 + j], 0xdd);
    }
    for (int j = 0; j < L; ++j) r[j] = t[j];
  }
};

#undef INN_SIMD

#include "gemm_simd_kernels.h"
#include "pixel_simd_kernels.h"

}  // namespace inn::cpu::avx512

#pragma GCC pop_options

namespace inn::cpu {
const IsaTable kAvx512Kernels{"avx512", avx512::make_kernels<avx512::F32>(),
                              avx512::make_kernels<avx512::F64>(),
                              avx512::make_pixel_kernels<avx512::F32>(),
                              avx512::make_pixel_kernels<avx512::F64>()};
}  // namespace inn::cpu
