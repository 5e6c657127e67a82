// Internal interface between the GEMM dispatcher (interval_gemm.cpp: ISA choice, work split,
// threads) and the per-instruction-set kernel translation units (gemm_avx512.cpp,
// gemm_avx2.cpp, gemm_scalar.cpp), which compute one output block each, single-threaded.
//
// Torch-free on purpose: the SIMD translation units compile their kernels under
// `#pragma GCC target(...)` and must not instantiate library inline code with those flags.
#pragma once

#include <cstddef>
#include <cstdint>

#include "interval_gemm.h"

namespace inn::cpu {

// The operands of all three products; the output and its extents depend on the product:
//   forward          y (M x N)  rows m, cols n, reduction over k
//   backward_input   y (M x K)  rows m, cols k, reduction over n   (g = upstream gradient)
//   backward_weight  y (N x K)  rows n, cols k, reduction over m
template <typename T>
struct GemmArgs {
  int64_t M, N, K;
  ConstView<T> x_lo, x_hi, w_lo, w_hi;
  ConstView<T> g_lo, g_hi;  // backward only
  View<T> y_lo, y_hi;
  bool input_nonneg;
  bool accumulate;  // add to y instead of overwriting it
};

// One block of output rows [r0, r1) x cols [c0, c1), over the whole reduction.
template <typename T>
using BlockFn = void (*)(const GemmArgs<T>&, int64_t r0, int64_t r1, int64_t c0, int64_t c1);

// Preferred block shape of a kernel: `rows`/`cols` are the register tile (blocks should be
// multiples of it); `wide_cols` the column extent that amortises the packing of a block.
struct BlockShape {
  int64_t rows, cols, wide_cols;
};

template <typename T>
struct ProductKernel {
  BlockFn<T> run;
  BlockShape shape;
};

template <typename T>
struct IsaKernels {
  ProductKernel<T> forward, backward_input, backward_weight;
};

// The pixel-lane kernels of the convolutions (pixel_simd_kernels.h; see interval_gemm.h for what
// they compute). `width` arguments are multiples of `pixel_tile`.
template <typename T>
using CombineFn = void (*)(int64_t rows, const int64_t* begin, const int64_t* end, const T* coef,
                           const int64_t* offset, const T* src, T* out, int64_t ld_out,
                           int64_t width, bool accumulate);
template <typename T>
using DotTilesFn = void (*)(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
                            const int64_t* y_off, const uint16_t* sign, const T* src, int64_t ld,
                            int64_t width, T* out);

template <typename T>
using SelectTilesFn = void (*)(int64_t tiles, int64_t taps, const T* w, const uint16_t* sign,
                               const uint16_t* enable, const int64_t* x_off,
                               const int64_t* y_off, const T* src, T* out, int64_t ld_out,
                               int64_t width);

template <typename T>
using GeneralTilesFn = void (*)(int64_t tiles, int64_t taps, const T* w, const int64_t* runs,
                                const int64_t* x_off, const int64_t* y_off, const T* src, T* out,
                                int64_t ld_out, int64_t width, bool nonneg, bool accumulate);

template <typename T>
using GeneralGradTilesFn = void (*)(int64_t tiles, int64_t taps, const T* w, const int64_t* runs,
                                    const int64_t* x_off, const int64_t* y_off, const T* src,
                                    const T* xs, T* out, int64_t ld, int64_t width, bool finite);
template <typename T>
using GeneralDotTilesFn = void (*)(int64_t c_tiles, int64_t k_tiles, const T* g,
                                   const int64_t* x_off, const int64_t* y_off, const T* w,
                                   const T* src, int64_t ld, int64_t width, T* out,
                                   bool finite);

template <typename T>
struct PixelKernels {
  CombineFn<T> combine;
  SelectTilesFn<T> select;
  GeneralTilesFn<T> general;
  DotTilesFn<T> dot;
  GeneralGradTilesFn<T> general_grad;
  GeneralDotTilesFn<T> general_dot;
  int64_t pixel_tile;
  int64_t tile_channels;           // output channels per select tile
  int64_t dot_channels, dot_taps;  // a dot tile
};

// Vectors per combine_rows tile (8: the accumulators that cover 4-cycle FMAs on 2 pipes).
constexpr int kCombineVectors = 8;

struct IsaTable {
  const char* name;
  IsaKernels<float> f32;
  IsaKernels<double> f64;
  PixelKernels<float> pixel_f32;
  PixelKernels<double> pixel_f64;
};

extern const IsaTable kScalarKernels;

// The scalar pixel-lane kernels in any path's tile layout (gemm_scalar.cpp): `mr` channels per
// select tile, dot tiles of `dc` channels x `dk` taps. Every product is a bound product
// (0 * inf = 0): the repaired path of pixel-lane calls whose operands are not all finite.
namespace scalar_pixel {
template <typename T>
void combine_rows(int64_t rows, const int64_t* begin, const int64_t* end, const T* coef,
                  const int64_t* offset, const T* src, T* out, int64_t ld_out, int64_t width,
                  bool accumulate);
template <typename T>
void select_tiles(int64_t mr, int64_t tiles, int64_t taps, const T* w, const uint16_t* sign,
                  const uint16_t* enable, const int64_t* x_off, const int64_t* y_off,
                  const T* src, T* out, int64_t ld_out, int64_t width);
// general_tiles, general_grad_tiles: the layout of ClassifiedWeights without its runs (each
// tile's taps in its own order, offsets at x_off + tile * taps): every term takes both
// candidates and the choice (general_tiles with `nonneg`: the product the weight's sign picks).
template <typename T>
void general_tiles(int64_t mr, int64_t tiles, int64_t taps, const T* w, const int64_t* x_off,
                   const int64_t* y_off, const T* src, T* out, int64_t ld_out, int64_t width,
                   bool nonneg, bool accumulate);
template <typename T>
void dot_tiles(int64_t dc, int64_t dk, int64_t c_tiles, int64_t k_tiles, const T* g,
               const int64_t* x_off, const int64_t* y_off, const uint16_t* sign, const T* src,
               int64_t ld, int64_t width, T* out);
template <typename T>
void general_grad_tiles(int64_t mr, int64_t tiles, int64_t taps, const T* w,
                        const int64_t* x_off, const int64_t* y_off, const T* src, const T* xs,
                        T* out, int64_t ld, int64_t width);
template <typename T>
void general_dot_tiles(int64_t dc, int64_t dk, int64_t c_tiles, int64_t k_tiles, const T* g,
                       const int64_t* x_off, const int64_t* y_off, const T* w, const T* src,
                       int64_t ld, int64_t width, T* out);
}  // namespace scalar_pixel
extern const IsaTable kAvx2Kernels;
extern const IsaTable kAvx512Kernels;

}  // namespace inn::cpu
