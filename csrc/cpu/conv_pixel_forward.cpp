// The pixel-lane forwards of the CPU interval convolutions (see conv_pixel_lanes.h for the
// scheme): conv2d (direct for stride 1, else on windows) and conv_transpose2d (computed exactly
// without zero insertion: per input pixel, every term's bounds, added into the output for the
// lower and upper bounds separately).
#include <algorithm>
#include <optional>
#include <vector>

#include "conv_pixel_lanes.h"

namespace inn::cpu::conv {
namespace {

// conv2d's direct form (stride 1), or nullopt.
std::optional<Direct> forward_direct(const ConvGeometry& g, int64_t tile) {
  if (g.stride_h != 1 || g.stride_w != 1) return std::nullopt;
  const int64_t reach_h = g.dil_h * (g.kernel_h - 1), reach_w = g.dil_w * (g.kernel_w - 1);
  return Direct{g.big_h, g.big_w, g.pad_h, g.pad_w, g.big_w + 2 * g.pad_w, g.small_h,
                g.small_w,  reach_h, reach_w, tile};
}

// The group's weight pair at (out channel co, tap k) of a (C_out, kg) weight.
template <typename T>
std::pair<T, T> weight_at(const KernelCall<T>& c, int64_t grp, int64_t co, int64_t k) {
  const int64_t at = (grp * c.group_channels() + co) * c.g.big_depth() + k;
  return {c.o.w_lo[at], c.o.w_hi[at]};
}

// The rows of tap k = (channel, i, j) of the input (bound 0: lo, 1: hi), [bound * kg + k], in a
// chunk's source buffer: gathered rows, or shifted reads of the padded planes (direct).
std::vector<int64_t> tap_offsets(const ConvGeometry& g, const std::optional<Direct>& direct,
                                 int64_t ld) {
  const int64_t kg = g.big_depth(), taps = g.kernel_h * g.kernel_w;
  std::vector<int64_t> offsets(2 * kg);
  for (int64_t k = 0; k < kg; ++k) {
    const int64_t i = k % taps / g.kernel_w, j = k % g.kernel_w;
    for (int bound = 0; bound < 2; ++bound) {
      offsets[bound * kg + k] =
          direct ? (2 * (k / taps) + bound) * ld + i * g.dil_h * direct->padded_w +
                       j * g.dil_w
                 : (2 * k + bound) * ld;
    }
  }
  return offsets;
}

// Input channels per block of a direct conv2d's taps. Sorting a tile's taps by weight kind
// scatters the nine taps of a 3x3 kernel's channel over the kinds' runs, so that over all the taps
// a pixel tile reads every source row once per run it appears in, from L2 (128 channels: about
// 100 KiB of rows per pixel tile). Classified per block of channels, the rows a pixel tile reads
// in a block (16 channels, both bounds, three kernel rows: about 20 KiB) stay in L1 across the
// block's runs, at the price of a tile's accumulators stored and reloaded once per block.
constexpr int64_t kDirectBlockChannels = 16;

// A forward's weights, classified once per call into runs of one kind per tile (both modes:
// general_tiles; in non-negative mode a one-sign weight's term is one FMA per bound, no blend),
// in blocks of `block` consecutive depth indices (the last may be shorter), each classified on
// its own; `tiles_into` runs the group's tiles over a chunk's source rows, block by block.
template <typename T>
class ForwardWeights {
 public:
  // weight(grp, row, k) -> (a, b); offsets: the source rows of each depth index k, lo then hi.
  template <typename F>
  ForwardWeights(bool nonneg, int64_t groups, int64_t rows, int64_t depth, int64_t mr,
                 int64_t block, const std::vector<int64_t>& offsets, F&& weight)
      : nonneg_(nonneg) {
    for (int64_t k0 = 0; k0 < depth; k0 += block) {
      const int64_t taps = std::min(block, depth - k0);
      std::vector<int64_t> block_offsets(offsets.begin() + k0, offsets.begin() + k0 + taps);
      block_offsets.insert(block_offsets.end(), offsets.begin() + depth + k0,
                           offsets.begin() + depth + k0 + taps);
      blocks_.emplace_back(groups, rows, taps, mr, block_offsets, false,
                           [&](int64_t grp, int64_t row, int64_t k) {
                             return weight(grp, row, k0 + k);
                           });
    }
  }

  void tiles_into(int64_t grp, int64_t tiles, const T* src, T* out, int64_t ld,
                  int64_t width) const {
    bool accumulate = false;
    for (const ClassifiedWeights<T>& b : blocks_) {
      general_tiles<T>(tiles, b.depth, b.values_of(grp), b.runs_of(grp), b.x_off_of(grp),
                       b.y_off_of(grp), src, out, ld, width, nonneg_, accumulate);
      accumulate = true;
    }
  }

