// Portable scalar interval GEMMs: one output element per inner loop, straight from
// csrc/interval_math.h. The path of CPUs without AVX2/FMA, the plainest statement of what the
// SIMD kernels compute, and the repaired path of every SIMD call whose operands are not all
// finite (interval_gemm.cpp): every product here is a bound product (mul_bound: 0 * inf = 0),
// which the SIMD kernels' plain products equal only on finite operands. The pixel-lane kernels
// are written for any SIMD path's tile layout (gemm_isa.h, scalar_pixel).
#include "../interval_math.h"
#include "gemm_isa.h"

namespace inn::cpu {
namespace {

template <typename T>
T at(const ConstView<T>& v, int64_t r, int64_t c) {
  return v.data[r * v.row_stride + c * v.col_stride];
}

template <typename T>
T& at(const View<T>& v, int64_t r, int64_t c) {
  return v.data[r * v.row_stride + c * v.col_stride];
}

template <typename T>
void forward(const GemmArgs<T>& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t n = n0; n < n1; ++n) {
      T acc_lo = p.accumulate ? at(p.y_lo, m, n) : T(0);
      T acc_hi = p.accumulate ? at(p.y_hi, m, n) : T(0);
      for (int64_t k = 0; k < p.K; ++k) {
        const T l = at(p.x_lo, m, k), h = at(p.x_hi, m, k);
        const T a = at(p.w_lo, n, k), b = at(p.w_hi, n, k);
        if (p.input_nonneg) {
          acc_lo = fma_lo(a, nonneg_lo_input(a, l, h), acc_lo);
          acc_hi = fma_hi(b, nonneg_hi_input(b, l, h), acc_hi);
        } else {
          acc_lo += general_lo(a, b, l, h).value;
          acc_hi += general_hi(a, b, l, h).value;
        }
      }
      at(p.y_lo, m, n) = acc_lo;
      at(p.y_hi, m, n) = acc_hi;
    }
  }
}

template <typename T>
void backward_input(const GemmArgs<T>& p, int64_t m0, int64_t m1, int64_t k0, int64_t k1) {
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t k = k0; k < k1; ++k) {
      T acc_l = p.accumulate ? at(p.y_lo, m, k) : T(0);
      T acc_h = p.accumulate ? at(p.y_hi, m, k) : T(0);
      const T l = at(p.x_lo, m, k), h = at(p.x_hi, m, k);
      for (int64_t n = 0; n < p.N; ++n) {
        const T gl = at(p.g_lo, m, n), gh = at(p.g_hi, m, n);
        const T a = at(p.w_lo, n, k), b = at(p.w_hi, n, k);
        if (p.input_nonneg) {
          (a >= T(0) ? acc_l : acc_h) += mul_bound(gl, a);
          (b >= T(0) ? acc_h : acc_l) += mul_bound(gh, b);
        } else {
          const TermChoice<T> lo = general_lo(a, b, l, h);
          const TermChoice<T> hi = general_hi(a, b, l, h);
          (lo.use_l ? acc_l : acc_h) += mul_bound(gl, lo.weight);
          (hi.use_l ? acc_l : acc_h) += mul_bound(gh, hi.weight);
        }
      }
      at(p.y_lo, m, k) = acc_l;
      at(p.y_hi, m, k) = acc_h;
    }
  }
}

template <typename T>
void backward_weight(const GemmArgs<T>& p, int64_t n0, int64_t n1, int64_t k0, int64_t k1) {
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t k = k0; k < k1; ++k) {
      T acc_a = p.accumulate ? at(p.y_lo, n, k) : T(0);
      T acc_b = p.accumulate ? at(p.y_hi, n, k) : T(0);
      const T a = at(p.w_lo, n, k), b = at(p.w_hi, n, k);
      for (int64_t m = 0; m < p.M; ++m) {
        const T gl = at(p.g_lo, m, n), gh = at(p.g_hi, m, n);
        const T l = at(p.x_lo, m, k), h = at(p.x_hi, m, k);
        if (p.input_nonneg) {
          acc_a += mul_bound(gl, nonneg_lo_input(a, l, h));
          acc_b += mul_bound(gh, nonneg_hi_input(b, l, h));
        } else {
          const TermChoice<T> lo = general_lo(a, b, l, h);
          const TermChoice<T> hi = general_hi(a, b, l, h);
          (lo.weight_is_a ? acc_a : acc_b) += mul_bound(gl, lo.use_l ? l : h);
          (hi.weight_is_a ? acc_a : acc_b) += mul_bound(gh, hi.use_l ? l : h);
        }
      }
      at(p.y_lo, n, k) = acc_a;
      at(p.y_hi, n, k) = acc_b;
    }
  }
}

}  // namespace

