// The pixel-lane input gradients of the CPU interval convolutions (see conv_pixel_lanes.h for
// the scheme): conv2d's in its direct form (stride 1, padding within the kernel's reach; the GEMM
// family computes the others) and conv_transpose2d's. Both are one InputGradient: result channels
// over the output gradient's taps, read from its padded planes (conv2d) or its windows
// (conv_transpose2d).
#include <optional>
#include <vector>

#include "conv_pixel_lanes.h"

namespace inn::cpu::conv {
namespace {

// One term of an output row: coef * source[offset + position]; `key` orders the terms and groups
// them into blocks (the tap index).
template <typename T>
struct Term {
  int64_t key, offset;
  T coef;
};

// Term lists (for combine_rows) of one group, by block of keys: row r's terms of keys in block b
// are coef/offset[bounds[b * rows + r], bounds[(b + 1) * rows + r]). Blocks keep a pixel tile of
// their sources in L1 while every output row reads it.
template <typename T>
struct TermLists {
  std::vector<T> coef;
  std::vector<int64_t> offset, bounds;
  int64_t rows = 0, blocks = 0;

  // terms[r]: output row r's terms, keys ascending; keys_per_block: keys of one block.
  TermLists(const std::vector<std::vector<Term<T>>>& terms, int64_t keys,
            int64_t keys_per_block) {
    rows = int64_t(terms.size());
    blocks = std::max<int64_t>(1, ceil_div(keys, keys_per_block));
    bounds.resize((blocks + 1) * rows);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t b = 0;
      for (const Term<T>& t : terms[r]) {
        for (; b * keys_per_block <= t.key; ++b) bounds[b * rows + r] = int64_t(coef.size());
        coef.push_back(t.coef);
        offset.push_back(t.offset);
      }
      for (; b <= blocks; ++b) bounds[b * rows + r] = int64_t(coef.size());
    }
  }

  // out (rows x width, row length ld_out) (+)= the sums of the terms over src.
  void combine(const T* src, T* out, int64_t ld_out, int64_t width, bool accumulate) const {
    for (int64_t b = 0; b < blocks; ++b) {
      combine_rows<T>(rows, &bounds[b * rows], &bounds[(b + 1) * rows], coef.data(),
                      offset.data(), src, out, ld_out, width, accumulate || b > 0);
    }
  }
};

// Taps per block: the two bounds' rows of a block at one pixel tile fill about 32 KiB.
template <typename T>
int64_t taps_per_block() {
  return std::max<int64_t>(1, int64_t(16 << 10) / (pixel_tile<T>() * int64_t(sizeof(T))));
}

// The input gradient's direct form (stride 1, padding at most the kernel's reach), or nullopt.
std::optional<Direct> input_grad_direct(const ConvGeometry& g, int64_t tile) {
  const int64_t reach_h = g.dil_h * (g.kernel_h - 1), reach_w = g.dil_w * (g.kernel_w - 1);
  if (g.stride_h != 1 || g.stride_w != 1 || g.pad_h > reach_h || g.pad_w > reach_w) {
    return std::nullopt;
  }
  return Direct{g.small_h, g.small_w, reach_h - g.pad_h, reach_w - g.pad_w, g.big_w + reach_w,
                g.big_h, g.big_w, reach_h, reach_w, tile};
}

// An input gradient, per group: `rows` result channels ci (dx's channels grp * rows + ci of
// rows * groups) over `taps` rows s = (co, i, j) of the output gradient: with `direct` (conv2d)
// its padded planes read at the flipped kernel's shifts, else (conv_transpose2d) its windows per
// input pixel. Tap s's gl row is at src + offsets[s] and its gh row at src + offsets[taps + s] of
// a chunk's source buffer; weight (grp, ci, s) is (w_lo, w_hi)[(grp * rows + ci) * taps + s].
//
// Non-negative mode: each weight's two products go to one bound each,
//   dl += a gl [a >= 0] + b gh [b < 0],   dh += a gl [a < 0] + b gh [b >= 0].
// As select_tiles, with x = gl, y = gh and one sign (a >= 0 and b >= 0) per weight: both >= 0:
// (dl, dh) += (a gl, b gh); both < 0: (b gh, a gl); straddling (a < 0 <= b): dh += a gl, with
// dl's term off and dh's second product b gh in term lists (straddling weights are few). Weights
// with a >= 0 > b (b NaN, or an invalid a > b) would need two products in dl: then every term
// goes through term lists.
//
// General mode: general_grad_tiles, with the weights classified for the gradient
// (ClassifiedWeights) and, per chunk, the input's rows at the result rows' positions (zero rows
// for the channels that pad the last tile).
template <typename T>
struct InputGradient {
  const KernelCall<T>& c;
  std::optional<Direct> direct;
  int64_t rows, taps;
  std::vector<T> w_lo, w_hi;
  int64_t mr = select_tile_channels<T>(), tiles = ceil_div(rows, mr);
  std::vector<Chunk> chunks;
  int64_t ld = 0;
  std::vector<int64_t> offsets;

