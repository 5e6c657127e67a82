// The CPU interval GEMMs: the split of the output into blocks, and the threads; the entry points
// of the pixel-lane kernels. The arithmetic lives in the per-ISA kernel files (gemm_isa.h), whose
// table is chosen at run time in cpu_isa.cpp.
//
// The 0 * inf = 0 bound convention (interval_math.h): every call checks the operands it
// multiplies and runs the scalar kernels on the rare call with an infinite or NaN one (see
// "the 0 * inf = 0 bound convention" below); the SIMD kernels see finite operands only.
#include "interval_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "cpu_isa.h"
#include "gemm_isa.h"

namespace inn::cpu {
namespace {

template <typename T>
const IsaKernels<T>& active_kernels();
template <>
const IsaKernels<float>& active_kernels<float>() {
  return active_table().f32;
}
template <>
const IsaKernels<double>& active_kernels<double>() {
  return active_table().f64;
}

template <typename T>
const PixelKernels<T>& active_pixel_kernels();
template <>
const PixelKernels<float>& active_pixel_kernels<float>() {
  return active_table().pixel_f32;
}
template <>
const PixelKernels<double>& active_pixel_kernels<double>() {
  return active_table().pixel_f64;
}

// ------------------------------------------------------------- the 0 * inf = 0 bound convention
// The SIMD kernels multiply plainly (fused multiply-adds). On finite operands that is the bound
// product (mul_bound), since only 0 * inf makes a NaN of two non-NaN factors; so every call
// checks the operands it multiplies (one read of each, against the products' many) and runs
// the scalar kernels, whose products are bound products, on the rare call with an infinite or
// NaN operand. The check stops at the first such element.

// Integer tests on the bits (all-ones exponent: inf or NaN), which the compiler vectorises.
template <typename T>
bool finite_span(const T* p, int64_t n) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits kExp = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  constexpr int64_t kBlock = 4096;
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t e = std::min(n, i + kBlock);
    Bits bad = 0;
    for (int64_t j = i; j < e; ++j) {
      Bits b;
      std::memcpy(&b, p + j, sizeof(T));
      bad |= Bits((b & kExp) == kExp);
    }
    if (bad) return false;
  }
  return true;
}

// A rows x cols view (strides of 0 repeat one row, column or element: read once).
template <typename T>
bool finite_view(const ConstView<T>& v, int64_t rows, int64_t cols) {
  if (v.row_stride == 0) rows = std::min<int64_t>(rows, 1);
  if (v.col_stride == 0) cols = std::min<int64_t>(cols, 1);
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = v.data + r * v.row_stride;
    if (v.col_stride == 1) {
      if (!finite_span(row, cols)) return false;
    } else {
      for (int64_t c = 0; c < cols; ++c) {
        if (!finite_span(row + c * v.col_stride, 1)) return false;
      }
    }
  }
  return true;
}

// `n` rows of `width` elements at src + off[i], each element of their union read once: the rows
// of a direct convolution's taps overlap (a 3x3 kernel's nine taps read each source element nine
// times), and a check per row cost up to 80 % of the kernel it guards (non-negative conv 8->8).
template <typename T>
bool finite_rows(const T* src, const int64_t* off, int64_t n, int64_t width) {
  std::vector<int64_t> starts(off, off + n);
  std::sort(starts.begin(), starts.end());
  int64_t begin = 0, end = 0;  // the span being merged, [begin, end)
  for (const int64_t start : starts) {
    if (start > end) {
      if (!finite_span(src + begin, end - begin)) return false;
      begin = start;
    }
    end = std::max(end, start + width);
  }
  return finite_span(src + begin, end - begin);
}

// `n` rows of `width` elements at base + i * ld.
template <typename T>
bool finite_strided(const T* base, int64_t n, int64_t ld, int64_t width) {
  for (int64_t i = 0; i < n; ++i) {
    if (!finite_span(base + i * ld, width)) return false;
  }
  return true;
}

