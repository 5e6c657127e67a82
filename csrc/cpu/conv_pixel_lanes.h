// The pixel-lane family's shared machinery (used by conv_pixel_forward.cpp,
// conv_pixel_input_grad.cpp and conv_pixel_weight_grad.cpp): how a call is cut into chunks, the
// layouts of the chunk buffers, and the moves between NCHW tensors and those buffers.
//
// Vector lanes over pixels, weights broadcast as scalars: the few-channel layers (8..64 channels,
// large images) fill every lane, where the GEMM family (conv_gemm.cpp), with lanes over channels,
// wastes most of them and copies every element twice (im2col, packing). With x_lo >= 0 each term
// is a weight bound times ONE input row chosen by the weight's sign, a scalar: the kernels
// (interval_gemm.h) take it as a precomputed sign word per weight, and a register tile of several
// output channels x a few pixel vectors shares each loaded input vector between its channels (a
// blend picks l or h).
//  * forward (general_tiles, both modes, on weights classified per call by sign with each
//    tile's taps regrouped by kind: ClassifiedWeights; a direct conv2d's taps in blocks of input
//    channels, each classified on its own, so that a block's source rows stay in L1):
//    output channels x input taps;
//  * input gradient (select_tiles with gates, rare straddling weights in term lists for
//    combine_rows; general mode general_grad_tiles on weights classified for the gradient, which
//    also reads the input at the result's pixels): input channels x output-gradient taps of the
//    flipped kernel;
//  * weight gradient (dot_tiles; general mode general_dot_tiles, known candidates on tiles of
//    sign-routed weights): dot products over the chunk's pixels, per thread partials.
//
// Stride-1 conv2d reads no im2col ("direct"): a chunk's source planes are copied once, zero
// padded, into rows `padded_w` wide; output pixel (y, x) is position y * padded_w + x, and tap
// (i, j) reads position + i * dilation_h * padded_w + j * dilation_w. The extra columns of the
// padded grid are computed and dropped. The input gradient is the same with the output gradient
// as source and the kernel flipped. Other strides, conv_transpose2d and the weight gradients
// gather transposed im2col rows (windows) instead.
//
// Chunks (whole images, or whole rows of one image) run in parallel, each on its thread's
// workspace. All chunk buffers are row-major over positions, one row per (channel or tap, bound),
// with a fixed row length per call (so tap offsets hold for every chunk) and zeros past the
// pixels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "conv_cpu.h"

namespace inn::cpu::conv {

// Chunk buffer bytes at most (half the L2 cache; measured flat from 256 KiB to 1 MiB), and the
// least pixels of a chunk (amortises the horizontal sums of the weight gradient).
constexpr int64_t kPixelBudgetBytes = int64_t(512) << 10;
constexpr int64_t kMinChunkPixels = 256;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The row stride of a chunk buffer: the longest chunk rounded up to whole pixel tiles.
inline int64_t chunk_ld(const std::vector<Chunk>& chunks, int64_t tile) {
  int64_t ld = 0;
  for (const Chunk& chunk : chunks) ld = std::max(ld, round_up(chunk.rows(), tile));
  return ld;
}

// The weights of `rows` rows per group, `depth` terms each ((a, b) = weight(grp, row, k)), packed
// for the pixel-lane tiles of mr rows (per (group, tile, term) [a x mr, b x mr]; the last tile's
// rows past `rows` stay zero) and classified for general_tiles (both modes) and
// general_grad_tiles: a weight [a, b] of one sign (both bounds >= 0, or both <= 0; for the
// gradients also sign-routed: sign_routed_weight, interval_math.h) takes known candidates; the
// others (straddling zero, a < 0 < b: rare in a trained network, only where |w| is below the
// interval's width; invalid or out-of-range intervals) take both candidates and the choice
// (non-negative mode: a blend by each weight's sign). A
// tile's tap has kind sum_i 2^i [channel i's bounds are not both >= 0] when every channel's
// weight is classified, else 2^mr (rows past `rows` are zero: both >= 0). Per (group, tile) the
// taps are reordered by kind (stable), with the weights in that order, the source rows' offsets
// in that order (`offsets`: depth x offsets, then depth y offsets, as the unclassified tiles
// take them) and the count per kind.
template <typename T>
struct ClassifiedWeights {
  int64_t mr, tiles, depth, kinds;
  std::vector<T> values;
  std::vector<int64_t> runs, x_off, y_off;