// The pixel-lane kernels (pixel_simd_kernels.h), one pixel at a time, in the tile layout of the
// path that packed their operands: `mr` channels per select tile, dot tiles of `dc` channels x
// `dk` taps (channel c = tile * mr + i; rows 2c and 2c + 1 hold its two bounds).
namespace scalar_pixel {

template <typename T>
void combine_rows(int64_t rows, const int64_t* begin, const int64_t* end, const T* coef,
                  const int64_t* offset, const T* src, T* out, int64_t ld_out, int64_t width,
                  bool accumulate) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t p = 0; p < width; ++p) {
      T acc = accumulate ? out[r * ld_out + p] : T(0);
      for (int64_t t = begin[r]; t < end[r]; ++t) acc += mul_bound(coef[t], src[offset[t] + p]);
      out[r * ld_out + p] = acc;
    }
  }
}

template <typename T>
void select_tiles(int64_t mr, int64_t tiles, int64_t taps, const T* w, const uint16_t* sign,
                  const uint16_t* enable, const int64_t* x_off, const int64_t* y_off,
                  const T* src, T* out, int64_t ld_out, int64_t width) {
  for (int64_t c = 0; c < tiles * mr; ++c) {
    const int64_t tile = c / mr, i = c % mr;
    for (int64_t p = 0; p < width; ++p) {
      T lo = T(0), hi = T(0);
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t at = (tile * taps + t) * 2 * mr + i;
        const T x = src[x_off[t] + p], y = src[y_off[t] + p];
        if (!enable || enable[(tile * taps + t) * mr + i]) {
          lo += mul_bound(w[at], sign[at] ? x : y);
        }
        hi += mul_bound(w[at + mr], sign[at + mr] ? y : x);
      }
      out[2 * c * ld_out + p] = lo;
      out[(2 * c + 1) * ld_out + p] = hi;
    }
  }
}

template <typename T>
void general_tiles(int64_t mr, int64_t tiles, int64_t taps, const T* w, const int64_t* x_off,
                   const int64_t* y_off, const T* src, T* out, int64_t ld_out, int64_t width,
                   bool nonneg, bool accumulate) {
  for (int64_t c = 0; c < tiles * mr; ++c) {
    const int64_t tile = c / mr, i = c % mr;
    for (int64_t p = 0; p < width; ++p) {
      T lo = accumulate ? out[2 * c * ld_out + p] : T(0);
      T hi = accumulate ? out[(2 * c + 1) * ld_out + p] : T(0);
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t at = (tile * taps + t) * 2 * mr + i;
        const T a = w[at], b = w[at + mr];
        const T l = src[x_off[tile * taps + t] + p], h = src[y_off[tile * taps + t] + p];
        if (nonneg) {
          lo += mul_bound(nonneg_lo_input(a, l, h), a);
          hi += mul_bound(nonneg_hi_input(b, l, h), b);
        } else {
          lo += general_lo(a, b, l, h).value;
          hi += general_hi(a, b, l, h).value;
        }
      }
      out[2 * c * ld_out + p] = lo;
      out[(2 * c + 1) * ld_out + p] = hi;
    }
  }
}

template <typename T>
void dot_tiles(int64_t dc, int64_t dk, int64_t c_tiles, int64_t k_tiles, const T* g,
               const int64_t* x_off, const int64_t* y_off, const uint16_t* sign, const T* src,
               int64_t ld, int64_t width, T* out) {
  const int64_t k_pad = k_tiles * dk;
  for (int64_t r = 0; r < 2 * c_tiles * dc; ++r) {  // row r = 2c + bound
    for (int64_t k = 0; k < k_pad; ++k) {
      const bool use_x = (sign[r * k_pad + k] != 0) == (r % 2 == 0);
      const T* s = src + (use_x ? x_off[k] : y_off[k]);
      T acc = T(0);
      for (int64_t p = 0; p < width; ++p) acc += mul_bound(g[r * ld + p], s[p]);
      out[r * k_pad + k] += acc;
    }
  }
}

