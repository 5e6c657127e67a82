// The pixel-lane weight gradients of the CPU interval convolutions (see conv_pixel_lanes.h for
// the scheme): dot products over each chunk's pixels of the output gradient's rows against the
// input's rows, summed per thread and added up at the end.
#include <ATen/ops/zeros.h>

#include <vector>

#include "conv_pixel_lanes.h"

namespace inn::cpu::conv {
namespace {

// Weight gradients, non-negative mode: da = sum gl * (a >= 0 ? l : h), db = sum gh * (b >= 0 ?
// h : l) over batch and pixels, as dot_tiles of gradient rows (rows, 2 per row r) against input
// rows (taps, 2 per tap k) on gathered chunks; general mode: general_dot_tiles (the weights
// instead of their signs: the candidate choice per lane, or known candidates where weights and
// input lanes are sign-routed); fill(chunk, grp, inputs, grads) fills a chunk's rows (zero
// padded to its width). weight(grp, r, k) indexes w and dw. Each thread sums its
// chunks into its own partial gradient (rows and taps padded to whole tiles), added up at the
// end. (A direct layout measured slower here: dot tiles stream whole rows, mostly unaligned.)
template <typename T, typename Weight, typename Fill>
void weight_gradient(const KernelCall<T>& c, int64_t rows, int64_t taps, int64_t x_elements,
                     int64_t g_elements, Weight weight, Fill fill) {
  const int64_t tile = pixel_tile<T>();
  const auto [mr, nk] = dot_tile_shape<T>();
  const int64_t r_tiles = ceil_div(rows, mr), k_tiles = ceil_div(taps, nk);
  const int64_t r_pad = r_tiles * mr, k_pad = k_tiles * nk, per_group = 2 * r_pad * k_pad;
  // Per weight, its signs (non-negative mode) or its bounds (general mode); padding: zeros.
  std::vector<uint16_t> signs(c.nonneg ? c.groups * per_group : 0, 0xFFFF);
  std::vector<T> bounds(c.nonneg ? 0 : c.groups * per_group, T(0));
  for (int64_t grp = 0; grp < c.groups; ++grp) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t w = weight(grp, r, k), at = grp * per_group + 2 * r * k_pad + k;
        if (c.nonneg) {
          signs[at] = uint16_t(-int(c.o.w_lo[w] >= T(0)));
          signs[at + k_pad] = uint16_t(-int(c.o.w_hi[w] >= T(0)));
        } else {
          bounds[at] = c.o.w_lo[w];
          bounds[at + k_pad] = c.o.w_hi[w];
        }
      }
    }
  }
  const std::vector<Chunk> chunks = pixel_chunks(c.batch, c.g.small_pixels(), c.g.small_w,
                                                 2 * int64_t(sizeof(T)) * (taps + r_pad));
  const int64_t ld = chunk_ld(chunks, tile);
  std::vector<int64_t> offsets(2 * k_pad, 0);  // tap k's l row, then its h row (padding: tap 0)
  for (int64_t k = 0; k < taps; ++k) {
    offsets[k] = 2 * k * ld;
    offsets[k_pad + k] = (2 * k + 1) * ld;
  }
  const bool finite = !c.nonneg &&
                      all_finite(bounds.data(), bounds.data(), int64_t(bounds.size())) &&
                      all_finite(c.o.x_lo, c.o.x_hi, x_elements) &&
                      all_finite(c.o.g_lo, c.o.g_hi, g_elements);
  const int64_t threads = at::get_num_threads();
  at::Tensor partial = at::zeros({threads, c.groups * per_group}, c.options);
  T* parts = partial.mutable_data_ptr<T>();
  for_each_chunk(chunks, 2 * (taps + r_pad) * ld * sizeof(T),
                 [&](const Chunk& chunk, void* buffer) {
    T* inputs = static_cast<T*>(buffer);
    T* grads = inputs + 2 * taps * ld;
    const int64_t width = round_up(chunk.rows(), tile);
    T* part = parts + at::get_thread_num() * c.groups * per_group;
    std::fill(grads + 2 * rows * ld, grads + 2 * r_pad * ld, T(0));
    for (int64_t grp = 0; grp < c.groups; ++grp) {
      fill(chunk, grp, ld, inputs, grads);
      if (c.nonneg) {
        dot_tiles<T>(r_tiles, k_tiles, grads, offsets.data(), offsets.data() + k_pad,
                     &signs[grp * per_group], inputs, ld, width, part + grp * per_group);
      } else {
        general_dot_tiles<T>(r_tiles, k_tiles, grads, offsets.data(), offsets.data() + k_pad,
                             &bounds[grp * per_group], inputs, ld, width, part + grp * per_group,
                             finite);
      }
    }
  });
  for (int64_t grp = 0; grp < c.groups; ++grp) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t at = grp * per_group + 2 * r * k_pad + k;
        T da = T(0), db = T(0);
        for (int64_t t = 0; t < threads; ++t) {
          da += parts[t * c.groups * per_group + at];
          db += parts[t * c.groups * per_group + at + k_pad];
        }
        c.o.out_lo[weight(grp, r, k)] += da;
        c.o.out_hi[weight(grp, r, k)] += db;
      }
    }
  }
}

}  // namespace

// conv2d: rows = output channels (the gradient's pixel rows), taps = (input channel, i, j)
// (the input's windows).
template <typename T>
void conv2d_backward_weight_pixels(const KernelCall<T>& c) {
  const int64_t kg = c.g.big_depth(), out_g = c.group_channels();
  weight_gradient(
      c, out_g, kg, c.batch * c.g.big_per_group() * c.groups * c.g.big_pixels(),
      c.batch * c.channels * c.g.small_pixels(),
      [&](int64_t grp, int64_t co, int64_t k) { return (grp * out_g + co) * kg + k; },
      [&](const Chunk& chunk, int64_t grp, int64_t ld, T* inputs, T* grads) {
        windows(c, c.o.x_lo, c.o.x_hi, grp, chunk, ld, inputs);
        pixel_rows(c, c.o.g_lo, c.o.g_hi, c.channels, grp * out_g, out_g, chunk, ld, grads);
      });
}

// conv_transpose2d (weight transposed, see transpose_weight): rows = (output channel, i, j) (the
// gradient's windows), taps = input channels (the input's pixel rows).
template <typename T>
void conv_transpose2d_backward_weight_pixels(const KernelCall<T>& c) {
  const int64_t ncol = c.g.big_depth(), in_g = c.group_channels();
  weight_gradient(
      c, ncol, in_g, c.batch * c.channels * c.g.small_pixels(),
      c.batch * c.g.big_per_group() * c.groups * c.g.big_pixels(),
      [&](int64_t grp, int64_t r, int64_t ci) { return (grp * ncol + r) * in_g + ci; },
      [&](const Chunk& chunk, int64_t grp, int64_t ld, T* inputs, T* grads) {
        pixel_rows(c, c.o.x_lo, c.o.x_hi, c.channels, grp * in_g, in_g, chunk, ld, inputs);
        windows(c, c.o.g_lo, c.o.g_hi, grp, chunk, ld, grads);
      });
}

template void conv2d_backward_weight_pixels<float>(const KernelCall<float>&);
template void conv2d_backward_weight_pixels<double>(const KernelCall<double>&);
template void conv_transpose2d_backward_weight_pixels<float>(const KernelCall<float>&);
template void conv_transpose2d_backward_weight_pixels<double>(const KernelCall<double>&);

}  // namespace inn::cpu::conv