  // for_gradient: classify by sign_routed_weight (else one_sign).
  template <typename F>
  ClassifiedWeights(int64_t groups, int64_t rows, int64_t depth, int64_t mr,
                    const std::vector<int64_t>& offsets, bool for_gradient, F&& weight)
      : mr(mr),
        tiles(ceil_div(rows, mr)),
        depth(depth),
        kinds((int64_t(1) << mr) + 1),
        values(groups * tiles * depth * 2 * mr, T(0)),
        runs(groups * tiles * kinds, 0),
        x_off(groups * tiles * depth),
        y_off(groups * tiles * depth) {
    std::vector<int64_t> kind(depth), order(depth);
    for (int64_t grp = 0; grp < groups; ++grp) {
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t gt = grp * tiles + tile;
        for (int64_t k = 0; k < depth; ++k) {
          kind[k] = 0;
          for (int64_t i = 0; i < mr && tile * mr + i < rows && kind[k] < kinds - 1; ++i) {
            const auto [a, b] = weight(grp, tile * mr + i, k);
            if (!(for_gradient ? sign_routed_weight(a, b) : one_sign(a, b))) {
              kind[k] = kinds - 1;
            } else if (!(a >= T(0) && b >= T(0))) {
              kind[k] |= int64_t(1) << i;
            }
          }
          ++runs[gt * kinds + kind[k]];
        }
        for (int64_t k = 0; k < depth; ++k) order[k] = k;
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t p, int64_t q) { return kind[p] < kind[q]; });
        for (int64_t t = 0; t < depth; ++t) {
          const int64_t k = order[t];
          x_off[gt * depth + t] = offsets[k];
          y_off[gt * depth + t] = offsets[depth + k];
          T* at = &values[(gt * depth + t) * 2 * mr];
          for (int64_t i = 0; i < mr && tile * mr + i < rows; ++i) {
            const auto [a, b] = weight(grp, tile * mr + i, k);
            at[i] = a;
            at[mr + i] = b;
          }
        }
      }
    }
  }

  const T* values_of(int64_t grp) const { return &values[grp * tiles * depth * 2 * mr]; }
  const int64_t* runs_of(int64_t grp) const { return &runs[grp * tiles * kinds]; }
  const int64_t* x_off_of(int64_t grp) const { return &x_off[grp * tiles * depth]; }
  const int64_t* y_off_of(int64_t grp) const { return &y_off[grp * tiles * depth]; }
};

// The batch's `pixels` per image, grid_w per row, in chunks: whole images when images are small,
// whole rows of one image otherwise (unless whole_images); at least two chunks per thread where
// that leaves kMinChunkPixels per chunk.
inline std::vector<Chunk> pixel_chunks(int64_t batch, int64_t pixels, int64_t grid_w,
                                       int64_t bytes_per_pixel, bool whole_images = false) {
  const int64_t share = ceil_div(batch * pixels, 2 * int64_t(at::get_num_threads()));
  int64_t rows = std::max(kMinChunkPixels, std::min(kPixelBudgetBytes / bytes_per_pixel, share));
  if (whole_images) rows = std::max(rows, pixels);
  std::vector<Chunk> chunks;
  if (rows >= pixels) {
    const int64_t images = rows / pixels;
    for (int64_t n = 0; n < batch; n += images) {
      chunks.push_back({n, std::min(images, batch - n), 0, pixels});
    }
  } else {
    rows = std::max(grid_w, rows / grid_w * grid_w);
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t p = 0; p < pixels; p += rows) {
        chunks.push_back({n, 1, p, std::min(rows, pixels - p)});
      }
    }
  }
  return chunks;
}

// Where chunk pixel p (of a grid grid_w wide) of the chunk's image n is computed: position
// n * image_stride + (p / grid_w) * row_stride + p % grid_w - base.
struct Positions {
  int64_t grid_w, image_stride, row_stride, base;
  int64_t operator()(int64_t n, int64_t p) const {
    return n * image_stride + (p / grid_w) * row_stride + p % grid_w - base;
  }
};

// The layout of one kind of chunk buffer: positions, the computed width (a multiple of
// pixel_tile<T>()) and the fixed row length `ld` (>= width plus the reach of the taps).
struct ChunkLayout {
  Positions at;
  int64_t width, ld;
};

