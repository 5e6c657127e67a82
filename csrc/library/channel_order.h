// The passes of the point-weight form that also change the element order of a 4-D tensor
// between channels first (N, C, P) and channels last (N, P, C), P = H·W (library_path.cpp,
// prefers_channels_last: oneDNN's convolutions run channels last without reordering).
//
// One side of such a pass is strided. The pixels are walked in blocks small enough that the
// strided side of a block (all its channels, both tensors) stays in L1 while its cache lines
// fill, and float32 moves 4 channels x 4 pixels at a time through an SSE transpose: on this
// project's 2-core Xeon the sum/difference pass then took 0.9-1.3x the time of the same pass
// keeping the order, one thread, 2^17-2^20 elements (a plain loop: 1.4-2.7x).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace inn::library {

struct Planes {
  int64_t images, channels, pixels;
  // pixels per block: a multiple of 4, at least 8, about 2 KiB of one tensor's channels
  int64_t block() const { return std::min(std::max<int64_t>((512 / channels) & ~3, 8), pixels); }
};

// A task per (image, pixel block), `grain` elements per task at least; fn(image, first pixel,
// pixels in the block).
template <typename Block>
void for_pixel_blocks(const Planes& g, int64_t grain, const Block& fn) {
  const int64_t block = g.block(), per_image = (g.pixels + block - 1) / block;
  at::parallel_for(0, g.images * per_image, std::max<int64_t>(1, grain / (block * g.channels)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t t = begin; t < end; ++t) {
                       const int64_t n = t / per_image, p0 = (t % per_image) * block;
                       fn(n, p0, std::min(block, g.pixels - p0));
                     }
                   });
}

#if defined(__SSE2__)
constexpr bool kTiles = true;
#else
constexpr bool kTiles = false;
#endif

// s = a + b, d = b - a: a, b channels first, s, d channels last.
template <typename T>
void sum_difference_to_channels_last(const T* a, const T* b, T* s, T* d, const Planes& g,
                                     int64_t grain) {
  const int64_t C = g.channels, P = g.pixels;
  for_pixel_blocks(g, grain, [=](int64_t n, int64_t p0, int64_t np) {
    int64_t c = 0;
    if constexpr (kTiles && std::is_same_v<T, float>) {
#if defined(__SSE2__)
      for (; c + 4 <= C; c += 4) {
        const float* ap = a + (n * C + c) * P + p0;
        const float* bp = b + (n * C + c) * P + p0;
        float* sp = s + (n * P + p0) * C + c;
        float* dp = d + (n * P + p0) * C + c;
        int64_t p = 0;
        for (; p + 4 <= np; p += 4) {
          __m128 sv[4], dv[4];
          for (int k = 0; k < 4; ++k) {
            const __m128 av = _mm_loadu_ps(ap + k * P + p), bv = _mm_loadu_ps(bp + k * P + p);
            sv[k] = _mm_add_ps(av, bv);
            dv[k] = _mm_sub_ps(bv, av);
          }
          _MM_TRANSPOSE4_PS(sv[0], sv[1], sv[2], sv[3]);
          _MM_TRANSPOSE4_PS(dv[0], dv[1], dv[2], dv[3]);
          for (int k = 0; k < 4; ++k) {
            _mm_storeu_ps(sp + (p + k) * C, sv[k]);
            _mm_storeu_ps(dp + (p + k) * C, dv[k]);
          }
        }
        for (; p < np; ++p) {
          for (int k = 0; k < 4; ++k) {
            sp[p * C + k] = ap[k * P + p] + bp[k * P + p];
            dp[p * C + k] = bp[k * P + p] - ap[k * P + p];
          }
        }
      }
#endif
    }
    for (; c < C; ++c) {
      const T* ap = a + (n * C + c) * P + p0;
      const T* bp = b + (n * C + c) * P + p0;
      T* sp = s + (n * P + p0) * C + c;
      T* dp = d + (n * P + p0) * C + c;
      for (int64_t p = 0; p < np; ++p) {
        sp[p * C] = ap[p] + bp[p];
        dp[p * C] = bp[p] - ap[p];
      }
    }
  });
}