template <typename T>
void general_grad_tiles(int64_t mr, int64_t tiles, int64_t taps, const T* w,
                        const int64_t* x_off, const int64_t* y_off, const T* src, const T* xs,
                        T* out, int64_t ld, int64_t width) {
  for (int64_t c = 0; c < tiles * mr; ++c) {
    const int64_t tile = c / mr, i = c % mr;
    for (int64_t p = 0; p < width; ++p) {
      const T l = xs[2 * c * ld + p], h = xs[(2 * c + 1) * ld + p];
      T dl = T(0), dh = T(0);
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t at = (tile * taps + t) * 2 * mr + i;
        const TermChoice<T> tl = general_lo(w[at], w[at + mr], l, h);
        const TermChoice<T> th = general_hi(w[at], w[at + mr], l, h);
        (tl.use_l ? dl : dh) += mul_bound(src[x_off[tile * taps + t] + p], tl.weight);
        (th.use_l ? dl : dh) += mul_bound(src[y_off[tile * taps + t] + p], th.weight);
      }
      out[2 * c * ld + p] = dl;
      out[(2 * c + 1) * ld + p] = dh;
    }
  }
}

template <typename T>
void general_dot_tiles(int64_t dc, int64_t dk, int64_t c_tiles, int64_t k_tiles, const T* g,
                       const int64_t* x_off, const int64_t* y_off, const T* w, const T* src,
                       int64_t ld, int64_t width, T* out) {
  const int64_t k_pad = k_tiles * dk;
  for (int64_t c = 0; c < c_tiles * dc; ++c) {
    for (int64_t k = 0; k < k_pad; ++k) {
      const T a = w[2 * c * k_pad + k], b = w[(2 * c + 1) * k_pad + k];
      T da = T(0), db = T(0);
      for (int64_t p = 0; p < width; ++p) {
        const T l = src[x_off[k] + p], h = src[y_off[k] + p];
        const TermChoice<T> tl = general_lo(a, b, l, h), th = general_hi(a, b, l, h);
        (tl.weight_is_a ? da : db) += mul_bound(g[2 * c * ld + p], tl.use_l ? l : h);
        (th.weight_is_a ? da : db) += mul_bound(g[(2 * c + 1) * ld + p], th.use_l ? l : h);
      }
      out[2 * c * k_pad + k] += da;
      out[(2 * c + 1) * k_pad + k] += db;
    }
  }
}

#define INN_INSTANTIATE(T)                                                                      \
  template void combine_rows<T>(int64_t, const int64_t*, const int64_t*, const T*,              \
                                const int64_t*, const T*, T*, int64_t, int64_t, bool);          \
  template void select_tiles<T>(int64_t, int64_t, int64_t, const T*, const uint16_t*,           \
                                const uint16_t*, const int64_t*, const int64_t*, const T*, T*,  \
                                int64_t, int64_t);                                              \
  template void general_tiles<T>(int64_t, int64_t, int64_t, const T*, const int64_t*,           \
                                 const int64_t*, const T*, T*, int64_t, int64_t, bool, bool);   \
  template void dot_tiles<T>(int64_t, int64_t, int64_t, int64_t, const T*, const int64_t*,      \
                             const int64_t*, const uint16_t*, const T*, int64_t, int64_t, T*);  \
  template void general_grad_tiles<T>(int64_t, int64_t, int64_t, const T*, const int64_t*,      \
                                      const int64_t*, const T*, const T*, T*, int64_t, int64_t); \
  template void general_dot_tiles<T>(int64_t, int64_t, int64_t, int64_t, const T*,              \
                                     const int64_t*, const int64_t*, const T*, const T*,        \
                                     int64_t, int64_t, T*);
INN_INSTANTIATE(float)
INN_INSTANTIATE(double)
#undef INN_INSTANTIATE

}  // namespace scalar_pixel