 private:
  bool nonneg_;
  std::vector<ClassifiedWeights<T>> blocks_;
};

}  // namespace

// conv2d y: lo = sum_k a * (a >= 0 ? l : h), hi = sum_k b * (b >= 0 ? h : l) (general mode:
// the exact product; general_tiles both), in tiles of output channels over the chunk's input
// rows. The chunks cover every image's pixels and each writes its pixels of every channel once
// (store_rows): y need not be initialised.
template <typename T>
void conv2d_forward_pixels(const KernelCall<T>& c) {
  const ConvGeometry& g = c.g;
  const int64_t kg = g.big_depth(), out_g = c.group_channels();
  const int64_t tile = pixel_tile<T>(), mr = select_tile_channels<T>();
  const int64_t tiles = ceil_div(out_g, mr);
  const std::optional<Direct> direct = forward_direct(g, tile);
  const int64_t source_rows = 2 * (direct ? g.big_per_group() : kg);
  const std::vector<Chunk> chunks =
      pixel_chunks(c.batch, g.small_pixels(), g.small_w,
                   2 * int64_t(sizeof(T)) * (tiles * mr + (direct ? g.big_per_group() : kg)));
  const int64_t ld = direct ? direct->ld(chunks) : chunk_ld(chunks, tile);
  const std::vector<int64_t> offsets = tap_offsets(g, direct, ld);
  // Weights per group, tile and tap (output channels as rows).
  const int64_t block = direct ? kDirectBlockChannels * g.kernel_h * g.kernel_w : kg;
  const ForwardWeights<T> weights(
      c.nonneg, c.groups, out_g, kg, mr, block, offsets,
      [&](int64_t grp, int64_t co, int64_t k) { return weight_at(c, grp, co, k); });
  for_each_chunk(chunks, (source_rows + 2 * tiles * mr) * ld * sizeof(T),
                 [&](const Chunk& chunk, void* buffer) {
    T* src = static_cast<T*>(buffer);
    T* out = src + source_rows * ld;
    const ChunkLayout layout =
        direct ? direct->layout(chunk, ld) : gathered_layout<T>(g, chunk, ld);
    for (int64_t grp = 0; grp < c.groups; ++grp) {
      if (direct) {
        direct->fill(c.o.x_lo, c.o.x_hi, g.big_c, grp * g.big_per_group(), g.big_per_group(),
                     chunk, ld, src);
      } else {
        windows(c, c.o.x_lo, c.o.x_hi, grp, chunk, ld, src);
      }
      weights.tiles_into(grp, tiles, src, out, ld, layout.width);
      store_rows(c, out, layout, c.channels, grp * out_g, out_g, g.small_pixels(), chunk);
    }
  });
}

// conv_transpose2d y: per input pixel, contribution rows r = (co, i, j) (the transposed weight's
// rows) = sum over input channels ci of a * (a >= 0 ? l : h) (general_tiles over the input's
// pixel rows; general mode: the exact product), each added into y at the pixel it reaches. Chunks of whole images
// where the windows of neighbouring input pixels overlap, so that no two threads add into one
// element.
template <typename T>
void conv_transpose2d_forward_pixels(const KernelCall<T>& c) {
  const ConvGeometry& g = c.g;
  const int64_t ncol = g.big_depth(), in_g = c.group_channels(), taps = g.kernel_h * g.kernel_w;
  const int64_t tile = pixel_tile<T>(), mr = select_tile_channels<T>();
  const int64_t tiles = ceil_div(ncol, mr);
  const bool overlap = g.stride_h < g.dil_h * (g.kernel_h - 1) + 1 ||
                       g.stride_w < g.dil_w * (g.kernel_w - 1) + 1;
  const std::vector<Chunk> chunks =
      pixel_chunks(c.batch, g.small_pixels(), g.small_w,
                   2 * int64_t(sizeof(T)) * (in_g + tiles * mr), overlap);
  const int64_t ld = chunk_ld(chunks, tile);
  std::vector<int64_t> offsets(2 * in_g);  // input channel ci's l row, then its h row
  for (int64_t ci = 0; ci < in_g; ++ci) {
    offsets[ci] = 2 * ci * ld;
    offsets[in_g + ci] = (2 * ci + 1) * ld;
  }
  const auto weight = [&](int64_t grp, int64_t r, int64_t ci) {
    const int64_t w = (grp * ncol + r) * in_g + ci;
    return std::pair<T, T>(c.o.w_lo[w], c.o.w_hi[w]);
  };
  const ForwardWeights<T> weights(c.nonneg, c.groups, ncol, in_g, mr, in_g, offsets, weight);
  const int64_t out_channels = g.big_per_group() * c.groups, plane = g.big_pixels();
  for_each_chunk(chunks, 2 * (in_g + tiles * mr) * ld * sizeof(T),
                 [&](const Chunk& chunk, void* buffer) {
    T* xs = static_cast<T*>(buffer);
    T* out = xs + 2 * in_g * ld;
    const ChunkLayout layout = gathered_layout<T>(g, chunk, ld);
    for (int64_t grp = 0; grp < c.groups; ++grp) {
      pixel_rows(c, c.o.x_lo, c.o.x_hi, c.channels, grp * in_g, in_g, chunk, ld, xs);
      weights.tiles_into(grp, tiles, xs, out, ld, layout.width);
      for (int64_t r = 0; r < ncol; ++r) {
        const int64_t co = grp * g.big_per_group() + r / taps;
        const int64_t i = r % taps / g.kernel_w, j = r % g.kernel_w;
        const Axis y{g.stride_h, i * g.dil_h - g.pad_h};
        const Axis x{g.stride_w, j * g.dil_w - g.pad_w};
        for (int bound = 0; bound < 2; ++bound) {
          for (int64_t n = 0; n < chunk.images; ++n) {
            scatter_add_plane(out + (2 * r + bound) * ld + n * chunk.pixels, g.big_h, g.big_w,
                              g.small_w, chunk.first_pixel, chunk.first_pixel + chunk.pixels, y, x,
                              (bound == 0 ? c.o.out_lo : c.o.out_hi) +
                                  ((chunk.first_image + n) * out_channels + co) * plane);
          }
        }
      }
    }
  });
}

template void conv2d_forward_pixels<float>(const KernelCall<float>&);
template void conv2d_forward_pixels<double>(const KernelCall<double>&);
template void conv_transpose2d_forward_pixels<float>(const KernelCall<float>&);
template void conv_transpose2d_forward_pixels<double>(const KernelCall<double>&);

}  // namespace inn::cpu::conv
