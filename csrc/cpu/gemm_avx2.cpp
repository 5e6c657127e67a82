// AVX2 + FMA interval GEMMs (float: 8 lanes, double: 4). Compiled for AVX2 through the target
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
#pragma GCC target("avx2,fma")

namespace inn::cpu::avx2 {

#define INN_SIMD static inline __attribute__((always_inline))

// Register tiles for 16 vector registers; masks are vectors too (no mask registers).
struct Tiles {
  static constexpr int kFwdMR = 4, kFwdNV = 1, kFwdGenMR = 2;
  static constexpr int64_t kFwdKC = 256;
  static constexpr bool kFwdSplitSigns = true;  // see Forward::micro_nonneg
  static constexpr int kBiMR = 3, kBiKV = 1, kBiGenMR = 1, kBiGenKV = 1;
  static constexpr int64_t kBiNC = 256, kBiMC = 96;
  static constexpr int kBwNR = 2, kBwKV = 1, kBwGenNR = 1, kBwGenKV = 1;
  static constexpr int64_t kBwMC = 256;
  static constexpr int64_t kWideCols = 256;
  static constexpr int kDotR = 2, kDotC = 2;
  static constexpr int64_t kDotMaxRows = 8;
  static constexpr int kPixMR = 2, kPixNV = 2;  // pixel-lane forward tile (channels, vectors)
  static constexpr int kPixGenNV = 1;            // its vectors in general mode
  static constexpr int kGradMR = 1, kGradNK = 2;  // pixel-lane weight gradient tile
};

struct F32 : Tiles {
  using T = float;
  using V = __m256;
  using M = __m256;
  static constexpr int L = 8;
  static constexpr bool kStoredMasks = false;  // vector compares issue beside the FMAs
  using MaskBits = uint8_t;
  INN_SIMD MaskBits mask_bits(M) { return 0; }
  INN_SIMD M load_mask(const MaskBits*) { return zero(); }
  INN_SIMD V load(const T* p) { return _mm256_loadu_ps(p); }
  INN_SIMD V load_partial(const T* p, int n) {
    if (n == L) return load(p);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes));
  }
  INN_SIMD T hsum(V v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
  INN_SIMD void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  INN_SIMD V set1(T x) { return _mm256_set1_ps(x); }
  INN_SIMD V zero() { return _mm256_setzero_ps(); }
  INN_SIMD V add(V a, V b) { return _mm256_add_ps(a, b); }
  INN_SIMD V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  INN_SIMD V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  INN_SIMD M ge0(V a) { return _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GE_OQ); }
  // not (p <= q or p NaN), resp. not (p >= q or p NaN)
  INN_SIMD M gt(V p, V q) { return _mm256_cmp_ps(p, q, _CMP_GT_OQ); }  // p > q, ordered
  INN_SIMD M lo_takes_h(V p, V q) {
    return _mm256_and_ps(_mm256_cmp_ps(p, p, _CMP_ORD_Q), _mm256_cmp_ps(p, q, _CMP_NLE_UQ));
  }
  INN_SIMD M hi_takes_h(V p, V q) {
    return _mm256_and_ps(_mm256_cmp_ps(p, p, _CMP_ORD_Q), _mm256_cmp_ps(p, q, _CMP_NGE_UQ));
  }
  INN_SIMD M mand(M a, M b) { return _mm256_and_ps(a, b); }
  INN_SIMD M mandnot(M a, M b) { return _mm256_andnot_ps(a, b); }  // not a, and b
  INN_SIMD bool any(M a) { return _mm256_movemask_ps(a) != 0; }
  INN_SIMD M mnot(M a) { return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(-1))); }
  INN_SIMD V select(M m, V t, V f) { return _mm256_blendv_ps(f, t, m); }
  // The product is masked (not the weight), so an unselected lane adds exactly +0.
  INN_SIMD V mask_fma(M m, V x, V y, V acc) {
    return _mm256_add_ps(acc, _mm256_and_ps(m, _mm256_mul_ps(x, y)));
  }
  // min(y, x) returns x when either is NaN, min(x, y) returns y: OR-ing the two keeps a NaN
  // from either side (any NaN bits OR anything is a NaN) and is exact otherwise.
  INN_SIMD V min_nan(V x, V y) { return _mm256_or_ps(_mm256_min_ps(y, x), _mm256_min_ps(x, y)); }
  INN_SIMD V min0(V x) { return _mm256_min_ps(x, _mm256_setzero_ps()); }  // min(x, 0), no NaN
  INN_SIMD V max0(V x) { return _mm256_max_ps(x, _mm256_setzero_ps()); }  // max(x, 0), no NaN
  INN_SIMD V max_nan(V x, V y) { return _mm256_or_ps(_mm256_max_ps(y, x), _mm256_max_ps(x, y)); }
  INN_SIMD V vmask_ge0(V a) { return ge0(a); }
  INN_SIMD V vselect(V m, V t, V f) { return select(m, t, f); }
  // r[i][j] -> r[j][i] (8 x 8)
  INN_SIMD void transpose(V (&r)[L]) {
    V t[L];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {
      r[4 * i + 0] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; ++j) {
      t[j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x20);
      t[4 + j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x31);
    }
    for (int j = 0; j < L; ++j) r[j] = t[j];
  }
};

