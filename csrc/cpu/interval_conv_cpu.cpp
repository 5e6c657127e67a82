// CPU kernels of the interval convolutions (conv2d, conv_transpose2d and their input and weight
// gradients), in two families:
//  * pixel-lane kernels (see "pixel lanes" below): every forward, every gradient but the one
//    below; register tiles over output channels with vector lanes over pixels;
//  * the fused interval GEMMs (interval_gemm.h) around im2col / col2im (im2col.h): a conv2d input
//    gradient that has no direct form (stride > 1, or padding beyond the kernel's reach), and
//    the general conv2d forward with many output channels per group.
//
// GEMM kernels: a loop over chunks of column-side pixels: several whole images when images are
// small, part of one image when they are large, sized so that the buffers of a chunk stay within
// kBufferBudgetBytes whatever the batch and image size. GEMM rows are pixels; every GEMM operand
// and result is a row-major chunk buffer (unit column stride), filled by im2col (or a pixel-row
// gather) and emptied by col2im (or a pixel-row scatter): the packed GEMMs read and write such
// rows about twice as fast as strided views straight into NCHW tensors. Parallelism is inside
// each step (the GEMM over its output blocks, im2col over rows, col2im over planes or row
// blocks); chunks and groups run in turn, since at::parallel_for does not nest.
//
// conv_transpose2d is computed exactly without zero insertion: per input pixel, every term's
// bounds (C_out/groups * kh * kw contributions), added into the output (col2im) for the lower and
// upper bounds separately.
//
// Inputs of any layout (channels_last included) are made contiguous NCHW first; outputs and
// gradients are contiguous NCHW.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "../backend_registry.h"
#include "../library/library_path.h"
#include "im2col.h"
#include "interval_gemm.h"

