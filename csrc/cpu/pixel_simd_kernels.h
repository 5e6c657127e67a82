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

// out[r][p] (+)= sum over t in [begin[r], end[r]) of coef[t] * src[row[t] * ld_src + p], for
// p < width (a multiple of kCombineVectors * L). A tile is one row x kCombineVectors vectors:
// enough independent accumulators to cover the FMA latency; each FMA takes its own load, and the
// broadcast is shared by the tile.
template <class S>
void combine_rows(int64_t rows, const int64_t* begin, const int64_t* end,
                  const typename S::T* coef, const int32_t* row, const typename S::T* src,
                  int64_t ld_src, typename S::T* out, int64_t ld_out, int64_t width,
                  bool accumulate) {
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
        const typename S::T* s = src + row[t] * ld_src + p;
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[v] = S::fma(c, S::load(s + v * L), acc[v]);
      }
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) S::store(o + v * L, acc[v]);
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
  return {&combine_rows<S>, &dot_rows<S>, kCombineVectors * S::L};
}
