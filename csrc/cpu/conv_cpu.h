// What the CPU interval convolutions share between their op glue (interval_conv_cpu.cpp) and
// their two kernel families:
//  * the GEMM family (conv_gemm.cpp): the fused interval GEMMs (interval_gemm.h) around im2col /
//    col2im (im2col.h), over chunks of pixels sized by ChunkPlan into RowBuffers;
//  * the pixel-lane family (conv_pixel_*.cpp, conv_pixel_lanes.h): vector lanes over pixels.
// One KernelCall describes one kernel call to either family; the entry points of both are
// declared at the end, instantiated for float and double in their files.
//
// Vocabulary: the "image side" has g.big_per_group() channels per group (conv2d's input,
// conv_transpose2d's output), the "column side" `channels` channels in all (conv2d's output,
// conv_transpose2d's input). conv_transpose2d kernels get the weight transposed (see
// transpose_weight in interval_conv_cpu.cpp) and write its gradient so.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "../interval_math.h"
#include "im2col.h"
#include "interval_gemm.h"

namespace inn::cpu::conv {

// GEMM family: buffers per chunk (all of them together), large enough that a GEMM call amortises
// its setup, small enough to stay in the shared L3 cache.
constexpr int64_t kBufferBudgetBytes = int64_t(16) << 20;

// Output channels per group from which a conv2d forward may run on the GEMM kernel, where its
// lanes over channels are full.
constexpr int64_t kGemmGeneralChannels = 64;

// The share of (tile of `mr` output channels of a group, tap) pairs of a conv2d weight
// (groups x out_g, kg) that hold a weight not of one sign (one_sign, interval_math.h: a weight
// straddling zero, or an invalid interval): the general pixel-lane forward's two-candidate taps.
template <typename T>
double straddling_tap_share(const T* w_lo, const T* w_hi, int64_t groups, int64_t out_g,
                            int64_t kg, int64_t mr) {
  int64_t straddling = 0, pairs = 0;
  for (int64_t grp = 0; grp < groups; ++grp) {
    for (int64_t c0 = grp * out_g; c0 < (grp + 1) * out_g; c0 += mr) {
      const int64_t c1 = std::min(c0 + mr, (grp + 1) * out_g);
      for (int64_t k = 0; k < kg; ++k, ++pairs) {
        for (int64_t c = c0; c < c1; ++c) {
          if (!one_sign(w_lo[c * kg + k], w_hi[c * kg + k])) {
            ++straddling;
            break;
          }
        }
      }
    }
  }
  return pairs ? double(straddling) / double(pairs) : 0.0;
}

// Above this share of straddling taps a general-mode forward with kGemmGeneralChannels or more
// output channels runs on the GEMM. Measured after the pixel lanes' tap blocks (2 threads,
// general forward, `benchmarks/general_weights_cpu.py --straddling 0.1 0.3`, pixel lanes forced
// against the GEMM): 10 % of the weights straddling (34 % of AVX-512's taps, tiles of 4
// channels; 19 % of AVX2's, tiles of 2) 21.0 vs 35.6 ms (AVX-512) and 35.0 vs 52.2 ms (AVX2) at
// 64->64 on 8x32^2, 49.9 vs 58.0 and 78.6 vs 92.0 ms at 128->128 on 4x32^2: the lanes win; 30 %
// straddling (76 % / 51 % of the taps) 28.7 vs 34.9 and 46.6 vs 52.7 ms at 64->64, but 68.3 vs
// 58.9 and 104 vs 92.6 ms at 128->128: the GEMM wins at 128 channels. (The rule was 1/8 before
// the tap blocks.) Trained networks' weights rarely straddle.
constexpr double kGemmStraddlingShare = 0.5;

// Whether a conv2d forward runs on the GEMM family: from kGemmGeneralChannels output channels
// per group, where the output has few pixels per image against the reduction (out_pixels * 8
// <= C_in/groups * kh * kw: e.g. 3x3 kernels at 256 channels up to 16x16 images, at 64 channels
// up to 8x8): there the pixel lanes are mostly padding and each chunk re-packs all the weights
// for a few pixels. Measured (AVX-512, one thread, non-negative, fused / plain conv2d): 256->256
// on 4x4 13.6x on pixel lanes, 5.1x on the GEMM; 512->512 on 2x2 20.5x vs 6.5x; 256->256 on
// 16x16 5.9x vs 4.8x; 128->128 on 16x16 4.4x vs 4.8x (stays on lanes). General mode also where
// more than kGemmStraddlingShare of the pixel tiles' taps straddle (`straddling_share()`, only
// evaluated when it decides). Both compute the same exact products; only the summation order
// differs.
template <typename F>
bool forward_on_gemm(const ConvGeometry& g, int64_t out_channels_per_group, bool nonneg,
                     F&& straddling_share) {
  if (out_channels_per_group < kGemmGeneralChannels) return false;
  if (g.small_pixels() * 8 <= g.big_depth()) return true;  // out pixels vs C_in/groups * kh * kw
  return !nonneg && straddling_share() > kGemmStraddlingShare;
}

// How `batch` images of `pixels` column-side pixels are cut into chunks, given the buffer bytes
// each row (pixel) of a chunk needs: several whole images when images are small, part of one
// image when they are large, so that a chunk's buffers stay within kBufferBudgetBytes.
struct ChunkPlan {
  int64_t batch, pixels, images, pixels_per_chunk;