  InputGradient(const KernelCall<T>& c_, std::optional<Direct> direct_, int64_t rows_,
                int64_t taps_)
      : c(c_), direct(direct_), rows(rows_), taps(taps_), w_lo(c.groups * rows * taps),
        w_hi(c.groups * rows * taps) {
    const ConvGeometry& g = c.g;
    // per pixel: the sources, the result rows and (general mode) the input's rows
    const int64_t result_rows = 2 * (c.nonneg ? 1 : 2) * tiles * mr;
    chunks = pixel_chunks(c.batch, plane(), direct ? g.big_w : g.small_w,
                          int64_t(sizeof(T)) * (source_rows() + result_rows));
    ld = direct ? direct->ld(chunks) : chunk_ld(chunks, pixel_tile<T>());
    const int64_t kernel = g.kernel_h * g.kernel_w;
    offsets.resize(2 * taps);
    for (int64_t s = 0; s < taps; ++s) {
      if (direct) {  // channel co's padded plane, shifted to tap (i, j) of the flipped kernel
        const int64_t i = s % kernel / g.kernel_w, j = s % g.kernel_w;
        offsets[s] = 2 * (s / kernel) * ld +
                     (g.kernel_h - 1 - i) * g.dil_h * direct->padded_w +
                     (g.kernel_w - 1 - j) * g.dil_w;
      } else {
        offsets[s] = 2 * s * ld;
      }
      offsets[taps + s] = offsets[s] + ld;
    }
  }

  // w_lo, w_hi of (grp, ci, s) = the call's weight at index(grp, ci, s).
  template <typename Index>
  void load_weights(Index index) {
    for (int64_t grp = 0, at = 0; grp < c.groups; ++grp) {
      for (int64_t ci = 0; ci < rows; ++ci) {
        for (int64_t s = 0; s < taps; ++s, ++at) {
          w_lo[at] = c.o.w_lo[index(grp, ci, s)];
          w_hi[at] = c.o.w_hi[index(grp, ci, s)];
        }
      }
    }
  }

  int64_t source_rows() const { return 2 * (direct ? c.group_channels() : taps); }
  int64_t plane() const { return direct ? c.g.big_pixels() : c.g.small_pixels(); }
  int64_t weight(int64_t grp, int64_t ci, int64_t s) const { return (grp * rows + ci) * taps + s; }
  // Where weight (grp, ci, s) goes in the packed tiles (select_tiles' layout).
  int64_t packed_at(int64_t grp, int64_t ci, int64_t s) const {
    return grp * tiles * taps * 2 * mr + ((ci / mr) * taps + s) * 2 * mr + ci % mr;
  }

  // A chunk's sources, group grp; returns their layout.
  ChunkLayout fill_sources(const Chunk& chunk, int64_t grp, T* src) const {
    if (direct) {
      const int64_t out_g = c.group_channels();
      direct->fill(c.o.g_lo, c.o.g_hi, c.channels, grp * out_g, out_g, chunk, ld, src);
      return direct->layout(chunk, ld);
    }
    windows(c, c.o.g_lo, c.o.g_hi, grp, chunk, ld, src);
    return gathered_layout<T>(c.g, chunk, ld);
  }
  // The input's rows at the result's positions, group grp (direct: the same grid, unshifted).
  void fill_inputs(const Chunk& chunk, int64_t grp, T* xs) const {
    if (!direct) {
      pixel_rows(c, c.o.x_lo, c.o.x_hi, c.channels, grp * rows, rows, chunk, ld, xs);
      return;
    }
    Direct same = *direct;
    same.src_h = c.g.big_h;
    same.src_w = c.g.big_w;
    same.top = same.left = 0;
    same.fill(c.o.x_lo, c.o.x_hi, rows * c.groups, grp * rows, rows, chunk, ld, xs);
  }
  void add_result(const T* out, const ChunkLayout& layout, int64_t grp, const Chunk& chunk) const {
    add_rows(c, out, layout, rows * c.groups, grp * rows, rows, plane(), chunk);
  }

  void run() const { c.nonneg ? run_nonneg() : run_general(); }

  void run_general() const {
    const ClassifiedWeights<T> classified(
        c.groups, rows, taps, mr, offsets, true, [&](int64_t grp, int64_t ci, int64_t s) {
          return std::pair<T, T>{w_lo[weight(grp, ci, s)], w_hi[weight(grp, ci, s)]};
        });
    const int64_t x_elements = c.batch * rows * c.groups * plane();
    const bool finite = all_finite(w_lo.data(), w_hi.data(), int64_t(w_lo.size())) &&
                        all_finite(c.o.x_lo, c.o.x_hi, x_elements);
    const int64_t sources = source_rows();
    for_each_chunk(chunks, (sources + 4 * tiles * mr) * ld * sizeof(T),
                   [&](const Chunk& chunk, void* buffer) {
      T* src = static_cast<T*>(buffer);
      T* xs = src + sources * ld;
      T* out = xs + 2 * tiles * mr * ld;
      std::fill(xs + 2 * rows * ld, out, T(0));
      for (int64_t grp = 0; grp < c.groups; ++grp) {
        const ChunkLayout layout = fill_sources(chunk, grp, src);
        fill_inputs(chunk, grp, xs);
        general_grad_tiles<T>(tiles, taps, classified.values_of(grp), classified.runs_of(grp),
                              classified.x_off_of(grp), classified.y_off_of(grp), src, xs, out,
                              ld, layout.width, finite);
        add_result(out, layout, grp, chunk);
      }
    });
  }

