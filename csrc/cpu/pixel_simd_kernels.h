// The pixel-lane kernels of the CPU interval convolutions (interval_conv_cpu.cpp), written once
// over the vector traits `S` of gemm_simd_kernels.h and included, like it, INSIDE the namespace of
// each SIMD translation unit after its target pragma (so it includes nothing itself).
//
// Lanes run over pixels (a row of a chunk buffer), weights are broadcast scalars. In non-negative
// mode every term of an interval convolution is one product of a weight bound and ONE row of
// pixels, the row chosen by the weight's sign alone, which is one scalar per term. So the caller
// resolves all selections once per call into term lists (coefficient, source row), and the
// kernels below are plain multiply-adds: no compares, masks or blends, and each product is
// accumulated only where it belongs (no zero coefficients, so NaN and inf route exactly as in
// csrc/interval_math.h).

// out[r * ld_out + p] (+)= sum over t in [begin[r], end[r]) of coef[t] * src[offset[t] + p], for
// p < width (a multiple of kCombineVectors * L). A tile is one row x kCombineVectors vectors:
// enough independent accumulators to cover the FMA latency; each FMA takes its own load, and the
// broadcast is shared by the tile.
template <class S>
void combine_rows(int64_t rows, const int64_t* begin, const int64_t* end,
                  const typename S::T* coef, const int64_t* offset, const typename S::T* src,
                  typename S::T* out, int64_t ld_out, int64_t width, bool accumulate) {
  using V = typename S::V;
  constexpr int L = S::L, NV = kCombineVectors;
  for (int64_t p = 0; p < width; p += NV * L) {
    for (int64_t r = 0; r < rows; ++r) {
      typename S::T* o = out + r * ld_out + p;
      V acc[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] = accumulate ? S::load(o + v * L) : S::zero();
      for (int64_t t = begin[r]; t < end[r]; ++t) {
        const V c = S::set1(coef[t]);
        const typename S::T* s = src + offset[t] + p;
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[v] = S::fma(c, S::load(s + v * L), acc[v]);
      }
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) S::store(o + v * L, acc[v]);
    }
  }
}

// The non-negative forward, register tiles of kPixMR output channels x 2 vectors of both bounds:
// out row 2 * c + 0 (+)= sum_t a * (a >= 0 ? l_t : h_t), row 2 * c + 1: b * (b >= 0 ? h_t : l_t),
// for the channels c of co_tiles tiles, tap t's input rows at src + lo_off[t] / hi_off[t].
// Weights packed per tile and tap as [a x kPixMR, b x kPixMR], with sign words (0xFFFF where
// >= 0, else 0) alike. Each input vector loaded feeds kPixMR channels (a blend by the weight's
// sign picks l or h: free beside the FMAs), which keeps the loads below the FMAs; AVX2, without
// mask registers, compares the broadcast weight instead of loading its sign.
template <class S>
void forward_tiles(int64_t co_tiles, int64_t taps, const typename S::T* w, const uint16_t* sign,
                   const int64_t* lo_off, const int64_t* hi_off, const typename S::T* src,
                   typename S::T* out, int64_t ld_out, int64_t width) {
  using T = typename S::T;
  using V = typename S::V;
  using M = typename S::M;
  constexpr int L = S::L, MR = S::kPixMR, NV = 2;
  for (int64_t ct = 0; ct < co_tiles; ++ct) {
    const T* wt = w + ct * taps * 2 * MR;
    const uint16_t* st = sign + ct * taps * 2 * MR;
    for (int64_t p = 0; p < width; p += NV * L) {
      V lo[MR][NV], hi[MR][NV];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) lo[i][v] = hi[i][v] = S::zero();
      }
      for (int64_t t = 0; t < taps; ++t) {
        V l[NV], h[NV];
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) {
          l[v] = S::load(src + lo_off[t] + p + v * L);
          h[v] = S::load(src + hi_off[t] + p + v * L);
        }
        const T* wa = wt + t * 2 * MR;
        const uint16_t* sa = st + t * 2 * MR;
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const V a = S::set1(wa[i]), b = S::set1(wa[MR + i]);
          M ma, mb;
          if constexpr (S::kStoredMasks) {
            ma = static_cast<M>(sa[i]);
            mb = static_cast<M>(sa[MR + i]);
          } else {
            ma = S::ge0(a);
            mb = S::ge0(b);
          }
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) {
            lo[i][v] = S::fma(a, S::select(ma, l[v], h[v]), lo[i][v]);
            hi[i][v] = S::fma(b, S::select(mb, h[v], l[v]), hi[i][v]);
          }
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        T* o = out + 2 * (ct * MR + i) * ld_out + p;
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) {
          S::store(o + v * L, lo[i][v]);
          S::store(o + ld_out + v * L, hi[i][v]);
        }
      }
    }
  }
}

// JB dot products sharing the row g: out[j] += sum_{p < width} g[p] * src[row[j] * ld + p].
template <class S, int JB>
void dot_block(const typename S::T* g, const int32_t* row, const typename S::T* src, int64_t ld,
               int64_t width, typename S::T* out) {
  using V = typename S::V;
  V acc[JB];
#pragma GCC unroll 8
  for (int j = 0; j < JB; ++j) acc[j] = S::zero();
  for (int64_t p = 0; p < width; p += S::L) {
    const V gv = S::load(g + p);
#pragma GCC unroll 8
    for (int j = 0; j < JB; ++j) acc[j] = S::fma(gv, S::load(src + row[j] * ld + p), acc[j]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < JB; ++j) out[j] += S::hsum(acc[j]);
}

// out[q * n + j] += sum_{p < width} g[grow[q] * ld + p] * src[srow[q * n + j] * ld + p] for
// q < groups, j < n; width a multiple of L. Blocks of 8 products share each load of g.
template <class S>
void dot_rows(int64_t groups, int64_t n, const int32_t* grow, const int32_t* srow,
              const typename S::T* g, const typename S::T* src, int64_t ld, int64_t width,
              typename S::T* out) {
  for (int64_t q = 0; q < groups; ++q) {
    const typename S::T* gq = g + grow[q] * ld;
    const int32_t* rq = srow + q * n;
    typename S::T* oq = out + q * n;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) dot_block<S, 8>(gq, rq + j, src, ld, width, oq + j);
    if (j + 4 <= n) dot_block<S, 4>(gq, rq + j, src, ld, width, oq + j), j += 4;
    if (j + 2 <= n) dot_block<S, 2>(gq, rq + j, src, ld, width, oq + j), j += 2;
    if (j < n) dot_block<S, 1>(gq, rq + j, src, ld, width, oq + j);
  }
}

template <class S>
constexpr PixelKernels<typename S::T> make_pixel_kernels() {
  return {&combine_rows<S>, &dot_rows<S>, &forward_tiles<S>, kCombineVectors * S::L, S::kPixMR};
}