// A stride-1 conv2d (or its input gradient) as shifted reads of padded source planes: the
// source (src_h x src_w) sits at row `top`, column `left` of zero planes padded_w wide, and the
// output grid is out_h x out_w; a chunk of output rows [y0, y1) reads padded rows
// [y0, y1 + reach_h), its slab. Tap offsets: tap_h * padded_w + tap_w.
struct Direct {
  int64_t src_h, src_w, top, left, padded_w, out_h, out_w, reach_h, reach_w;

  int64_t slab_rows(const Chunk& c) const { return c.pixels / out_w + reach_h; }
  ChunkLayout layout(const Chunk& c, int64_t ld) const {
    const int64_t slab = slab_rows(c) * padded_w;
    const int64_t last = (c.images - 1) * slab + (c.pixels / out_w) * padded_w;
    return {{out_w, slab, padded_w, (c.first_pixel / out_w) * padded_w},
            round_up(last, pixel_tile_width),
            ld};
  }
  int64_t pixel_tile_width;
  // Row length that fits every chunk's slabs and the reach of the last position's taps.
  int64_t ld(const std::vector<Chunk>& chunks) const {
    int64_t most = 0;
    for (const Chunk& c : chunks) most = std::max(most, c.images * slab_rows(c) * padded_w);
    return round_up(most, pixel_tile_width) + reach_h * padded_w + reach_w;
  }

  // rows[(2 * ch + bound) * ld] = the padded slabs of channel first + ch of the pair (lo, hi) of
  // NCHW tensors with `channels` channels.
  template <typename T>
  void fill(const T* lo, const T* hi, int64_t channels, int64_t first, int64_t count,
            const Chunk& c, int64_t ld, T* rows) const {
    const int64_t y0 = c.first_pixel / out_w, slab = slab_rows(c);
    const int64_t copy = std::min(src_w, padded_w - left);
    for (int64_t ch = 0; ch < count; ++ch) {
      for (int bound = 0; bound < 2; ++bound) {
        T* dst = rows + (2 * ch + bound) * ld;
        for (int64_t n = 0; n < c.images; ++n) {
          const T* plane = (bound == 0 ? lo : hi) +
                           ((c.first_image + n) * channels + first + ch) * src_h * src_w;
          for (int64_t r = 0; r < slab; ++r, dst += padded_w) {
            const int64_t sy = y0 + r - top;
            if (sy < 0 || sy >= src_h) {
              std::fill_n(dst, padded_w, T(0));
              continue;
            }
            std::fill_n(dst, left, T(0));
            std::copy_n(plane + sy * src_w, copy, dst + left);
            std::fill(dst + left + copy, dst + padded_w, T(0));
          }
        }
        std::fill(dst, rows + (2 * ch + bound + 1) * ld, T(0));
      }
    }
  }
};

// Gathered rows: position = chunk pixel index (pixels of the column side: conv2d's output,
// conv_transpose2d's input).
template <typename T>
ChunkLayout gathered_layout(const ConvGeometry& g, const Chunk& c, int64_t ld) {
  return {{g.small_w, c.pixels, g.small_w, c.first_pixel}, round_up(c.rows(), pixel_tile<T>()), ld};
}

// rows[(2 * k + bound) * ld] = the image-side pair (lo, hi) (conv2d's input, conv_transpose2d's
// output gradient) at tap k = (channel, i, j) of every column-side pixel of the chunk (transposed
// im2col), zero padded.
template <typename T>
void windows(const KernelCall<T>& c, const T* lo, const T* hi, int64_t grp, const Chunk& chunk,
             int64_t ld, T* rows) {
  const ConvGeometry& g = c.g;
  const int64_t plane = g.big_pixels(), in_channels = g.big_per_group() * c.groups;
  for (int64_t ch = 0; ch < g.big_per_group(); ++ch) {
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t k = (ch * g.kernel_h + i) * g.kernel_w + j;
        const Axis y{g.stride_h, i * g.dil_h - g.pad_h};
        const Axis x{g.stride_w, j * g.dil_w - g.pad_w};
        for (int bound = 0; bound < 2; ++bound) {
          const T* src = bound == 0 ? lo : hi;
          T* dst = rows + (2 * k + bound) * ld;
          const int64_t channel = grp * g.big_per_group() + ch;
          for (int64_t n = 0; n < chunk.images; ++n) {
            gather_plane(src + ((chunk.first_image + n) * in_channels + channel) * plane, g.big_h,
                         g.big_w, g.small_w, chunk.first_pixel, chunk.first_pixel + chunk.pixels, y,
                         x, dst + n * chunk.pixels);
          }
          std::fill(dst + chunk.rows(), dst + ld, T(0));
        }
      }
    }
  }
}