struct F64 : Tiles {
  using T = double;
  using V = __m256d;
  using M = __m256d;
  static constexpr int L = 4;
  static constexpr bool kStoredMasks = false;  // vector compares issue beside the FMAs
  using MaskBits = uint8_t;
  INN_SIMD MaskBits mask_bits(M) { return 0; }
  INN_SIMD M load_mask(const MaskBits*) { return zero(); }
  INN_SIMD V load(const T* p) { return _mm256_loadu_pd(p); }
  INN_SIMD V load_partial(const T* p, int n) {
    if (n == L) return load(p);
    const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lanes));
  }
  INN_SIMD T hsum(V v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  INN_SIMD void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  INN_SIMD V set1(T x) { return _mm256_set1_pd(x); }
  INN_SIMD V zero() { return _mm256_setzero_pd(); }
  INN_SIMD V add(V a, V b) { return _mm256_add_pd(a, b); }
  INN_SIMD V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  INN_SIMD V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  INN_SIMD M ge0(V a) { return _mm256_cmp_pd(a, _mm256_setzero_pd(), _CMP_GE_OQ); }
  // not (p <= q or p NaN), resp. not (p >= q or p NaN)
  INN_SIMD M gt(V p, V q) { return _mm256_cmp_pd(p, q, _CMP_GT_OQ); }  // p > q, ordered
  INN_SIMD M lo_takes_h(V p, V q) {
    return _mm256_and_pd(_mm256_cmp_pd(p, p, _CMP_ORD_Q), _mm256_cmp_pd(p, q, _CMP_NLE_UQ));
  }
  INN_SIMD M hi_takes_h(V p, V q) {
    return _mm256_and_pd(_mm256_cmp_pd(p, p, _CMP_ORD_Q), _mm256_cmp_pd(p, q, _CMP_NGE_UQ));
  }
  INN_SIMD M mand(M a, M b) { return _mm256_and_pd(a, b); }
  INN_SIMD M mandnot(M a, M b) { return _mm256_andnot_pd(a, b); }  // not a, and b
  INN_SIMD bool any(M a) { return _mm256_movemask_pd(a) != 0; }
  INN_SIMD M mnot(M a) { return _mm256_xor_pd(a, _mm256_castsi256_pd(_mm256_set1_epi64x(-1))); }
  INN_SIMD V select(M m, V t, V f) { return _mm256_blendv_pd(f, t, m); }
  INN_SIMD V mask_fma(M m, V x, V y, V acc) {
    return _mm256_add_pd(acc, _mm256_and_pd(m, _mm256_mul_pd(x, y)));
  }
  INN_SIMD V min_nan(V x, V y) { return _mm256_or_pd(_mm256_min_pd(y, x), _mm256_min_pd(x, y)); }
  INN_SIMD V min0(V x) { return _mm256_min_pd(x, _mm256_setzero_pd()); }  // min(x, 0), no NaN
  INN_SIMD V max0(V x) { return _mm256_max_pd(x, _mm256_setzero_pd()); }  // max(x, 0), no NaN
  INN_SIMD V max_nan(V x, V y) { return _mm256_or_pd(_mm256_max_pd(y, x), _mm256_max_pd(x, y)); }
  INN_SIMD V vmask_ge0(V a) { return ge0(a); }
  INN_SIMD V vselect(V m, V t, V f) { return select(m, t, f); }
  // r[i][j] -> r[j][i] (4 x 4)
  INN_SIMD void transpose(V (&r)[L]) {
    const V t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const V t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
};

#undef INN_SIMD

#include "gemm_simd_kernels.h"
#include "pixel_simd_kernels.h"

}  // namespace inn::cpu::avx2

#pragma GCC pop_options

namespace inn::cpu {
const IsaTable kAvx2Kernels{"avx2", avx2::make_kernels<avx2::F32>(),
                            avx2::make_kernels<avx2::F64>(),
                            avx2::make_pixel_kernels<avx2::F32>(),
                            avx2::make_pixel_kernels<avx2::F64>()};
}  // namespace inn::cpu