// The kernels of a GEMM call: the active path's, or the scalar ones when an operand it
// multiplies is not finite.
template <typename T>
const IsaKernels<T>& kernels_for(bool finite) {
  if (finite) return active_kernels<T>();
  if constexpr (std::is_same_v<T, float>) {
    return kScalarKernels.f32;
  } else {
    return kScalarKernels.f64;
  }
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Problems below this many multiply-adds run on the calling thread.
constexpr int64_t kSerialWork = 1 << 16;

// Splits the rows x cols output into blocks (whole register tiles; columns at most the kernel's
// wide extent, so its packing is amortised) and runs them on ATen's threads. Each block is
// independent, and inside an outer parallel region at::parallel_for runs inline, so nested calls
// (a convolution calling this per image) are safe.
template <typename T>
void run_blocks(const ProductKernel<T>& kernel, const GemmArgs<T>& args, int64_t rows,
                int64_t cols, int64_t reduction) {
  if (rows == 0 || cols == 0) return;
  const BlockShape& s = kernel.shape;
  const int64_t threads =
      at::in_parallel_region() || rows * cols * reduction < kSerialWork ? 1 : at::get_num_threads();
  int64_t block_cols = std::min(round_up(cols, s.cols), s.wide_cols);
  int64_t col_blocks = ceil_div(cols, block_cols);
  // Two blocks per thread balance the load; split rows first, then narrower columns.
  const int64_t want = threads > 1 ? 2 * threads : 1;
  int64_t row_blocks =
      std::min(ceil_div(rows, s.rows), std::max<int64_t>(1, ceil_div(want, col_blocks)));
  if (row_blocks * col_blocks < want) {
    col_blocks = std::min(ceil_div(cols, s.cols), ceil_div(want, row_blocks));
    block_cols = round_up(ceil_div(cols, col_blocks), s.cols);
    col_blocks = ceil_div(cols, block_cols);
  }
  const int64_t block_rows = round_up(ceil_div(rows, row_blocks), s.rows);
  row_blocks = ceil_div(rows, block_rows);
  auto run_range = [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t r0 = (b / col_blocks) * block_rows, c0 = (b % col_blocks) * block_cols;
      kernel.run(args, r0, std::min(rows, r0 + block_rows), c0, std::min(cols, c0 + block_cols));
    }
  };
  const int64_t blocks = row_blocks * col_blocks;
  if (threads == 1 || blocks == 1) {
    run_range(0, blocks);
  } else {
    at::parallel_for(0, blocks, 1, run_range);
  }
}

template <typename T>
void zero_fill(int64_t rows, int64_t cols, View<T> y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) y(r, c) = T(0);
  }
}

struct FreeAligned {
  void operator()(void* p) const { ::operator delete(p, std::align_val_t(64)); }
};

}  // namespace

void* thread_workspace(size_t bytes) {
  thread_local std::unique_ptr<void, FreeAligned> buffer;
  thread_local size_t capacity = 0;
  if (bytes > capacity) {
    buffer.reset();
    capacity = std::max(bytes, capacity + capacity / 2);
    buffer.reset(::operator new(capacity, std::align_val_t(64)));
  }
  return buffer.get();
}

template <typename T>
void interval_gemm_forward(int64_t M, int64_t N, int64_t K, ConstView<T> x_lo, ConstView<T> x_hi,
                           ConstView<T> w_lo, ConstView<T> w_hi, View<T> y_lo, View<T> y_hi,
                           bool input_nonneg, bool accumulate) {
  if (K == 0) {
    if (!accumulate) {
      zero_fill(M, N, y_lo);
      zero_fill(M, N, y_hi);
    }
    return;
  }
  const GemmArgs<T> args{M, N, K, x_lo, x_hi, w_lo, w_hi, {}, {}, y_lo, y_hi, input_nonneg,
                         accumulate};
  const bool finite = finite_view(x_lo, M, K) && finite_view(x_hi, M, K) &&
                      finite_view(w_lo, N, K) && finite_view(w_hi, N, K);
  run_blocks(kernels_for<T>(finite).forward, args, M, N, K);
}

template <typename T>
void interval_gemm_backward_input(int64_t M, int64_t N, int64_t K, ConstView<T> g_lo,
                                  ConstView<T> g_hi, ConstView<T> x_lo, ConstView<T> x_hi,
                                  ConstView<T> w_lo, ConstView<T> w_hi, View<T> dx_lo,
                                  View<T> dx_hi, bool input_nonneg, bool accumulate) {
  if (N == 0) {
    if (!accumulate) {
      zero_fill(M, K, dx_lo);
      zero_fill(M, K, dx_hi);
    }
    return;
  }
  // nonneg mode multiplies g by w only; general mode also compares x * w candidates
  const bool finite = finite_view(g_lo, M, N) && finite_view(g_hi, M, N) &&
                      finite_view(w_lo, N, K) && finite_view(w_hi, N, K) &&
                      (input_nonneg || (finite_view(x_lo, M, K) && finite_view(x_hi, M, K)));
  const GemmArgs<T> args{M, N, K, x_lo, x_hi, w_lo, w_hi, g_lo, g_hi, dx_lo, dx_hi, input_nonneg,
                         accumulate};
  run_blocks(kernels_for<T>(finite).backward_input, args, M, K, N);
}