  ChunkPlan(int64_t batch_, int64_t pixels_, int64_t bytes_per_row)
      : batch(batch_), pixels(pixels_) {
    const int64_t rows =
        std::max<int64_t>(1, kBufferBudgetBytes / std::max<int64_t>(1, bytes_per_row));
    images = std::clamp<int64_t>(rows / std::max<int64_t>(1, pixels), 1,
                                 std::max<int64_t>(1, batch));
    pixels_per_chunk = std::min(rows, pixels);
  }
  int64_t capacity() const { return images * pixels_per_chunk; }

  template <typename F>
  void for_each(F&& body) const {
    if (pixels == 0) return;
    for (int64_t n = 0; n < batch; n += images) {
      const int64_t count = std::min(images, batch - n);
      for (int64_t p = 0; p < pixels; p += pixels_per_chunk) {
        body(Chunk{n, count, p, std::min(pixels_per_chunk, pixels - p)});
      }
    }
  }
};

// A pair (lo, hi) of row-major (rows x width) chunk buffers: GEMM operands and results.
template <typename T>
struct RowBuffer {
  at::Tensor storage;
  T* lo = nullptr;
  T* hi = nullptr;
  int64_t width;
  RowBuffer(const ChunkPlan& plan, int64_t width_, bool needed, const at::TensorOptions& options)
      : width(width_) {
    if (!needed) return;
    const int64_t elements = plan.capacity() * width;
    storage = at::empty({2, elements}, options);
    lo = storage.mutable_data_ptr<T>();
    hi = lo + elements;
  }
  ConstView<T> const_lo() const { return {lo, width, 1}; }
  ConstView<T> const_hi() const { return {hi, width, 1}; }
  View<T> view_lo() { return {lo, width, 1}; }
  View<T> view_hi() { return {hi, width, 1}; }
};

// A contiguous NCHW pair with `channels` channels of `plane` pixels, from channel `first` on, as
// im2col / col2im planes.
template <typename T>
std::pair<Planes<T>, Planes<T>> planes(T* lo, T* hi, int64_t channels, int64_t first,
                                       int64_t plane) {
  return {{lo + first * plane, channels * plane}, {hi + first * plane, channels * plane}};
}

// Pointers of the contiguous operands of one kernel call.
template <typename T>
struct Operands {
  const T *x_lo, *x_hi, *w_lo, *w_hi, *g_lo, *g_hi;  // g: the output gradient, if any
  T *out_lo, *out_hi;                                // y, dx or dw
  const T *b_lo = nullptr, *b_hi = nullptr;          // the bias conv2d_forward_pixels adds
};

// One kernel call. The image side (the big image) has g.big_per_group() channels per group, the
// column side (the small one) `channels` channels in all. The methods (for the GEMM family) move one group's part of an operand between
// its NCHW tensor and a chunk buffer, and cut out its block of the weight.
template <typename T>
struct KernelCall {
  ConvGeometry g;
  int64_t batch, groups, channels;
  Operands<T> o;
  bool nonneg;
  at::TensorOptions options;  // of the chunk buffers

  int64_t group_channels() const { return channels / groups; }  // column side