  void run_nonneg() const {
    // (The packing below selects by index, not by branches: weight signs are unpredictable.)
    int lists_only = 0;
    for (size_t w = 0; w < w_lo.size(); ++w) {
      lists_only |= int(w_lo[w] >= T(0)) & int(!(w_hi[w] >= T(0)));
    }
    const int64_t per_group = tiles * taps * 2 * mr;
    std::vector<T> packed(c.groups * per_group, T(0));
    std::vector<uint16_t> signs(c.groups * per_group, 0xFFFF), enable(c.groups * per_group / 2, 0);
    std::vector<TermLists<T>> lists;
    for (int64_t grp = 0; grp < c.groups; ++grp) {
      std::vector<std::vector<Term<T>>> terms(2 * rows);
      for (int64_t ci = 0; ci < rows; ++ci) {
        for (int64_t s = 0; s < taps; ++s) {
          const T a = w_lo[weight(grp, ci, s)], b = w_hi[weight(grp, ci, s)];
          if (lists_only) {
            terms[2 * ci + (a >= T(0) ? 0 : 1)].push_back({s, offsets[s], a});
            terms[2 * ci + (b >= T(0) ? 1 : 0)].push_back({s, offsets[taps + s], b});
            continue;
          }
          const int pa = a >= T(0), pb = b >= T(0), both = pa & pb, straddle = (1 - pa) & pb;
          const T first[3] = {b, a, T(0)}, second[2] = {a, b};
          const int64_t at = packed_at(grp, ci, s);
          packed[at] = first[both + 2 * straddle];
          packed[at + mr] = second[both];
          signs[at] = signs[at + mr] = uint16_t(-both);
          enable[grp * per_group / 2 + ((ci / mr) * taps + s) * mr + ci % mr] =
              uint16_t(straddle - 1);
          if (straddle) terms[2 * ci + 1].push_back({s, offsets[taps + s], b});
        }
      }
      lists.emplace_back(terms, taps, taps_per_block<T>());
    }
    const int64_t sources = source_rows();
    for_each_chunk(chunks, (sources + 2 * tiles * mr) * ld * sizeof(T),
                   [&](const Chunk& chunk, void* buffer) {
      T* src = static_cast<T*>(buffer);
      T* out = src + sources * ld;
      for (int64_t grp = 0; grp < c.groups; ++grp) {
        const ChunkLayout layout = fill_sources(chunk, grp, src);
        if (!lists_only) {  // gated only where some weight straddles
          select_tiles<T>(tiles, taps, &packed[grp * per_group], &signs[grp * per_group],
                          lists[grp].coef.empty() ? nullptr : &enable[grp * per_group / 2],
                          offsets.data(), offsets.data() + taps, src, out, ld, layout.width);
        }
        if (!lists[grp].coef.empty() || lists_only) {
          lists[grp].combine(src, out, ld, layout.width, !lists_only);
        }
        add_result(out, layout, grp, chunk);
      }
    });
  }
};

}  // namespace

bool conv2d_input_grad_is_direct(const ConvGeometry& g) {
  return input_grad_direct(g, 1).has_value();
}

template <typename T>
void conv2d_backward_input_pixels(const KernelCall<T>& c) {
  const ConvGeometry& g = c.g;
  const int64_t kernel = g.kernel_h * g.kernel_w, out_g = c.group_channels();
  InputGradient<T> grad(c, input_grad_direct(g, pixel_tile<T>()), g.big_per_group(),
                        out_g * kernel);
  TORCH_CHECK(grad.direct, "conv2d_backward_input_pixels: no direct form for this geometry");
  grad.load_weights([&](int64_t grp, int64_t ci, int64_t s) {
    return (grp * out_g + s / kernel) * g.big_depth() + ci * kernel + s % kernel;
  });
  grad.run();
}

// (The weight is transposed, see transpose_weight in interval_conv_cpu.cpp.)
template <typename T>
void conv_transpose2d_backward_input_pixels(const KernelCall<T>& c) {
  const int64_t ncol = c.g.big_depth(), in_g = c.group_channels();
  InputGradient<T> grad(c, std::nullopt, in_g, ncol);
  grad.load_weights(
      [&](int64_t grp, int64_t ci, int64_t s) { return (grp * ncol + s) * in_g + ci; });
  grad.run();
}

template void conv2d_backward_input_pixels<float>(const KernelCall<float>&);
template void conv2d_backward_input_pixels<double>(const KernelCall<double>&);
template void conv_transpose2d_backward_input_pixels<float>(const KernelCall<float>&);
template void conv_transpose2d_backward_input_pixels<double>(const KernelCall<double>&);

}  // namespace inn::cpu::conv