template <typename T>
void interval_gemm_backward_weight(int64_t M, int64_t N, int64_t K, ConstView<T> g_lo,
                                   ConstView<T> g_hi, ConstView<T> x_lo, ConstView<T> x_hi,
                                   ConstView<T> w_lo, ConstView<T> w_hi, View<T> dw_lo,
                                   View<T> dw_hi, bool input_nonneg, bool accumulate) {
  if (M == 0) {
    if (!accumulate) {
      zero_fill(N, K, dw_lo);
      zero_fill(N, K, dw_hi);
    }
    return;
  }
  // nonneg mode multiplies g by x only (w's sign selects); general mode also compares x * w
  const bool finite = finite_view(g_lo, M, N) && finite_view(g_hi, M, N) &&
                      finite_view(x_lo, M, K) && finite_view(x_hi, M, K) &&
                      (input_nonneg || (finite_view(w_lo, N, K) && finite_view(w_hi, N, K)));
  const GemmArgs<T> args{M, N, K, x_lo, x_hi, w_lo, w_hi, g_lo, g_hi, dw_lo, dw_hi, input_nonneg,
                         accumulate};
  run_blocks(kernels_for<T>(finite).backward_weight, args, N, K, M);
}

template <typename T>
int64_t pixel_tile() {
  return active_pixel_kernels<T>().pixel_tile;
}

template <typename T>
void combine_rows(int64_t rows, const int64_t* begin, const int64_t* end, const T* coef,
                  const int64_t* offset, const T* src, T* out, int64_t ld_out, int64_t width,
                  bool accumulate) {
  bool finite = true;
  for (int64_t r = 0; r < rows && finite; ++r) {
    finite = finite_span(coef + begin[r], end[r] - begin[r]) &&
             finite_rows(src, offset + begin[r], end[r] - begin[r], width);
  }
  (finite ? active_pixel_kernels<T>().combine : scalar_pixel::combine_rows<T>)(
      rows, begin, end, coef, offset, src, out, ld_out, width, accumulate);
}

template <typename T>
int64_t select_tile_channels() {
  return active_pixel_kernels<T>().tile_channels;
}

template <typename T>
void select_tiles(int64_t tiles, int64_t taps, const T* w, const uint16_t* sign,
                  const uint16_t* enable, const int64_t* x_off, const int64_t* y_off,
                  const T* src, T* out, int64_t ld_out, int64_t width) {
  const PixelKernels<T>& k = active_pixel_kernels<T>();
  if (finite_span(w, tiles * taps * 2 * k.tile_channels) &&
      finite_rows(src, x_off, taps, width) && finite_rows(src, y_off, taps, width)) {
    k.select(tiles, taps, w, sign, enable, x_off, y_off, src, out, ld_out, width);
  } else {
    scalar_pixel::select_tiles(k.tile_channels, tiles, taps, w, sign, enable, x_off, y_off, src,
                               out, ld_out, width);
  }
}

template <typename T>
void general_tiles(int64_t tiles, int64_t taps, const T* w, const int64_t* runs,
                   const int64_t* x_off, const int64_t* y_off, const T* src, T* out,
                   int64_t ld_out, int64_t width, bool nonneg, bool accumulate) {
  const PixelKernels<T>& k = active_pixel_kernels<T>();
  // Tile 0's taps are every tap (each tile orders the same taps): its rows are all the rows.
  if (finite_span(w, tiles * taps * 2 * k.tile_channels) &&
      finite_rows(src, x_off, taps, width) && finite_rows(src, y_off, taps, width)) {
    k.general(tiles, taps, w, runs, x_off, y_off, src, out, ld_out, width, nonneg, accumulate);
  } else {
    scalar_pixel::general_tiles(k.tile_channels, tiles, taps, w, x_off, y_off, src, out, ld_out,
                                width, nonneg, accumulate);
  }
}

