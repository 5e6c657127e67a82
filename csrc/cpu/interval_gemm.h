// The fused interval matrix products that every CPU op is built from.
//
// All three functions take strided 2-D views, so linear layers, im2col columns and NCHW outputs
// are consumed and produced without copies. Interval semantics and tie conventions are those of
// csrc/interval_math.h, products included (0 * inf = 0: every function here follows it, the
// pixel-lane ones too). With `input_nonneg` the caller guarantees x_lo >= 0 (the sign-split fast
// path, one product per bound per term).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace inn::cpu {

template <typename T>
struct ConstView {
  const T* data;
  int64_t row_stride;
  int64_t col_stride;
  T operator()(int64_t row, int64_t col) const { return data[row * row_stride + col * col_stride]; }
};

template <typename T>
struct View {
  T* data;
  int64_t row_stride;
  int64_t col_stride;
  T& operator()(int64_t row, int64_t col) const { return data[row * row_stride + col * col_stride]; }
};

// Y (M x N) = (accumulate ? Y : 0) + X (M x K) * W (N x K)^T, both bounds.
template <typename T>
void interval_gemm_forward(int64_t M, int64_t N, int64_t K, ConstView<T> x_lo, ConstView<T> x_hi,
                           ConstView<T> w_lo, ConstView<T> w_hi, View<T> y_lo, View<T> y_hi,
                           bool input_nonneg, bool accumulate);

// Gradients of the forward above with respect to X (M x K), given G (M x N) for both bounds.
template <typename T>
void interval_gemm_backward_input(int64_t M, int64_t N, int64_t K, ConstView<T> g_lo,
                                  ConstView<T> g_hi, ConstView<T> x_lo, ConstView<T> x_hi,
                                  ConstView<T> w_lo, ConstView<T> w_hi, View<T> dx_lo,
                                  View<T> dx_hi, bool input_nonneg, bool accumulate);

// Gradients of the forward above with respect to W (N x K), given G (M x N) for both bounds.
template <typename T>
void interval_gemm_backward_weight(int64_t M, int64_t N, int64_t K, ConstView<T> g_lo,
                                   ConstView<T> g_hi, ConstView<T> x_lo, ConstView<T> x_hi,
                                   ConstView<T> w_lo, ConstView<T> w_hi, View<T> dw_lo,
                                   View<T> dw_hi, bool input_nonneg, bool accumulate);

// 64-byte aligned scratch memory owned by the calling thread, valid until the thread's next call
// (GEMM blocks, or convolution chunks, run one after the other on a thread, so one buffer per
// thread suffices; nothing called with it held may take it). Grows as needed and is kept, so
// repeated calls do not page-fault fresh memory.
void* thread_workspace(size_t bytes);

// Pixel-lane kernels of the convolutions (rows of `width` pixels, `width` a multiple of
// pixel_tile<T>(); single-threaded: the convolutions parallelise over pixel chunks).
template <typename T>
int64_t pixel_tile();

// out[r * ld_out + p] (+)= sum over t in [begin[r], end[r]) of coef[t] * src[offset[t] + p].
template <typename T>
void combine_rows(int64_t rows, const int64_t* begin, const int64_t* end, const T* coef,
                  const int64_t* offset, const T* src, T* out, int64_t ld_out, int64_t width,
                  bool accumulate);

// Channels per tile of select_tiles.
template <typename T>
int64_t select_tile_channels();

// In tiles of select_tile_channels<T>() channels c (C per tile), over taps t with source rows
// x_t = src + x_off[t], y_t = src + y_off[t]:
//   out row 2 * c     = sum_t [e] a * (sa ? x_t : y_t)
//   out row 2 * c + 1 = sum_t b * (sb ? y_t : x_t)
// Per tile and tap: coefficients [a x C, b x C], sign words [sa x C, sb x C] (0xFFFF: true, 0:
// false), and, if `enable` is given, enable words e [C] of the lower row's terms (else all on).
// The non-negative conv forward is x = l, y = h with the weights' signs as sa, sb. Where a term is
// enabled, sa and sb must be (a >= 0) and (b >= 0): AVX2 computes them so instead of loading them.
template <typename T>
void select_tiles(int64_t tiles, int64_t taps, const T* w, const uint16_t* sign,
                  const uint16_t* enable, const int64_t* x_off, const int64_t* y_off,
                  const T* src, T* out, int64_t ld_out, int64_t width);