// The halves of one element; with the input gradient's tie rule (sum_difference.h,
// halve_sum_difference_tie_) where !(l < h): the lower bound takes both, the upper none.
template <typename T>
void halves(T si, T di, bool tie, T& lo, T& hi) {
  const T l = (si - di) * T(0.5), h = (si + di) * T(0.5);
  lo = tie ? l + h : l;
  hi = tie ? T(0) : h;
}

// lo = (s - d) / 2, hi = (s + d) / 2: s, d channels last, lo, hi channels first; with `kTie` the
// tie rule where !(l < h), l and h channels first. Returns whether s and d were all finite
// (v - v stays 0 for finite v only).
template <bool kTie, typename T>
bool halve_sum_difference_to_channels_first(const T* s, const T* d, T* lo, T* hi, const T* l,
                                            const T* h, const Planes& g, int64_t grain) {
  const int64_t C = g.channels, P = g.pixels;
  std::atomic<bool> finite{true};
  for_pixel_blocks(g, grain, [=, &finite](int64_t n, int64_t p0, int64_t np) {
    T probe = 0;
    int64_t c = 0;
    if constexpr (kTiles && std::is_same_v<T, float>) {
#if defined(__SSE2__)
      const __m128 half = _mm_set1_ps(0.5f);
      __m128 probes = _mm_setzero_ps();
      for (; c + 4 <= C; c += 4) {
        const int64_t first = (n * C + c) * P + p0;  // channels first
        const float* sp = s + (n * P + p0) * C + c;
        const float* dp = d + (n * P + p0) * C + c;
        int64_t p = 0;
        for (; p + 4 <= np; p += 4) {
          __m128 sv[4], dv[4];
          for (int k = 0; k < 4; ++k) {
            sv[k] = _mm_loadu_ps(sp + (p + k) * C);
            dv[k] = _mm_loadu_ps(dp + (p + k) * C);
            probes = _mm_add_ps(probes, _mm_add_ps(_mm_sub_ps(sv[k], sv[k]),
                                                   _mm_sub_ps(dv[k], dv[k])));
          }
          _MM_TRANSPOSE4_PS(sv[0], sv[1], sv[2], sv[3]);
          _MM_TRANSPOSE4_PS(dv[0], dv[1], dv[2], dv[3]);
          for (int k = 0; k < 4; ++k) {
            const int64_t at = first + k * P + p;
            __m128 lov = _mm_mul_ps(_mm_sub_ps(sv[k], dv[k]), half);
            __m128 hiv = _mm_mul_ps(_mm_add_ps(sv[k], dv[k]), half);
            if constexpr (kTie) {
              const __m128 tie = _mm_cmpnlt_ps(_mm_loadu_ps(l + at), _mm_loadu_ps(h + at));
              lov = _mm_or_ps(_mm_and_ps(tie, _mm_add_ps(lov, hiv)), _mm_andnot_ps(tie, lov));
              hiv = _mm_andnot_ps(tie, hiv);
            }
            _mm_storeu_ps(lo + at, lov);
            _mm_storeu_ps(hi + at, hiv);
          }
        }
        for (; p < np; ++p) {
          for (int k = 0; k < 4; ++k) {
            const int64_t at = first + k * P + p;
            const float si = sp[p * C + k], di = dp[p * C + k];
            probe += (si - si) + (di - di);
            halves(si, di, kTie && !(l[at] < h[at]), lo[at], hi[at]);
          }
        }
      }
      float lanes[4];
      _mm_storeu_ps(lanes, probes);
      probe += (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    }
    for (; c < C; ++c) {
      const int64_t first = (n * C + c) * P + p0;
      const T* sp = s + (n * P + p0) * C + c;
      const T* dp = d + (n * P + p0) * C + c;
      for (int64_t p = 0; p < np; ++p) {
        const T si = sp[p * C], di = dp[p * C];
        probe += (si - si) + (di - di);
        halves(si, di, kTie && !(l[first + p] < h[first + p]), lo[first + p], hi[first + p]);
      }
    }
    if (probe != 0) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load();
}

}  // namespace inn::library