template <typename T>
std::pair<int64_t, int64_t> dot_tile_shape() {
  return {active_pixel_kernels<T>().dot_channels, active_pixel_kernels<T>().dot_taps};
}

template <typename T>
void dot_tiles(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
               const int64_t* y_off, const uint16_t* sign, const T* src, int64_t ld,
               int64_t width, T* out) {
  const PixelKernels<T>& k = active_pixel_kernels<T>();
  const int64_t k_pad = k_tiles * k.dot_taps;
  if (finite_strided(g, 2 * c_tiles * k.dot_channels, ld, width) &&
      finite_rows(src, x_off, k_pad, width) && finite_rows(src, y_off, k_pad, width)) {
    k.dot(c_tiles, k_tiles, g, x_off, y_off, sign, src, ld, width, out);
  } else {
    scalar_pixel::dot_tiles(k.dot_channels, k.dot_taps, c_tiles, k_tiles, g, x_off, y_off, sign,
                            src, ld, width, out);
  }
}

template <typename T>
void general_grad_tiles(int64_t tiles, int64_t taps, const T* w, const int64_t* runs,
                        const int64_t* x_off, const int64_t* y_off, const T* src, const T* xs,
                        T* out, int64_t ld, int64_t width, bool finite) {
  const PixelKernels<T>& k = active_pixel_kernels<T>();
  // Tile 0's taps are every tap (each tile orders the same taps): its rows are all the rows.
  if (finite_span(w, tiles * taps * 2 * k.tile_channels) &&
      finite_rows(src, x_off, taps, width) && finite_rows(src, y_off, taps, width) &&
      finite_strided(xs, 2 * tiles * k.tile_channels, ld, width)) {
    k.general_grad(tiles, taps, w, runs, x_off, y_off, src, xs, out, ld, width, finite);
  } else {
    scalar_pixel::general_grad_tiles(k.tile_channels, tiles, taps, w, x_off, y_off, src, xs, out,
                                     ld, width);
  }
}

template <typename T>
void general_dot_tiles(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
                       const int64_t* y_off, const T* w, const T* src, int64_t ld, int64_t width,
                       T* out, bool finite) {
  const PixelKernels<T>& k = active_pixel_kernels<T>();
  const int64_t k_pad = k_tiles * k.dot_taps;
  if (finite_strided(g, 2 * c_tiles * k.dot_channels, ld, width) &&
      finite_rows(src, x_off, k_pad, width) && finite_rows(src, y_off, k_pad, width) &&
      finite_span(w, 2 * c_tiles * k.dot_channels * k_pad)) {
    k.general_dot(c_tiles, k_tiles, g, x_off, y_off, w, src, ld, width, out, finite);
  } else {
    scalar_pixel::general_dot_tiles(k.dot_channels, k.dot_taps, c_tiles, k_tiles, g, x_off, y_off,
                                    w, src, ld, width, out);
  }
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
                                                 bool, bool);                  \
  template int64_t pixel_tile<T>();                                                            \
  template void combine_rows<T>(int64_t, const int64_t*, const int64_t*, const T*,             \
                                const int64_t*, const T*, T*, int64_t, int64_t, bool);         \
  template int64_t select_tile_channels<T>();                                                  \
  template void select_tiles<T>(int64_t, int64_t, const T*, const uint16_t*, const uint16_t*,   \
                                const int64_t*, const int64_t*, const T*, T*, int64_t, int64_t); \
  template void general_tiles<T>(int64_t, int64_t, const T*, const int64_t*, const int64_t*,     \
                                 const int64_t*, const T*, T*, int64_t, int64_t, bool, bool);  \
  template std::pair<int64_t, int64_t> dot_tile_shape<T>();                                    \
  template void dot_tiles<T>(int64_t, int64_t, const T*, const int64_t*, const int64_t*,        \
                             const uint16_t*, const T*, int64_t, int64_t, T*);           \
  template void general_grad_tiles<T>(int64_t, int64_t, const T*, const int64_t*,              \
                                      const int64_t*, const int64_t*, const T*, const T*, T*,   \
                                      int64_t, int64_t, bool);                                 \
  template void general_dot_tiles<T>(int64_t, int64_t, const T*, const int64_t*, const int64_t*, \
                                     const T*, const T*, int64_t, int64_t, T*, bool);
INN_INSTANTIATE(float)
INN_INSTANTIATE(double)
#undef INN_INSTANTIATE

}  // namespace inn::cpu