// The general (signed input) product in select_tiles' layout, per tap (x = l, y = h):
//   out row 2c     += min(x * (x >= 0 ? a : b), y * (y >= 0 ? a : b))
//   out row 2c + 1 += max(x * (x >= 0 ? b : a), y * (y >= 0 ? b : a))
// (the choice and NaN conventions of csrc/interval_math.h), or with
// `nonneg` the non-negative mode's a * (a >= 0 ? x : y), b * (b >= 0 ? y : x), on weights
// classified per tile (ClassifiedWeights, conv_pixel_lanes.h): each tile has its own tap order,
// weights, offsets x_off + tile * taps, y_off + tile * taps, and runs (taps per weight kind,
// runs + tile * (2^select_tile_channels() + 1)). `accumulate`: the rows start from their
// contents instead (the taps of a call split into blocks, each its own call).
template <typename T>
void general_tiles(int64_t tiles, int64_t taps, const T* w, const int64_t* runs,
                   const int64_t* x_off, const int64_t* y_off, const T* src, T* out,
                   int64_t ld_out, int64_t width, bool nonneg, bool accumulate);

// Tile shape of dot_tiles: channels c, taps k.
template <typename T>
std::pair<int64_t, int64_t> dot_tile_shape();

// Selected dot products over p < width, for c < c_tiles * channels and k < k_pad (k_tiles *
// taps), with g rows at g + row * ld, x_k = src + x_off[k], y_k = src + y_off[k]:
//   out[(2c) * k_pad + k]     += sum_p g[2c][p] * (s_lo ? x_k : y_k)[p]
//   out[(2c + 1) * k_pad + k] += sum_p g[2c + 1][p] * (s_hi ? y_k : x_k)[p]
// where s_lo, s_hi are sign words (0xFFFF: true, 0: false) at sign[(2c) * k_pad + k] and
// sign[(2c + 1) * k_pad + k]. The non-negative conv weight gradient is x = l, y = h with the
// weights' signs.
template <typename T>
void dot_tiles(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
               const int64_t* y_off, const uint16_t* sign, const T* src, int64_t ld,
               int64_t width, T* out);

// General-mode input gradient on weights classified for the gradient (ClassifiedWeights,
// conv_pixel_lanes.h: per tile its runs, its taps' weights [a x C, b x C] and their rows' offsets
// in its order), per tap t with output-gradient rows gl = src + x_off[t], gh = src + y_off[t]
// (tile ct's at x_off + ct * taps), and the input's rows of channel c at the output rows'
// positions, l at xs + 2c * ld, h at xs + (2c + 1) * ld:
//   out rows 2c, 2c + 1 (dl, dh) = sum_t of each bound's selected candidate's g * weight, routed
//   to the input bound it multiplies (choice, ties and NaN of csrc/interval_math.h).
// `finite`: the caller guarantees finite inputs and weights (no NaN candidate: cheaper choice);
// then one-sign weights' terms take known candidates on the pixel tiles whose input lanes are all
// sign-routed (sign_routed_input, interval_math.h).
template <typename T>
void general_grad_tiles(int64_t tiles, int64_t taps, const T* w, const int64_t* runs,
                        const int64_t* x_off, const int64_t* y_off, const T* src, const T* xs,
                        T* out, int64_t ld, int64_t width, bool finite);

// General-mode weight gradient in dot_tiles' layout, the weights a = w[(2c) * k_pad + k],
// b = w[(2c + 1) * k_pad + k] in place of the sign words (x_k = l, y_k = h):
//   out[(2c) * k_pad + k] (da), out[(2c + 1) * k_pad + k] (db) += sum_p of each bound's selected
//   candidate's g * (input bound), to the weight bound it multiplies. `finite`: as above, and
//   the gradient rows g finite too (tiles of sign-routed weights then take known candidates on
//   the pixel vectors whose input lanes are all sign-routed).
template <typename T>
void general_dot_tiles(int64_t c_tiles, int64_t k_tiles, const T* g, const int64_t* x_off,
                       const int64_t* y_off, const T* w, const T* src, int64_t ld, int64_t width,
                       T* out, bool finite);

}  // namespace inn::cpu