// For channels first + ch of an NCHW pair (lo, hi) with `channels` channels of `plane` pixels
// and chunk rows[(2 * ch + bound) * ld]: move(image pixels, row positions, run, 2 * ch + bound)
// for the runs of the chunk's pixels that are contiguous in both.
template <typename P, typename R, typename F>
void for_each_run(P lo, P hi, int64_t channels, int64_t first, int64_t count, int64_t plane,
                  const Chunk& chunk, const ChunkLayout& layout, R rows, F&& move) {
  const int64_t grid_w = layout.at.grid_w, last = chunk.first_pixel + chunk.pixels;
  for (int64_t ch = 0; ch < count; ++ch) {
    for (int bound = 0; bound < 2; ++bound) {
      for (int64_t n = 0; n < chunk.images; ++n) {
        P image = (bound == 0 ? lo : hi) + ((chunk.first_image + n) * channels + first + ch) * plane;
        for (int64_t p = chunk.first_pixel; p < last;) {
          const int64_t run = std::min(grid_w - p % grid_w, last - p);
          move(image + p, rows + (2 * ch + bound) * layout.ld + layout.at(n, p), run,
               2 * ch + bound);
          p += run;
        }
      }
    }
  }
}

// The result pair (out_lo, out_hi) at channels first + ch += rows[2 * ch + bound].
template <typename T>
void add_rows(const KernelCall<T>& c, const T* rows, const ChunkLayout& layout, int64_t channels,
              int64_t first, int64_t count, int64_t plane, const Chunk& chunk) {
  for_each_run(c.o.out_lo, c.o.out_hi, channels, first, count, plane, chunk, layout, rows,
               [](T* image, const T* row, int64_t run, int64_t) {
                 for (int64_t q = 0; q < run; ++q) image[q] += row[q];
               });
}

// The result pair at channels first + ch = bias + rows[2 * ch + bound] (the bias pair c.o.b_lo,
// c.o.b_hi, or zero): for kernels whose chunks and groups write every element once (conv2d's
// forward), so that the result needs no initialising. The sum is the one of adding the rows into
// a bias-filled result.
template <typename T>
void store_rows(const KernelCall<T>& c, const T* rows, const ChunkLayout& layout,
                int64_t channels, int64_t first, int64_t count, int64_t plane,
                const Chunk& chunk) {
  for_each_run(c.o.out_lo, c.o.out_hi, channels, first, count, plane, chunk, layout, rows,
               [&](T* image, const T* row, int64_t run, int64_t r) {
                 const T* bias = r % 2 == 0 ? c.o.b_lo : c.o.b_hi;
                 const T b = bias ? bias[first + r / 2] : T(0);
                 for (int64_t q = 0; q < run; ++q) image[q] = b + row[q];
               });
}

// Runs body(chunk, buffer) for every chunk in parallel, `buffer` (`bytes`) in the thread's
// workspace.
template <typename F>
void for_each_chunk(const std::vector<Chunk>& chunks, size_t bytes, F&& body) {
  at::parallel_for(0, int64_t(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(chunks[i], thread_workspace(bytes));
  });
}

// Whether the n elements of both lo and hi are finite: then no general-mode candidate is NaN
// (no inf * 0), and the general gradient tiles decide each choice with one compare.
template <typename T>
bool all_finite(const T* lo, const T* hi, int64_t n) {
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    finite &= (std::abs(lo[i]) <= std::numeric_limits<T>::max()) &
              (std::abs(hi[i]) <= std::numeric_limits<T>::max());
  }
  return finite;
}

// The rows of the column-side pair (lo, hi) of the chunk (channels first.. first + count of an
// NCHW pair with `channels` channels), as gathered rows 2 * ch + bound, zero padded.
template <typename T>
void pixel_rows(const KernelCall<T>& c, const T* lo, const T* hi, int64_t channels, int64_t first,
                int64_t count, const Chunk& chunk, int64_t ld, T* rows) {
  const ChunkLayout layout = gathered_layout<T>(c.g, chunk, ld);
  for (int64_t q = 0; q < 2 * count; ++q) {
    std::fill(rows + q * ld + chunk.rows(), rows + (q + 1) * ld, T(0));
  }
  for_each_run(lo, hi, channels, first, count, c.g.small_pixels(), chunk, layout, rows,
               [](const T* image, T* row, int64_t run, int64_t) {
                 std::copy_n(image, run, row);
               });
}

}  // namespace inn::cpu::conv