namespace inn::cpu {
namespace {

using Pair = std::tuple<at::Tensor, at::Tensor>;

// Buffers per chunk (all of them together): large enough that a GEMM call amortises its setup,
// small enough to stay in the shared L3 cache.
constexpr int64_t kBufferBudgetBytes = int64_t(16) << 20;

// How `batch` images of `pixels` column-side pixels are cut into chunks, given the buffer bytes
// each row (pixel) of a chunk needs.
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

// The input bounds the backward-input GEMMs read, from `rows`. In nonneg mode they select by the
// weight's sign alone, so a zero stands in for the input (no im2col, no buffer).
template <typename T>
std::pair<ConstView<T>, ConstView<T>> input_bounds(bool nonneg, const RowBuffer<T>& rows) {
  static const T zero = T(0);
  if (nonneg) return {{&zero, 0, 0}, {&zero, 0, 0}};
  return {rows.const_lo(), rows.const_hi()};
}

// ----------------------------------------------------------------------------- shapes and checks

// 0 when the dilated kernel does not fit (C++ division truncates, so test the sign first).
int64_t conv_out_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding,
                      int64_t dilation) {
  const int64_t span = size + 2 * padding - dilation * (kernel - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

int64_t conv_transpose_out_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding,
                                int64_t output_padding, int64_t dilation) {
  return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1;
}

void check_operands(const char* op, const at::Tensor& x_lo, const at::Tensor& x_hi,
                    const at::Tensor& w_lo, const at::Tensor& w_hi, at::IntArrayRef stride,
                    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(x_lo.dim() == 4, op, ": x_lo must have 4 dims (N, C, H, W), got ", x_lo.sizes());
  TORCH_CHECK(w_lo.dim() == 4, op, ": w_lo must have 4 dims, got ", w_lo.sizes());
  TORCH_CHECK(x_hi.sizes() == x_lo.sizes(), op, ": x_hi has shape ", x_hi.sizes(),
              ", expected ", x_lo.sizes(), " like x_lo");
  TORCH_CHECK(w_hi.sizes() == w_lo.sizes(), op, ": w_hi has shape ", w_hi.sizes(),
              ", expected ", w_lo.sizes(), " like w_lo");
  for (const at::Tensor* t : {&x_hi, &w_lo, &w_hi}) {
    TORCH_CHECK(t->scalar_type() == x_lo.scalar_type(), op, ": mixed dtypes ", t->scalar_type(),
                " and ", x_lo.scalar_type());
  }
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, op,
              ": stride, padding and dilation must have 2 entries");
  for (int d = 0; d < 2; ++d) {
    TORCH_CHECK(stride[d] >= 1, op, ": stride must be >= 1, got ", stride);
    TORCH_CHECK(dilation[d] >= 1, op, ": dilation must be >= 1, got ", dilation);
    TORCH_CHECK(padding[d] >= 0, op, ": padding must be >= 0, got ", padding);
  }
  TORCH_CHECK(groups >= 1, op, ": groups must be >= 1, got ", groups);
}

// conv2d: image side = x (channels of one group), column side = y.
ConvGeometry conv2d_geometry(const at::Tensor& x_lo, const at::Tensor& x_hi,
                             const at::Tensor& w_lo, const at::Tensor& w_hi,
                             at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation, int64_t groups) {
  const char* op = "interval_conv2d";
  check_operands(op, x_lo, x_hi, w_lo, w_hi, stride, padding, dilation, groups);
  TORCH_CHECK(x_lo.size(1) == w_lo.size(1) * groups, op, ": x_lo has ", x_lo.size(1),
              " channels, expected ", w_lo.size(1) * groups, " (weight in-channels x groups)");
  TORCH_CHECK(w_lo.size(0) % groups == 0, op, ": ", w_lo.size(0),
              " output channels are not divisible by groups ", groups);
  ConvGeometry g{w_lo.size(1), x_lo.size(2), x_lo.size(3), w_lo.size(2), w_lo.size(3),
                 stride[0],    stride[1],    padding[0],   padding[1],   dilation[0],
                 dilation[1],  0,            0};
  g.out_h = conv_out_size(g.height, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h);
  g.out_w = conv_out_size(g.width, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
  TORCH_CHECK(g.out_h >= 1 && g.out_w >= 1, op, ": input ", x_lo.sizes().slice(2),
              " padded by ", padding, " is smaller than the dilated kernel");
  return g;
}

// conv_transpose2d: image side = y (output channels of one group), column side = x.
ConvGeometry conv_transpose2d_geometry(const at::Tensor& x_lo, const at::Tensor& x_hi,
                                       const at::Tensor& w_lo, const at::Tensor& w_hi,
                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef output_padding, int64_t groups,
                                       at::IntArrayRef dilation) {
  const char* op = "interval_conv_transpose2d";
  check_operands(op, x_lo, x_hi, w_lo, w_hi, stride, padding, dilation, groups);
  TORCH_CHECK(output_padding.size() == 2, op, ": output_padding must have 2 entries");
  TORCH_CHECK(x_lo.size(1) == w_lo.size(0) && x_lo.size(1) % groups == 0, op, ": x_lo has ",
              x_lo.size(1), " channels, expected ", w_lo.size(0),
              " (w_lo.shape[0]), divisible by groups ", groups);
  for (int d = 0; d < 2; ++d) {
    TORCH_CHECK(output_padding[d] >= 0 &&
                    output_padding[d] < std::max(stride[d], dilation[d]),
                op, ": output_padding ", output_padding,
                " must be >= 0 and smaller than stride or dilation in each dim");
  }
  ConvGeometry g{w_lo.size(1), 0,         0,         w_lo.size(2), w_lo.size(3), stride[0],
                 stride[1],    padding[0], padding[1], dilation[0], dilation[1], x_lo.size(2),
                 x_lo.size(3)};
  g.height = conv_transpose_out_size(g.out_h, g.kernel_h, g.stride_h, g.pad_h, output_padding[0],
                                     g.dilation_h);
  g.width = conv_transpose_out_size(g.out_w, g.kernel_w, g.stride_w, g.pad_w, output_padding[1],
                                    g.dilation_w);
  TORCH_CHECK(g.height >= 1 && g.width >= 1, op, ": padding ", padding,
              " leaves no output pixels for input ", x_lo.sizes().slice(2));
  return g;
}

void check_grad(const char* op, const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                at::IntArrayRef expected) {
  TORCH_CHECK(grad_lo.sizes() == expected && grad_hi.sizes() == expected, op,
              ": grad_lo and grad_hi must have the output shape ", expected, ", got ",
              grad_lo.sizes(), " and ", grad_hi.sizes());
}

at::Tensor nchw(const at::Tensor& t) { return t.contiguous(); }

// Output (or gradient) pair initialised to the bias / zeros, into which the kernels add.
Pair init_output(at::IntArrayRef shape, const at::TensorOptions& options,
                 const std::optional<at::Tensor>& b_lo, const std::optional<at::Tensor>& b_hi) {
  if (!b_lo.has_value()) return {at::zeros(shape, options), at::zeros(shape, options)};
  TORCH_CHECK(b_hi.has_value() && b_lo->numel() == shape[1] && b_hi->numel() == shape[1],
              "bias must be given as both b_lo and b_hi with ", shape[1], " entries");
  at::Tensor y_lo = at::empty(shape, options), y_hi = at::empty(shape, options);
  y_lo.copy_(b_lo->reshape({1, shape[1], 1, 1}).expand(shape));
  y_hi.copy_(b_hi->reshape({1, shape[1], 1, 1}).expand(shape));
  return {y_lo, y_hi};
}

// A gradient pair shaped like `like`, zero-initialised, into which the kernels add.
Pair zeros_pair(const at::Tensor& like) {
  return {at::zeros(like.sizes(), like.options()), at::zeros(like.sizes(), like.options())};
}

// Pointers of the contiguous operands of one kernel call. conv_transpose2d kernels get the weight
// (and write its gradient) transposed, see transpose_weight.
template <typename T>
struct Operands {
  const T *x_lo, *x_hi, *w_lo, *w_hi, *g_lo, *g_hi;  // g: the output gradient, if any
  T *out_lo, *out_hi;                                // y, dx or dw
};

// One kernel call. The image side has g.channels channels per group, the column side `channels`
// channels in all (y's for conv2d, x's for conv_transpose2d). The methods move one group's part
// of an operand between its NCHW tensor and a chunk buffer, and cut out its block of the weight.
template <typename T>
struct KernelCall {
  ConvGeometry g;
  int64_t batch, groups, channels;
  Operands<T> o;
  bool nonneg;
  at::TensorOptions options;  // of the chunk buffers

  int64_t group_channels() const { return channels / groups; }  // column side

  ChunkPlan plan(int64_t bytes_per_row) const {
    return ChunkPlan(batch, g.out_pixels(), bytes_per_row);
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
    const auto [pl, ph] = planes(lo, hi, g.channels * groups, grp * g.channels, g.image_pixels());
    im2col(g, chunk, pl, ph, cols.lo, cols.hi);
  }
  // The result's image side, group grp, += columns.
  void col2im_add_group(const RowBuffer<T>& cols, int64_t grp, const Chunk& chunk) const {
    const auto [pl, ph] =
        planes(o.out_lo, o.out_hi, g.channels * groups, grp * g.channels, g.image_pixels());
    col2im_add(g, chunk, cols.lo, cols.hi, pl, ph);
  }
  // Pixel rows of the column-side pair (lo, hi), group grp (an identity im2col).
  void gather_group(const T* lo, const T* hi, int64_t grp, const Chunk& chunk,
                    RowBuffer<T>& rows) const {
    const int64_t count = group_channels();
    const auto [pl, ph] = planes(lo, hi, channels, grp * count, g.out_pixels());
    im2col(ConvGeometry::identity(count, g.out_h, g.out_w), chunk, pl, ph, rows.lo, rows.hi);
  }
  // The result's column side, group grp, += pixel rows (an identity col2im).
  void scatter_add_group(const RowBuffer<T>& rows, int64_t grp, const Chunk& chunk) const {
    const int64_t count = group_channels();
    const auto [pl, ph] = planes(o.out_lo, o.out_hi, channels, grp * count, g.out_pixels());
    col2im_add(ConvGeometry::identity(count, g.out_h, g.out_w), chunk, rows.lo, rows.hi, pl, ph);
  }

  // Group grp's (rows x cols) row-major block of the weight.
  std::pair<ConstView<T>, ConstView<T>> weight(int64_t grp, int64_t rows, int64_t cols) const {
    const int64_t offset = grp * rows * cols;
    return {{o.w_lo + offset, cols, 1}, {o.w_hi + offset, cols, 1}};
  }
};

// --------------------------------------------------------------------------------- conv2d kernels
// Per group: x columns (rows x Kg, Kg = C_in/groups * kh * kw), weight (C_out/groups x Kg),
// y pixel rows (rows x C_out/groups).

template <typename T>
void conv2d_forward_kernel(const KernelCall<T>& c) {
  const int64_t kg = c.g.column_rows(), out_g = c.group_channels();
  const ChunkPlan plan = c.plan(2 * int64_t(sizeof(T)) * (kg + out_g));
  RowBuffer<T> cols = c.buffer(plan, kg), ys = c.buffer(plan, out_g);
  c.for_each_group(plan, [&](const Chunk& chunk, int64_t grp) {
    c.im2col_group(c.o.x_lo, c.o.x_hi, grp, chunk, cols);
    const auto [w_lo, w_hi] = c.weight(grp, out_g, kg);
    interval_gemm_forward<T>(chunk.rows(), out_g, kg, cols.const_lo(), cols.const_hi(), w_lo,
                             w_hi, ys.view_lo(), ys.view_hi(), c.nonneg, false);
    c.scatter_add_group(ys, grp, chunk);
  });
}

template <typename T>
void conv2d_backward_input_kernel(const KernelCall<T>& c) {
  const int64_t kg = c.g.column_rows(), out_g = c.group_channels();
  const ChunkPlan plan = c.plan(2 * int64_t(sizeof(T)) * ((c.nonneg ? 1 : 2) * kg + out_g));
  RowBuffer<T> grads = c.buffer(plan, out_g), cols = c.buffer(plan, kg, !c.nonneg),
               dcols = c.buffer(plan, kg);
  c.for_each_group(plan, [&](const Chunk& chunk, int64_t grp) {
    c.gather_group(c.o.g_lo, c.o.g_hi, grp, chunk, grads);
    if (!c.nonneg) c.im2col_group(c.o.x_lo, c.o.x_hi, grp, chunk, cols);
    const auto [x_lo, x_hi] = input_bounds(c.nonneg, cols);
    const auto [w_lo, w_hi] = c.weight(grp, out_g, kg);
    interval_gemm_backward_input<T>(chunk.rows(), out_g, kg, grads.const_lo(), grads.const_hi(),
                                    x_lo, x_hi, w_lo, w_hi, dcols.view_lo(), dcols.view_hi(),
                                    c.nonneg, false);
    c.col2im_add_group(dcols, grp, chunk);
  });
}

// ------------------------------------------------------------------------------- pixel lanes
// Vector lanes over pixels, weights broadcast as scalars: the few-channel layers (8..64 channels,
// large images) fill every lane, where the GEMMs above, with lanes over channels, waste most of
// them and copy every element twice (im2col, packing). With x_lo >= 0 each term is a weight bound
// times ONE input row chosen by the weight's sign, a scalar: the kernels (interval_gemm.h) take
// it as a precomputed sign word per weight, and a register tile of several output channels x a
// few pixel vectors shares each loaded input vector between its channels (a blend picks l or h).
//  * forward (select_tiles; general mode general_tiles): output channels x input taps;
//  * input gradient (select_tiles with gates, rare straddling weights in term lists for
//    combine_rows; general mode general_grad_tiles, which also reads the input at the result's
//    pixels): input channels x output-gradient taps of the flipped kernel;
//  * weight gradient (dot_tiles; general mode general_dot_tiles): dot products over the chunk's
//    pixels, per thread partials.
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

// Chunk buffer bytes at most (half the L2 cache; measured flat from 256 KiB to 1 MiB), and the
// least pixels of a chunk (amortises the horizontal sums of the weight gradient).
constexpr int64_t kPixelBudgetBytes = int64_t(512) << 10;
constexpr int64_t kMinChunkPixels = 256;

// Output channels per group from which the general-mode conv2d forward runs on the GEMM kernel.
constexpr int64_t kGemmGeneralChannels = 64;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The row stride of a chunk buffer: the longest chunk rounded up to whole pixel tiles.
int64_t chunk_ld(const std::vector<Chunk>& chunks, int64_t tile) {
  int64_t ld = 0;
  for (const Chunk& chunk : chunks) ld = std::max(ld, round_up(chunk.rows(), tile));
  return ld;
}

// Packs one weight interval [a, b] for the pixel-lane tiles at `at` (a) and `at + mr` (b), with
// the all-ones / zero sign words the nonneg kernels select input rows by.
template <typename T>
void pack_weight(T* packed, uint16_t* signs, int64_t at, int64_t mr, T a, T b) {
  packed[at] = a;
  packed[at + mr] = b;
  signs[at] = uint16_t(-int(a >= T(0)));
  signs[at + mr] = uint16_t(-int(b >= T(0)));
}

// The batch's `pixels` per image, grid_w per row, in chunks: whole images when images are small,
// whole rows of one image otherwise (unless whole_images); at least two chunks per thread where
// that leaves kMinChunkPixels per chunk.
std::vector<Chunk> pixel_chunks(int64_t batch, int64_t pixels, int64_t grid_w,
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

// conv2d's direct form (stride 1), or nullopt.
std::optional<Direct> forward_direct(const ConvGeometry& g, int64_t tile) {
  if (g.stride_h != 1 || g.stride_w != 1) return std::nullopt;
  const int64_t reach_h = g.dilation_h * (g.kernel_h - 1), reach_w = g.dilation_w * (g.kernel_w - 1);
  return Direct{g.height, g.width, g.pad_h, g.pad_w, g.width + 2 * g.pad_w, g.out_h,
                g.out_w,  reach_h, reach_w, tile};
}

// The input gradient's direct form (stride 1, padding at most the kernel's reach), or nullopt.
std::optional<Direct> input_grad_direct(const ConvGeometry& g, int64_t tile) {
  const int64_t reach_h = g.dilation_h * (g.kernel_h - 1), reach_w = g.dilation_w * (g.kernel_w - 1);
  if (g.stride_h != 1 || g.stride_w != 1 || g.pad_h > reach_h || g.pad_w > reach_w) {
    return std::nullopt;
  }
  return Direct{g.out_h, g.out_w, reach_h - g.pad_h, reach_w - g.pad_w, g.width + reach_w,
                g.height, g.width, reach_h, reach_w, tile};
}

// Gathered rows: position = chunk pixel index (pixels of the column side: conv2d's output,
// conv_transpose2d's input).
template <typename T>
ChunkLayout gathered_layout(const ConvGeometry& g, const Chunk& c, int64_t ld) {
  return {{g.out_w, c.pixels, g.out_w, c.first_pixel}, round_up(c.rows(), pixel_tile<T>()), ld};
}

// rows[(2 * k + bound) * ld] = the image-side pair (lo, hi) (conv2d's input, conv_transpose2d's
// output gradient) at tap k = (channel, i, j) of every column-side pixel of the chunk (transposed
// im2col), zero padded.
template <typename T>
void windows(const KernelCall<T>& c, const T* lo, const T* hi, int64_t grp, const Chunk& chunk,
             int64_t ld, T* rows) {
  const ConvGeometry& g = c.g;
  const int64_t plane = g.image_pixels(), in_channels = g.channels * c.groups;
  for (int64_t ch = 0; ch < g.channels; ++ch) {
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t k = (ch * g.kernel_h + i) * g.kernel_w + j;
        const Axis y{g.stride_h, i * g.dilation_h - g.pad_h};
        const Axis x{g.stride_w, j * g.dilation_w - g.pad_w};
        for (int bound = 0; bound < 2; ++bound) {
          const T* src = bound == 0 ? lo : hi;
          T* dst = rows + (2 * k + bound) * ld;
          for (int64_t n = 0; n < chunk.images; ++n) {
            gather_plane(
                src + ((chunk.first_image + n) * in_channels + grp * g.channels + ch) * plane,
                g.height, g.width, g.out_w, chunk.first_pixel, chunk.first_pixel + chunk.pixels,
                y, x, dst + n * chunk.pixels);
          }
          std::fill(dst + chunk.rows(), dst + ld, T(0));
        }
      }
    }
  }
}

// For channels first + ch of an NCHW pair (lo, hi) with `channels` channels of `plane` pixels
// and chunk rows[(2 * ch + bound) * ld]: move(image pixels, row positions, run) for the runs of
// the chunk's pixels that are contiguous in both.
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
          move(image + p, rows + (2 * ch + bound) * layout.ld + layout.at(n, p), run);
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
               [](T* image, const T* row, int64_t run) {
                 for (int64_t q = 0; q < run; ++q) image[q] += row[q];
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

// The group's weight pair at (out channel co, tap k) of a (C_out, kg) weight.
template <typename T>
std::pair<T, T> weight_at(const KernelCall<T>& c, int64_t grp, int64_t co, int64_t k) {
  const int64_t at = (grp * c.group_channels() + co) * c.g.column_rows() + k;
  return {c.o.w_lo[at], c.o.w_hi[at]};
}

// The rows of tap k = (channel, i, j) of the input (bound 0: lo, 1: hi), [bound * kg + k], in a
// chunk's source buffer: gathered rows, or shifted reads of the padded planes (direct).
std::vector<int64_t> tap_offsets(const ConvGeometry& g, const std::optional<Direct>& direct,
                                 int64_t ld) {
  const int64_t kg = g.column_rows(), taps = g.kernel_h * g.kernel_w;
  std::vector<int64_t> offsets(2 * kg);
  for (int64_t k = 0; k < kg; ++k) {
    const int64_t i = k % taps / g.kernel_w, j = k % g.kernel_w;
    for (int bound = 0; bound < 2; ++bound) {
      offsets[bound * kg + k] =
          direct ? (2 * (k / taps) + bound) * ld + i * g.dilation_h * direct->padded_w +
                       j * g.dilation_w
                 : (2 * k + bound) * ld;
    }
  }
  return offsets;
}

// conv2d y: lo = sum_k a * (a >= 0 ? l : h), hi = sum_k b * (b >= 0 ? h : l) (general mode:
// the exact product, general_tiles), in tiles of output channels over the chunk's input rows.
template <typename T>
void conv2d_forward_pixels(const KernelCall<T>& c) {
  const ConvGeometry& g = c.g;
  const int64_t kg = g.column_rows(), out_g = c.group_channels();
  const int64_t tile = pixel_tile<T>(), mr = select_tile_channels<T>();
  const int64_t tiles = ceil_div(out_g, mr);
  const std::optional<Direct> direct = forward_direct(g, tile);
  const int64_t source_rows = 2 * (direct ? g.channels : kg);
  const std::vector<Chunk> chunks =
      pixel_chunks(c.batch, g.out_pixels(), g.out_w,
                   2 * int64_t(sizeof(T)) * (tiles * mr + (direct ? g.channels : kg)));
  const int64_t ld = direct ? direct->ld(chunks) : chunk_ld(chunks, tile);
  const std::vector<int64_t> offsets = tap_offsets(g, direct, ld);
  // Weights and signs per group, tile and tap: [a x mr, b x mr]; channels past out_g are zero.
  const int64_t per_group = tiles * kg * 2 * mr;
  std::vector<T> packed(c.groups * per_group, T(0));
  std::vector<uint16_t> signs(c.groups * per_group, 0xFFFF);
  for (int64_t grp = 0; grp < c.groups; ++grp) {
    for (int64_t co = 0; co < out_g; ++co) {
      for (int64_t k = 0; k < kg; ++k) {
        const auto [a, b] = weight_at(c, grp, co, k);
        const int64_t at = grp * per_group + ((co / mr) * kg + k) * 2 * mr + co % mr;
        pack_weight(packed.data(), signs.data(), at, mr, a, b);
      }
    }
  }
  for_each_chunk(chunks, (source_rows + 2 * tiles * mr) * ld * sizeof(T),
                 [&](const Chunk& chunk, void* buffer) {
    T* src = static_cast<T*>(buffer);
    T* out = src + source_rows * ld;
    const ChunkLayout layout =
        direct ? direct->layout(chunk, ld) : gathered_layout<T>(g, chunk, ld);
    for (int64_t grp = 0; grp < c.groups; ++grp) {
      if (direct) {
        direct->fill(c.o.x_lo, c.o.x_hi, g.channels * c.groups, grp * g.channels, g.channels,
                     chunk, ld, src);
      } else {
        windows(c, c.o.x_lo, c.o.x_hi, grp, chunk, ld, src);
      }
      if (c.nonneg) {
        select_tiles<T>(tiles, kg, &packed[grp * per_group], &signs[grp * per_group], nullptr,
                        offsets.data(), offsets.data() + kg, src, out, ld, layout.width);
      } else {
        general_tiles<T>(tiles, kg, &packed[grp * per_group], offsets.data(),
                         offsets.data() + kg, src, out, ld, layout.width);
      }
      add_rows(c, out, layout, c.channels, grp * out_g, out_g, g.out_pixels(), chunk);
    }
  });
}

// Input gradients. Non-negative mode: each weight's two products go to one bound each,
//   dl += a gl [a >= 0] + b gh [b < 0],   dh += a gl [a < 0] + b gh [b >= 0],
// for `rows` input channels ci over `taps` gradient rows s (their gl row at src + offsets[s], gh
// at src + offsets[taps + s]). As select_tiles, with x = gl, y = gh and one sign (a >= 0 and
// b >= 0) per weight: both >= 0: (dl, dh) += (a gl, b gh); both < 0: (b gh, a gl); straddling
// (a < 0 <= b): dh += a gl, with dl's term off and dh's second product b gh in term lists
// (straddling weights are few). Weights with a >= 0 > b (b NaN, or an invalid a > b) would need
// two products in dl: then every term goes through term lists. weight(grp, ci, s) indexes w;
// fill(chunk, grp, ld, src) fills a chunk's sources and returns its layout; the result rows are
// added into dx (the pair out) at channels grp * rows + ci of `channels`, planes of `plane`.
//
// General mode: general_grad_tiles, with the weights packed as for select_tiles and, per chunk,
// the input's rows at the result rows' positions (inputs(chunk, grp, ld, rows), zero rows for
// the channels that pad the last tile).
template <typename T, typename Weight, typename Fill, typename Inputs>
void input_gradient(const KernelCall<T>& c, int64_t rows, int64_t taps,
                    const std::vector<Chunk>& chunks, int64_t ld, int64_t source_rows,
                    const std::vector<int64_t>& offsets, Weight weight, Fill fill, Inputs inputs,
                    int64_t channels, int64_t plane) {
  const int64_t mr = select_tile_channels<T>(), tiles = ceil_div(rows, mr);
  if (!c.nonneg) {
    const int64_t per_group = tiles * taps * 2 * mr;
    std::vector<T> packed(c.groups * per_group, T(0));
    for (int64_t grp = 0; grp < c.groups; ++grp) {
      for (int64_t ci = 0; ci < rows; ++ci) {
        for (int64_t s = 0; s < taps; ++s) {
          const int64_t at = grp * per_group + ((ci / mr) * taps + s) * 2 * mr + ci % mr;
          packed[at] = c.o.w_lo[weight(grp, ci, s)];
          packed[at + mr] = c.o.w_hi[weight(grp, ci, s)];
        }
      }
    }
    // (dx has the input's shape: c.batch images of `channels` planes.)
    const bool finite = all_finite(packed.data(), packed.data(), int64_t(packed.size())) &&
                        all_finite(c.o.x_lo, c.o.x_hi, c.batch * channels * plane);
    for_each_chunk(chunks, (source_rows + 4 * tiles * mr) * ld * sizeof(T),
                   [&](const Chunk& chunk, void* buffer) {
      T* src = static_cast<T*>(buffer);
      T* xs = src + source_rows * ld;
      T* out = xs + 2 * tiles * mr * ld;
      std::fill(xs + 2 * rows * ld, out, T(0));
      for (int64_t grp = 0; grp < c.groups; ++grp) {
        const ChunkLayout layout = fill(chunk, grp, ld, src);
        inputs(chunk, grp, ld, xs);
        general_grad_tiles<T>(tiles, taps, &packed[grp * per_group], offsets.data(),
                              offsets.data() + taps, src, xs, out, ld, layout.width, finite);
        add_rows(c, out, layout, channels, grp * rows, rows, plane, chunk);
      }
    });
    return;
  }
  // (The packing below selects by index, not by branches: weight signs are unpredictable.)
  int lists_only = 0;
  for (int64_t grp = 0; grp < c.groups; ++grp) {
    for (int64_t ci = 0; ci < rows; ++ci) {
      for (int64_t s = 0; s < taps; ++s) {
        const int64_t w = weight(grp, ci, s);
        lists_only |= int(c.o.w_lo[w] >= T(0)) & int(!(c.o.w_hi[w] >= T(0)));
      }
    }
  }
  const int64_t per_group = tiles * taps * 2 * mr;
  std::vector<T> packed(c.groups * per_group, T(0));
  std::vector<uint16_t> signs(c.groups * per_group, 0xFFFF), enable(c.groups * per_group / 2, 0);
  std::vector<TermLists<T>> lists;
  for (int64_t grp = 0; grp < c.groups; ++grp) {
    std::vector<std::vector<Term<T>>> terms(2 * rows);
    for (int64_t ci = 0; ci < rows; ++ci) {
      for (int64_t s = 0; s < taps; ++s) {
        const T a = c.o.w_lo[weight(grp, ci, s)], b = c.o.w_hi[weight(grp, ci, s)];
        if (lists_only) {
          terms[2 * ci + (a >= T(0) ? 0 : 1)].push_back({s, offsets[s], a});
          terms[2 * ci + (b >= T(0) ? 1 : 0)].push_back({s, offsets[taps + s], b});
          continue;
        }
        const int pa = a >= T(0), pb = b >= T(0), both = pa & pb, straddle = (1 - pa) & pb;
        const T first[3] = {b, a, T(0)}, second[2] = {a, b};
        const int64_t at = grp * per_group + ((ci / mr) * taps + s) * 2 * mr + ci % mr;
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
  for_each_chunk(chunks, (source_rows + 2 * tiles * mr) * ld * sizeof(T),
                 [&](const Chunk& chunk, void* buffer) {
    T* src = static_cast<T*>(buffer);
    T* out = src + source_rows * ld;
    for (int64_t grp = 0; grp < c.groups; ++grp) {
      const ChunkLayout layout = fill(chunk, grp, ld, src);
      if (!lists_only) {  // gated only where some weight straddles
        select_tiles<T>(tiles, taps, &packed[grp * per_group], &signs[grp * per_group],
                        lists[grp].coef.empty() ? nullptr : &enable[grp * per_group / 2],
                        offsets.data(), offsets.data() + taps, src, out, ld, layout.width);
      }
      if (!lists[grp].coef.empty() || lists_only) {
        lists[grp].combine(src, out, ld, layout.width, !lists_only);
      }
      add_rows(c, out, layout, channels, grp * rows, rows, plane, chunk);
    }
  });
}

// conv2d (direct form only: the caller falls back to the GEMM kernel without one): the output
// gradient's padded planes at the flipped kernel's taps s = (co, i, j).
template <typename T>
void conv2d_backward_input_pixels(const KernelCall<T>& c, const Direct& direct) {
  const ConvGeometry& g = c.g;
  const int64_t taps = g.kernel_h * g.kernel_w, out_g = c.group_channels();
  const int64_t sources = out_g * taps, mr = select_tile_channels<T>();
  const std::vector<Chunk> chunks =
      pixel_chunks(c.batch, g.image_pixels(), g.width,
                   2 * int64_t(sizeof(T)) *
                       (out_g + (c.nonneg ? 1 : 2) * ceil_div(g.channels, mr) * mr));
  const int64_t ld = direct.ld(chunks);
  std::vector<int64_t> offsets(2 * sources);
  for (int64_t s = 0; s < sources; ++s) {
    const int64_t i = s % taps / g.kernel_w, j = s % g.kernel_w;
    const int64_t shift = (g.kernel_h - 1 - i) * g.dilation_h * direct.padded_w +
                          (g.kernel_w - 1 - j) * g.dilation_w;
    offsets[s] = 2 * (s / taps) * ld + shift;
    offsets[sources + s] = offsets[s] + ld;
  }
  // The input itself at the result's positions (general mode): the same grid, unshifted.
  Direct inputs = direct;
  inputs.src_h = g.height;
  inputs.src_w = g.width;
  inputs.top = inputs.left = 0;
  input_gradient(
      c, g.channels, sources, chunks, ld, 2 * out_g, offsets,
      [&](int64_t grp, int64_t ci, int64_t s) {
        return (grp * out_g + s / taps) * g.column_rows() + ci * taps + s % taps;
      },
      [&](const Chunk& chunk, int64_t grp, int64_t ld, T* src) {
        direct.fill(c.o.g_lo, c.o.g_hi, c.channels, grp * out_g, out_g, chunk, ld, src);
        return direct.layout(chunk, ld);
      },
      [&](const Chunk& chunk, int64_t grp, int64_t ld, T* xs) {
        inputs.fill(c.o.x_lo, c.o.x_hi, g.channels * c.groups, grp * g.channels, g.channels,
                    chunk, ld, xs);
      },
      g.channels * c.groups, g.image_pixels());
}

// conv_transpose2d (weight transposed, see transpose_weight): the output gradient's windows at
// taps s = (co, i, j), per input pixel.
template <typename T>
void conv_transpose2d_backward_input_pixels(const KernelCall<T>& c) {
  const ConvGeometry& g = c.g;
  const int64_t ncol = g.column_rows(), in_g = c.group_channels(), tile = pixel_tile<T>();
  const int64_t mr = select_tile_channels<T>();
  const std::vector<Chunk> chunks = pixel_chunks(
      c.batch, g.out_pixels(), g.out_w,
      2 * int64_t(sizeof(T)) * (ncol + (c.nonneg ? 1 : 2) * ceil_div(in_g, mr) * mr));
  const int64_t ld = chunk_ld(chunks, tile);
  std::vector<int64_t> offsets(2 * ncol);
  for (int64_t s = 0; s < ncol; ++s) {
    offsets[s] = 2 * s * ld;
    offsets[ncol + s] = (2 * s + 1) * ld;
  }
  input_gradient(
      c, in_g, ncol, chunks, ld, 2 * ncol, offsets,
      [&](int64_t grp, int64_t ci, int64_t s) { return (grp * ncol + s) * in_g + ci; },
      [&](const Chunk& chunk, int64_t grp, int64_t ld, T* src) {
        windows(c, c.o.g_lo, c.o.g_hi, grp, chunk, ld, src);
        return gathered_layout<T>(g, chunk, ld);
      },
      [&](const Chunk& chunk, int64_t grp, int64_t ld, T* xs) {
        pixel_rows(c, c.o.x_lo, c.o.x_hi, c.channels, grp * in_g, in_g, chunk, ld, xs);
      },
      c.channels, g.out_pixels());
}

// Weight gradients, non-negative mode: da = sum gl * (a >= 0 ? l : h), db = sum gh * (b >= 0 ?
// h : l) over batch and pixels, as dot_tiles of gradient rows (rows, 2 per row r) against input
// rows (taps, 2 per tap k) on gathered chunks; general mode: general_dot_tiles (the candidate
// choice per lane, so the weights instead of their signs); fill(chunk, grp, inputs, grads) fills a chunk's
// rows (zero padded to its width). weight(grp, r, k) indexes w and dw. Each thread sums its
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
  const std::vector<Chunk> chunks = pixel_chunks(c.batch, c.g.out_pixels(), c.g.out_w,
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

// The rows of the column-side pair (lo, hi) of the chunk (channels first.. first + count of an
// NCHW pair with `channels` channels), as gathered rows 2 * ch + bound, zero padded.
template <typename T>
void pixel_rows(const KernelCall<T>& c, const T* lo, const T* hi, int64_t channels, int64_t first,
                int64_t count, const Chunk& chunk, int64_t ld, T* rows) {
  const ChunkLayout layout = gathered_layout<T>(c.g, chunk, ld);
  for (int64_t q = 0; q < 2 * count; ++q) std::fill(rows + q * ld + chunk.rows(), rows + (q + 1) * ld, T(0));
  for_each_run(lo, hi, channels, first, count, c.g.out_pixels(), chunk, layout, rows,
               [](const T* image, T* row, int64_t run) { std::copy_n(image, run, row); });
}

// conv2d: rows = output channels (the gradient's pixel rows), taps = (input channel, i, j)
// (the input's windows).
template <typename T>
void conv2d_backward_weight_pixels(const KernelCall<T>& c) {
  const int64_t kg = c.g.column_rows(), out_g = c.group_channels();
  weight_gradient(
      c, out_g, kg, c.batch * c.g.channels * c.groups * c.g.image_pixels(),
      c.batch * c.channels * c.g.out_pixels(),
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
  const int64_t ncol = c.g.column_rows(), in_g = c.group_channels();
  weight_gradient(
      c, ncol, in_g, c.batch * c.channels * c.g.out_pixels(),
      c.batch * c.g.channels * c.groups * c.g.image_pixels(),
      [&](int64_t grp, int64_t r, int64_t ci) { return (grp * ncol + r) * in_g + ci; },
      [&](const Chunk& chunk, int64_t grp, int64_t ld, T* inputs, T* grads) {
        pixel_rows(c, c.o.x_lo, c.o.x_hi, c.channels, grp * in_g, in_g, chunk, ld, inputs);
        windows(c, c.o.g_lo, c.o.g_hi, grp, chunk, ld, grads);
      });
}

// conv_transpose2d y: per input pixel, contribution rows r = (co, i, j) (the transposed weight's
// rows) = sum over input channels ci of a * (a >= 0 ? l : h) (select_tiles over the input's pixel
// rows; general mode: general_tiles), each added into y at the pixel it reaches. Chunks of whole images
// where the windows of neighbouring input pixels overlap, so that no two threads add into one
// element.
template <typename T>
void conv_transpose2d_forward_pixels(const KernelCall<T>& c) {
  const ConvGeometry& g = c.g;
  const int64_t ncol = g.column_rows(), in_g = c.group_channels(), taps = g.kernel_h * g.kernel_w;
  const int64_t tile = pixel_tile<T>(), mr = select_tile_channels<T>();
  const int64_t tiles = ceil_div(ncol, mr);
  const bool overlap = g.stride_h < g.dilation_h * (g.kernel_h - 1) + 1 ||
                       g.stride_w < g.dilation_w * (g.kernel_w - 1) + 1;
  const std::vector<Chunk> chunks =
      pixel_chunks(c.batch, g.out_pixels(), g.out_w,
                   2 * int64_t(sizeof(T)) * (in_g + tiles * mr), overlap);
  const int64_t ld = chunk_ld(chunks, tile);
  std::vector<int64_t> offsets(2 * in_g);  // input channel ci's l row, then its h row
  for (int64_t ci = 0; ci < in_g; ++ci) {
    offsets[ci] = 2 * ci * ld;
    offsets[in_g + ci] = (2 * ci + 1) * ld;
  }
  const int64_t per_group = tiles * in_g * 2 * mr;
  std::vector<T> packed(c.groups * per_group, T(0));
  std::vector<uint16_t> signs(c.groups * per_group, 0xFFFF);
  for (int64_t grp = 0; grp < c.groups; ++grp) {
    for (int64_t r = 0; r < ncol; ++r) {
      for (int64_t ci = 0; ci < in_g; ++ci) {
        const int64_t w = (grp * ncol + r) * in_g + ci;
        const T a = c.o.w_lo[w], b = c.o.w_hi[w];
        const int64_t at = grp * per_group + ((r / mr) * in_g + ci) * 2 * mr + r % mr;
        pack_weight(packed.data(), signs.data(), at, mr, a, b);
      }
    }
  }
  const int64_t out_channels = g.channels * c.groups, plane = g.image_pixels();
  for_each_chunk(chunks, 2 * (in_g + tiles * mr) * ld * sizeof(T),
                 [&](const Chunk& chunk, void* buffer) {
    T* xs = static_cast<T*>(buffer);
    T* out = xs + 2 * in_g * ld;
    const ChunkLayout layout = gathered_layout<T>(g, chunk, ld);
    for (int64_t grp = 0; grp < c.groups; ++grp) {
      pixel_rows(c, c.o.x_lo, c.o.x_hi, c.channels, grp * in_g, in_g, chunk, ld, xs);
      if (c.nonneg) {
        select_tiles<T>(tiles, in_g, &packed[grp * per_group], &signs[grp * per_group], nullptr,
                        offsets.data(), offsets.data() + in_g, xs, out, ld, layout.width);
      } else {
        general_tiles<T>(tiles, in_g, &packed[grp * per_group], offsets.data(),
                         offsets.data() + in_g, xs, out, ld, layout.width);
      }
      for (int64_t r = 0; r < ncol; ++r) {
        const int64_t co = grp * g.channels + r / taps, i = r % taps / g.kernel_w, j = r % g.kernel_w;
        const Axis y{g.stride_h, i * g.dilation_h - g.pad_h};
        const Axis x{g.stride_w, j * g.dilation_w - g.pad_w};
        for (int bound = 0; bound < 2; ++bound) {
          for (int64_t n = 0; n < chunk.images; ++n) {
            scatter_add_plane(out + (2 * r + bound) * ld + n * chunk.pixels, g.height, g.width,
                              g.out_w, chunk.first_pixel, chunk.first_pixel + chunk.pixels, y, x,
                              (bound == 0 ? c.o.out_lo : c.o.out_hi) +
                                  ((chunk.first_image + n) * out_channels + co) * plane);
          }
        }
      }
    }
  });
}

// --------------------------------------------------------------------------------- the ops

// A conv_transpose2d weight (C_in, C_out/groups, kh, kw) as the row-major GEMM operand
// (groups, C_out/groups * kh * kw, C_in/groups), and back (for its gradient).
at::Tensor transpose_weight(const at::Tensor& w, int64_t groups) {
  return w.reshape({groups, w.size(0) / groups, -1}).transpose(1, 2).contiguous();
}
at::Tensor untranspose_weight(const at::Tensor& wt, at::IntArrayRef shape) {
  return wt.transpose(1, 2).reshape(shape).contiguous();
}

template <typename T>
Operands<T> operands(const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                     const at::Tensor& w_hi, const at::Tensor* g_lo, const at::Tensor* g_hi,
                     at::Tensor& out_lo, at::Tensor& out_hi) {
  return {x_lo.const_data_ptr<T>(),
          x_hi.const_data_ptr<T>(),
          w_lo.const_data_ptr<T>(),
          w_hi.const_data_ptr<T>(),
          g_lo ? g_lo->const_data_ptr<T>() : nullptr,
          g_hi ? g_hi->const_data_ptr<T>() : nullptr,
          out_lo.mutable_data_ptr<T>(),
          out_hi.mutable_data_ptr<T>()};
}

Pair conv2d_forward(const at::Tensor& x_lo_, const at::Tensor& x_hi_, const at::Tensor& w_lo_,
                    const at::Tensor& w_hi_, const std::optional<at::Tensor>& b_lo,
                    const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                    bool input_nonneg) {
  const ConvGeometry g =
      conv2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding, dilation, groups);
  if (auto r = library::forward("interval_conv2d",
                                library::Map::conv2d(stride, padding, dilation, groups), x_lo_,
                                x_hi_, w_lo_, w_hi_, b_lo, b_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_), w_lo = nchw(w_lo_), w_hi = nchw(w_hi_);
  const int64_t batch = x_lo.size(0), out_channels = w_lo.size(0);
  auto [y_lo, y_hi] = init_output({batch, out_channels, g.out_h, g.out_w}, x_lo.options(), b_lo,
                                  b_hi);
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_conv2d_cpu", [&] {
    // General mode with many output channels: the GEMM's lanes over channels are full, and its
    // weight selection by pointer beats the pixel tiles' blends (measured at 64 channels).
    const bool gemm = !input_nonneg && out_channels / groups >= kGemmGeneralChannels;
    (gemm ? conv2d_forward_kernel<scalar_t> : conv2d_forward_pixels<scalar_t>)(
        {g, batch, groups, out_channels,
         operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, nullptr, nullptr, y_lo, y_hi), input_nonneg,
         x_lo.options()});
  });
  return {y_lo, y_hi};
}

// interval_conv2d_backward_input (kWeight false) and interval_conv2d_backward_weight (true).
template <bool kWeight>
Pair conv2d_backward(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                     const at::Tensor& x_lo_, const at::Tensor& x_hi_, const at::Tensor& w_lo_,
                     const at::Tensor& w_hi_, at::IntArrayRef stride, at::IntArrayRef padding,
                     at::IntArrayRef dilation, int64_t groups, bool input_nonneg) {
  const ConvGeometry g =
      conv2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding, dilation, groups);
  const int64_t batch = x_lo_.size(0), out_channels = w_lo_.size(0);
  check_grad(kWeight ? "interval_conv2d_backward_weight" : "interval_conv2d_backward_input",
             grad_lo, grad_hi, {batch, out_channels, g.out_h, g.out_w});
  if (auto r = library::backward(
          kWeight ? "interval_conv2d_backward_weight" : "interval_conv2d_backward_input",
          library::Map::conv2d(stride, padding, dilation, groups), kWeight, grad_lo, grad_hi,
          x_lo_, x_hi_, w_lo_, w_hi_, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_), w_lo = nchw(w_lo_), w_hi = nchw(w_hi_);
  const at::Tensor g_lo = nchw(grad_lo), g_hi = nchw(grad_hi);
  auto [out_lo, out_hi] = zeros_pair(kWeight ? w_lo : x_lo);
  AT_DISPATCH_FLOATING_TYPES(
      x_lo.scalar_type(),
      kWeight ? "interval_conv2d_backward_weight_cpu" : "interval_conv2d_backward_input_cpu", [&] {
        const KernelCall<scalar_t> call{
            g, batch, groups, out_channels,
            operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, &g_lo, &g_hi, out_lo, out_hi),
            input_nonneg, x_lo.options()};
        const std::optional<Direct> direct =
            kWeight ? std::nullopt : input_grad_direct(g, pixel_tile<scalar_t>());
        if (kWeight) {
          conv2d_backward_weight_pixels<scalar_t>(call);
        } else if (direct) {
          conv2d_backward_input_pixels<scalar_t>(call, *direct);
        } else {
          conv2d_backward_input_kernel<scalar_t>(call);
        }
      });
  return {out_lo, out_hi};
}

Pair conv_transpose2d_forward(const at::Tensor& x_lo_, const at::Tensor& x_hi_,
                              const at::Tensor& w_lo_, const at::Tensor& w_hi_,
                              const std::optional<at::Tensor>& b_lo,
                              const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef output_padding,
                              int64_t groups, at::IntArrayRef dilation, bool input_nonneg) {
  const ConvGeometry g = conv_transpose2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding,
                                                   output_padding, groups, dilation);
  if (auto r = library::forward(
          "interval_conv_transpose2d",
          library::Map::conv_transpose2d(stride, padding, output_padding, groups, dilation), x_lo_,
          x_hi_, w_lo_, w_hi_, b_lo, b_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_);
  const at::Tensor w_lo = transpose_weight(w_lo_, groups), w_hi = transpose_weight(w_hi_, groups);
  const int64_t batch = x_lo.size(0), in_channels = x_lo.size(1);
  auto [y_lo, y_hi] = init_output({batch, g.channels * groups, g.height, g.width},
                                  x_lo.options(), b_lo, b_hi);
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_conv_transpose2d_cpu", [&] {
    conv_transpose2d_forward_pixels<scalar_t>(
        {g, batch, groups, in_channels,
         operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, nullptr, nullptr, y_lo, y_hi), input_nonneg,
         x_lo.options()});
  });
  return {y_lo, y_hi};
}