  ChunkPlan plan(int64_t bytes_per_row) const {
    return ChunkPlan(batch, g.small_pixels(), bytes_per_row);
  }
  RowBuffer<T> buffer(const ChunkPlan& plan, int64_t width, bool needed = true) const {
    return RowBuffer<T>(plan, width, needed, options);
  }
  // body(chunk, group) for every chunk, and within it every group in turn.
  template <typename F>
  void for_each_group(const ChunkPlan& plan, F&& body) const {
    plan.for_each([&](const Chunk& chunk) {
      for (int64_t grp = 0; grp < groups; ++grp) body(chunk, grp);
    });
  }

  // Columns of the image-side pair (lo, hi), group grp.
  void im2col_group(const T* lo, const T* hi, int64_t grp, const Chunk& chunk,
                    RowBuffer<T>& cols) const {
    const auto [pl, ph] = planes(lo, hi, g.big_c, grp * g.big_per_group(), g.big_pixels());
    im2col(g, chunk, pl, ph, cols.lo, cols.hi);
  }
  // The result's image side, group grp, += columns.
  void col2im_add_group(const RowBuffer<T>& cols, int64_t grp, const Chunk& chunk) const {
    const auto [pl, ph] =
        planes(o.out_lo, o.out_hi, g.big_c, grp * g.big_per_group(), g.big_pixels());
    col2im_add(g, chunk, cols.lo, cols.hi, pl, ph);
  }
  // Pixel rows of the column-side pair (lo, hi), group grp (an identity im2col).
  void gather_group(const T* lo, const T* hi, int64_t grp, const Chunk& chunk,
                    RowBuffer<T>& rows) const {
    const int64_t count = group_channels();
    const auto [pl, ph] = planes(lo, hi, channels, grp * count, g.small_pixels());
    im2col(identity_geometry(count, g.small_h, g.small_w), chunk, pl, ph, rows.lo, rows.hi);
  }
  // The result's column side, group grp, += pixel rows (an identity col2im).
  void scatter_add_group(const RowBuffer<T>& rows, int64_t grp, const Chunk& chunk) const {
    const int64_t count = group_channels();
    const auto [pl, ph] = planes(o.out_lo, o.out_hi, channels, grp * count, g.small_pixels());
    col2im_add(identity_geometry(count, g.small_h, g.small_w), chunk, rows.lo, rows.hi, pl, ph);
  }

  // Group grp's (rows x cols) row-major block of the weight.
  std::pair<ConstView<T>, ConstView<T>> weight(int64_t grp, int64_t rows, int64_t cols) const {
    const int64_t offset = grp * rows * cols;
    return {{o.w_lo + offset, cols, 1}, {o.w_hi + offset, cols, 1}};
  }
};

// ------------------------------------------------------------------- kernel entry points
// Each adds its result into c.o.out (zeroed, or the bias, by the caller), except
// conv2d_forward_pixels, which writes every element of it once, adding the bias c.o.b_lo/b_hi.

// GEMM family (conv_gemm.cpp).
template <typename T>
void conv2d_forward_gemm(const KernelCall<T>& c);
template <typename T>
void conv2d_backward_input_gemm(const KernelCall<T>& c);

// Pixel-lane family: forward (conv_pixel_forward.cpp), input gradient
// (conv_pixel_input_grad.cpp), weight gradient (conv_pixel_weight_grad.cpp).
template <typename T>
void conv2d_forward_pixels(const KernelCall<T>& c);
template <typename T>
void conv_transpose2d_forward_pixels(const KernelCall<T>& c);
// Only where conv2d_input_grad_is_direct(c.g); the GEMM kernel computes the others.
template <typename T>
void conv2d_backward_input_pixels(const KernelCall<T>& c);
template <typename T>
void conv_transpose2d_backward_input_pixels(const KernelCall<T>& c);
template <typename T>
void conv2d_backward_weight_pixels(const KernelCall<T>& c);
template <typename T>
void conv_transpose2d_backward_weight_pixels(const KernelCall<T>& c);

// Whether conv2d's input gradient has the pixel lanes' direct form: stride 1 and padding at most
// the dilated kernel's reach.
bool conv2d_input_grad_is_direct(const ConvGeometry& g);

}  // namespace inn::cpu::conv
