// The CPU interval GEMMs: the split of the output into blocks, and the threads; the entry points
// of the pixel-lane kernels. The arithmetic lives in the per-ISA kernel files (gemm_isa.h), whose
// table is chosen at run time in cpu_isa.cpp.
#include "interval_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>
#include <new>

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
  run_blocks(active_kernels<T>().forward, args, M, N, K);
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
  const GemmArgs<T> args{M, N, K, x_lo, x_hi, w_lo, w_hi, g_lo, g_hi, dx_lo, dx_hi, input_nonneg,
                         accumulate};
  run_blocks(active_kernels<T>().backward_input, args, M, K, N);
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
  const GemmArgs<T> args{M, N, K, x_lo, x_hi, w_lo, w_hi, g_lo, g_hi, dw_lo, dw_hi, input_nonneg,
                         accumulate};
  run_blocks(active_kernels<T>().backward_weight, args, N, K, M);
}

template <typename T>
int64_t pixel_tile() {
  return active_pixel_kernels<T>().pixel_tile;
}

template <typename T>
void combine_rows(int64_t rows, const int64_t* begin, const int64_t* end, const T* coef,
                  const int64_t* offset, const T* src, T* out, int64_t ld_out, int64_t width,
                  bool accumulate) {
  active_pixel_kernels<T>().combine(rows, begin, end, coef, offset, src, out, ld_out, width,
                                    accumulate);
}

template <typename T>
int64_t select_tile_channels() {
  return active_pixel_kernels<T>().tile_channels;
}

template <typename T>
void select_tiles(int64_t tiles, int64_t taps, const T* w, const uint16_t* sign,
                  const uint16_t* enable, const int64_t* x_off, const int64_t* y_off,
                  const T* src, T* out, int64_t ld_out, int64_t width) {
  active_pixel_kernels<T>().select(tiles, taps, w, sign, enable, x_off, y_off, src, out, ld_out,
                                   width);
}

template <typename T>
void general_tiles(int64_t tiles, int64_t taps, const T* w, const int64_t* x_off,
                   const int64_t* y_off, const T* src, T* out, int64_t ld_out, int64_t width) {
  active_pixel_kernels<T>().general(tiles, taps, w, x_off, y_off, src, out, ld_out, width);
}

template <typename T>
std::pair<int64_t, int64_t> dot_tile_shape() {
  return {active_pixel_kernels<T>().dot_channels, active_pixel_kernels<T>().dot_taps};
}

template <typename T>
void dot_tiles(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
               const int64_t* y_off, const uint16_t* sign, const T* src, int64_t ld,
               int64_t width, T* out) {
  active_pixel_kernels<T>().dot(c_tiles, k_tiles, g, x_off, y_off, sign, src, ld, width, out);
}

template <typename T>
void general_grad_tiles(int64_t tiles, int64_t taps, const T* w, const int64_t* x_off,
                        const int64_t* y_off, const T* src, const T* xs, T* out, int64_t ld,
                        int64_t width, bool finite) {
  active_pixel_kernels<T>().general_grad(tiles, taps, w, x_off, y_off, src, xs, out, ld, width,
                                         finite);
}

template <typename T>
void general_dot_tiles(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
                       const int64_t* y_off, const T* w, const T* src, int64_t ld, int64_t width,
                       T* out, bool finite) {
  active_pixel_kernels<T>().general_dot(c_tiles, k_tiles, g, x_off, y_off, w, src, ld, width, out,
                                        finite);
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
                                 const T*, T*, int64_t, int64_t);                              \
  template std::pair<int64_t, int64_t> dot_tile_shape<T>();                                    \
  template void dot_tiles<T>(int64_t, int64_t, const T*, const int64_t*, const int64_t*,        \
                             const uint16_t*, const T*, int64_t, int64_t, T*);           \
  template void general_grad_tiles<T>(int64_t, int64_t, const T*, const int64_t*,              \
                                      const int64_t*, const T*, const T*, T*, int64_t, int64_t, \
                                      bool);                                                   \
  template void general_dot_tiles<T>(int64_t, int64_t, const T*, const int64_t*, const int64_t*, \
                                     const T*, const T*, int64_t, int64_t, T*, bool);
INN_INSTANTIATE(float)
INN_INSTANTIATE(double)
#undef INN_INSTANTIATE

}  // namespace inn::cpu