// interval_conv_transpose2d_backward_input (kWeight false) and _backward_weight (true). The weight
// gradient is computed transposed like the kernels' weight, then put back in the weight's layout.
template <bool kWeight>
Pair conv_transpose2d_backward(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                               const at::Tensor& x_lo_, const at::Tensor& x_hi_,
                               const at::Tensor& w_lo_, const at::Tensor& w_hi_,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef output_padding, int64_t groups,
                               at::IntArrayRef dilation, bool input_nonneg) {
  const ConvGeometry g = conv_transpose2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding,
                                                   output_padding, groups, dilation);
  const int64_t batch = x_lo_.size(0), in_channels = x_lo_.size(1);
  check_grad(kWeight ? "interval_conv_transpose2d_backward_weight"
                     : "interval_conv_transpose2d_backward_input",
             grad_lo, grad_hi, {batch, g.channels * groups, g.height, g.width});
  if (auto r = library::backward(
          kWeight ? "interval_conv_transpose2d_backward_weight"
                  : "interval_conv_transpose2d_backward_input",
          library::Map::conv_transpose2d(stride, padding, output_padding, groups, dilation),
          kWeight, grad_lo, grad_hi, x_lo_, x_hi_, w_lo_, w_hi_, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_);
  const at::Tensor w_lo = transpose_weight(w_lo_, groups), w_hi = transpose_weight(w_hi_, groups);
  const at::Tensor g_lo = nchw(grad_lo), g_hi = nchw(grad_hi);
  auto [out_lo, out_hi] = zeros_pair(kWeight ? w_lo : x_lo);
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(),
                             kWeight ? "interval_conv_transpose2d_backward_weight_cpu"
                                     : "interval_conv_transpose2d_backward_input_cpu",
                             [&] {
                               const auto kernel =
                                   kWeight ? conv_transpose2d_backward_weight_pixels<scalar_t>
                                           : conv_transpose2d_backward_input_pixels<scalar_t>;
                               kernel({g, batch, groups, in_channels,
                                       operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, &g_lo, &g_hi,
                                                          out_lo, out_hi),
                                       input_nonneg, x_lo.options()});
                             });
  if (!kWeight) return {out_lo, out_hi};
  return {untranspose_weight(out_lo, w_lo_.sizes()), untranspose_weight(out_hi, w_lo_.sizes())};
}

const BackendOps registered(
    "cpu", {"interval_conv2d", "interval_conv2d_backward_input", "interval_conv2d_backward_weight",
            "interval_conv_transpose2d", "interval_conv_transpose2d_backward_input",
            "interval_conv_transpose2d_backward_weight"});

}  // namespace
}  // namespace inn::cpu

TORCH_LIBRARY_IMPL(inn_cuda, CPU, m) {
  m.impl("interval_conv2d", &inn::cpu::conv2d_forward);
  m.impl("interval_conv2d_backward_input", &inn::cpu::conv2d_backward<false>);
  m.impl("interval_conv2d_backward_weight", &inn::cpu::conv2d_backward<true>);
  m.impl("interval_conv_transpose2d", &inn::cpu::conv_transpose2d_forward);
  m.impl("interval_conv_transpose2d_backward_input", &inn::cpu::conv_transpose2d_backward<false>);
  m.impl("interval_conv_transpose2d_backward_weight", &inn::cpu::conv_transpose2d_backward<true>);
}