namespace {

// The scalar path's own pixel kernels: tiles of one channel, dot tiles of one channel x one tap.
template <typename T>
void select_tiles(int64_t tiles, int64_t taps, const T* w, const uint16_t* sign,
                  const uint16_t* enable, const int64_t* x_off, const int64_t* y_off,
                  const T* src, T* out, int64_t ld_out, int64_t width) {
  scalar_pixel::select_tiles(1, tiles, taps, w, sign, enable, x_off, y_off, src, out, ld_out,
                             width);
}

// Finite operands only (the dispatcher routes the others to scalar_pixel::general_tiles): per
// tile (one channel) its taps in runs of kinds 0 (a >= 0), 1 (b <= 0), 2 (straddling), as
// pixel_simd_kernels.h's general_tiles; a one-sign weight takes the candidate the choice takes.
// Non-negative mode: every term the product its weight's sign picks.
template <typename T>
void general_tiles(int64_t tiles, int64_t taps, const T* w, const int64_t* runs,
                   const int64_t* x_off, const int64_t* y_off, const T* src, T* out,
                   int64_t ld_out, int64_t width, bool nonneg, bool accumulate) {
  if (nonneg) {
    scalar_pixel::general_tiles(1, tiles, taps, w, x_off, y_off, src, out, ld_out, width, true,
                                accumulate);
    return;
  }
  for (int64_t c = 0; c < tiles; ++c) {
    const int64_t* r = runs + 3 * c;
    const T* wc = w + c * taps * 2;
    const int64_t *xc = x_off + c * taps, *yc = y_off + c * taps;
    for (int64_t p = 0; p < width; ++p) {
      T lo = accumulate ? out[2 * c * ld_out + p] : T(0);
      T hi = accumulate ? out[(2 * c + 1) * ld_out + p] : T(0);
      int64_t t = 0;
      for (; t < r[0]; ++t) {  // a >= 0: lo from l, hi from h
        const T a = wc[2 * t], b = wc[2 * t + 1], l = src[xc[t] + p], h = src[yc[t] + p];
        lo += l * (l >= T(0) ? a : b);
        hi += h * (h >= T(0) ? b : a);
      }
      for (; t < r[0] + r[1]; ++t) {  // b <= 0: lo from h, hi from l
        const T a = wc[2 * t], b = wc[2 * t + 1], l = src[xc[t] + p], h = src[yc[t] + p];
        lo += h * (h >= T(0) ? a : b);
        hi += l * (l >= T(0) ? b : a);
      }
      for (; t < taps; ++t) {
        const T a = wc[2 * t], b = wc[2 * t + 1], l = src[xc[t] + p], h = src[yc[t] + p];
        lo += general_lo(a, b, l, h).value;
        hi += general_hi(a, b, l, h).value;
      }
      out[2 * c * ld_out + p] = lo;
      out[(2 * c + 1) * ld_out + p] = hi;
    }
  }
}

template <typename T>
void dot_tiles(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
               const int64_t* y_off, const uint16_t* sign, const T* src, int64_t ld,
               int64_t width, T* out) {
  scalar_pixel::dot_tiles(1, 1, c_tiles, k_tiles, g, x_off, y_off, sign, src, ld, width, out);
}

template <typename T>
void general_grad_tiles(int64_t tiles, int64_t taps, const T* w, const int64_t* /*runs*/,
                        const int64_t* x_off, const int64_t* y_off, const T* src, const T* xs,
                        T* out, int64_t ld, int64_t width, bool /*finite*/) {
  scalar_pixel::general_grad_tiles(1, tiles, taps, w, x_off, y_off, src, xs, out, ld, width);
}

template <typename T>
void general_dot_tiles(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
                       const int64_t* y_off, const T* w, const T* src, int64_t ld, int64_t width,
                       T* out, bool /*finite*/) {
  scalar_pixel::general_dot_tiles(1, 1, c_tiles, k_tiles, g, x_off, y_off, w, src, ld, width,
                                  out);
}

template <typename T>
constexpr PixelKernels<T> pixel_kernels() {
  return {&scalar_pixel::combine_rows<T>, &select_tiles<T>, &general_tiles<T>, &dot_tiles<T>,
          &general_grad_tiles<T>, &general_dot_tiles<T>, 8, 1, 1, 1};
}

template <typename T>
constexpr IsaKernels<T> kernels() {
  const BlockShape shape{4, 16, 64};
  return {{&forward<T>, shape}, {&backward_input<T>, shape}, {&backward_weight<T>, shape}};
}

}  // namespace

const IsaTable kScalarKernels{"scalar", kernels<float>(), kernels<double>(), pixel_kernels<float>(),
                              pixel_kernels<double>()};

}  // namespace inn::cpu
