// CPU kernels of the interval convolutions (conv2d, conv_transpose2d and their input and weight
// gradients): im2col / col2im (im2col.h) around the fused interval GEMMs (interval_gemm.h).
//
// Every kernel is a loop over chunks of column-side pixels: several whole images when images are
// small, part of one image when they are large, sized so that the buffers of a chunk stay within
// kBufferBudgetBytes whatever the batch and image size. GEMM rows are pixels; every GEMM operand
// and result is a row-major chunk buffer (unit column stride), filled by im2col (or a pixel-row
// gather) and emptied by col2im (or a pixel-row scatter): the packed GEMMs read and write such
// rows about twice as fast as strided views straight into NCHW tensors. Parallelism is inside
// each step (the GEMM over its output blocks, im2col over rows, col2im over planes or row
// blocks); chunks and groups run in turn, since at::parallel_for does not nest.
//
// conv_transpose2d is computed exactly without zero insertion: a GEMM per input-pixel chunk
// gives every term's bounds (C_out/groups * kh * kw contributions per input pixel), and col2im
// adds the lower and upper bounds into the output separately.
//
// Inputs of any layout (channels_last included) are made contiguous NCHW first; outputs and
// gradients are contiguous NCHW.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <utility>

#include "../backend_registry.h"
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

// Pixel rows of channels [first, first + count) of an NCHW pair (an identity im2col).
template <typename T>
void gather_rows(const T* lo, const T* hi, int64_t channels, int64_t height, int64_t width,
                 int64_t first, int64_t count, const Chunk& chunk, RowBuffer<T>& out) {
  const auto [pl, ph] = planes(lo, hi, channels, first, height * width);
  im2col(ConvGeometry::identity(count, height, width), chunk, pl, ph, out.lo, out.hi);
}

// NCHW pair channels [first, first + count) += pixel rows (an identity col2im).
template <typename T>
void scatter_add_rows(const RowBuffer<T>& rows, T* lo, T* hi, int64_t channels, int64_t height,
                      int64_t width, int64_t first, int64_t count, const Chunk& chunk) {
  const auto [pl, ph] = planes(lo, hi, channels, first, height * width);
  col2im_add(ConvGeometry::identity(count, height, width), chunk, rows.lo, rows.hi, pl, ph);
}

// The input bounds the backward GEMMs need in general mode only: nonneg mode selects by the
// weight's sign alone, so a zero stands in for the input (no im2col, no buffer).
template <typename T>
std::pair<ConstView<T>, ConstView<T>> zero_input() {
  static const T zero = T(0);
  return {{&zero, 0, 0}, {&zero, 0, 0}};
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

// Pointers of the contiguous operands of one kernel call. conv_transpose2d kernels get the weight
// (and write its gradient) transposed, see transpose_weight.
template <typename T>
struct Operands {
  const T *x_lo, *x_hi, *w_lo, *w_hi, *g_lo, *g_hi;  // g: the output gradient, if any
  T *out_lo, *out_hi;                                // y, dx or dw
};

// --------------------------------------------------------------------------------- conv2d kernels
// Per group: x columns (rows x Kg, Kg = C_in/groups * kh * kw), weight (C_out/groups x Kg),
// y pixel rows (rows x C_out/groups).

template <typename T>
void conv2d_forward_kernel(const ConvGeometry& g, int64_t batch, int64_t groups,
                           int64_t out_channels, const Operands<T>& o, bool nonneg,
                           const at::TensorOptions& options) {
  const int64_t kg = g.column_rows(), out_g = out_channels / groups;
  const int64_t in_channels = g.channels * groups;
  const ChunkPlan plan(batch, g.out_pixels(), 2 * int64_t(sizeof(T)) * (kg + out_g));
  RowBuffer<T> cols(plan, kg, true, options), ys(plan, out_g, true, options);
  plan.for_each([&](const Chunk& chunk) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const auto [xl, xh] = planes(o.x_lo, o.x_hi, in_channels, grp * g.channels,
                                   g.image_pixels());
      im2col(g, chunk, xl, xh, cols.lo, cols.hi);
      interval_gemm_forward<T>(chunk.rows(), out_g, kg, cols.const_lo(), cols.const_hi(),
                               ConstView<T>{o.w_lo + grp * out_g * kg, kg, 1},
                               ConstView<T>{o.w_hi + grp * out_g * kg, kg, 1}, ys.view_lo(),
                               ys.view_hi(), nonneg, false);
      scatter_add_rows(ys, o.out_lo, o.out_hi, out_channels, g.out_h, g.out_w, grp * out_g, out_g,
                       chunk);
    }
  });
}

template <typename T>
void conv2d_backward_input_kernel(const ConvGeometry& g, int64_t batch, int64_t groups,
                                  int64_t out_channels, const Operands<T>& o, bool nonneg,
                                  const at::TensorOptions& options) {
  const int64_t kg = g.column_rows(), out_g = out_channels / groups;
  const int64_t in_channels = g.channels * groups;
  const ChunkPlan plan(batch, g.out_pixels(),
                       2 * int64_t(sizeof(T)) * ((nonneg ? 1 : 2) * kg + out_g));
  RowBuffer<T> grads(plan, out_g, true, options), cols(plan, kg, !nonneg, options),
      dcols(plan, kg, true, options);
  plan.for_each([&](const Chunk& chunk) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      gather_rows(o.g_lo, o.g_hi, out_channels, g.out_h, g.out_w, grp * out_g, out_g, chunk,
                  grads);
      const auto [xl, xh] = planes(o.x_lo, o.x_hi, in_channels, grp * g.channels,
                                   g.image_pixels());
      if (!nonneg) im2col(g, chunk, xl, xh, cols.lo, cols.hi);
      const auto [x_lo, x_hi] =
          nonneg ? zero_input<T>() : std::pair{cols.const_lo(), cols.const_hi()};
      interval_gemm_backward_input<T>(chunk.rows(), out_g, kg, grads.const_lo(), grads.const_hi(),
                                      x_lo, x_hi, ConstView<T>{o.w_lo + grp * out_g * kg, kg, 1},
                                      ConstView<T>{o.w_hi + grp * out_g * kg, kg, 1},
                                      dcols.view_lo(), dcols.view_hi(), nonneg, false);
      const auto [dl, dh] = planes(o.out_lo, o.out_hi, in_channels, grp * g.channels,
                                   g.image_pixels());
      col2im_add(g, chunk, dcols.lo, dcols.hi, dl, dh);
    }
  });
}

template <typename T>
void conv2d_backward_weight_kernel(const ConvGeometry& g, int64_t batch, int64_t groups,
                                   int64_t out_channels, const Operands<T>& o, bool nonneg,
                                   const at::TensorOptions& options) {
  const int64_t kg = g.column_rows(), out_g = out_channels / groups;
  const int64_t in_channels = g.channels * groups;
  const ChunkPlan plan(batch, g.out_pixels(), 2 * int64_t(sizeof(T)) * (kg + out_g));
  RowBuffer<T> grads(plan, out_g, true, options), cols(plan, kg, true, options);
  plan.for_each([&](const Chunk& chunk) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      gather_rows(o.g_lo, o.g_hi, out_channels, g.out_h, g.out_w, grp * out_g, out_g, chunk,
                  grads);
      const auto [xl, xh] = planes(o.x_lo, o.x_hi, in_channels, grp * g.channels,
                                   g.image_pixels());
      im2col(g, chunk, xl, xh, cols.lo, cols.hi);
      const int64_t w_offset = grp * out_g * kg;
      interval_gemm_backward_weight<T>(
          chunk.rows(), out_g, kg, grads.const_lo(), grads.const_hi(), cols.const_lo(),
          cols.const_hi(), ConstView<T>{o.w_lo + w_offset, kg, 1},
          ConstView<T>{o.w_hi + w_offset, kg, 1}, View<T>{o.out_lo + w_offset, kg, 1},
          View<T>{o.out_hi + w_offset, kg, 1}, nonneg, true);
    }
  });
}

// ----------------------------------------------------------------------- conv_transpose2d kernels
// Per group: x pixel rows (rows x C_in/groups), the weight transposed to (C_out/groups * kh * kw)
// x (C_in/groups) (`w_lo`/`w_hi` of Operands, row-major per group), contributions = output
// columns (rows x C_out/groups * kh * kw), col2im'd into y.

template <typename T>
void conv_transpose2d_forward_kernel(const ConvGeometry& g, int64_t batch, int64_t groups,
                                     int64_t in_channels, const Operands<T>& o, bool nonneg,
                                     const at::TensorOptions& options) {
  const int64_t ncol = g.column_rows(), in_g = in_channels / groups;
  const int64_t out_channels = g.channels * groups;
  const ChunkPlan plan(batch, g.out_pixels(), 2 * int64_t(sizeof(T)) * (ncol + in_g));
  RowBuffer<T> xs(plan, in_g, true, options), contributions(plan, ncol, true, options);
  plan.for_each([&](const Chunk& chunk) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      gather_rows(o.x_lo, o.x_hi, in_channels, g.out_h, g.out_w, grp * in_g, in_g, chunk, xs);
      interval_gemm_forward<T>(chunk.rows(), ncol, in_g, xs.const_lo(), xs.const_hi(),
                               ConstView<T>{o.w_lo + grp * ncol * in_g, in_g, 1},
                               ConstView<T>{o.w_hi + grp * ncol * in_g, in_g, 1},
                               contributions.view_lo(), contributions.view_hi(), nonneg, false);
      const auto [yl, yh] = planes(o.out_lo, o.out_hi, out_channels, grp * g.channels,
                                   g.image_pixels());
      col2im_add(g, chunk, contributions.lo, contributions.hi, yl, yh);
    }
  });
}

template <typename T>
void conv_transpose2d_backward_input_kernel(const ConvGeometry& g, int64_t batch, int64_t groups,
                                            int64_t in_channels, const Operands<T>& o,
                                            bool nonneg, const at::TensorOptions& options) {
  const int64_t ncol = g.column_rows(), in_g = in_channels / groups;
  const int64_t out_channels = g.channels * groups;
  const ChunkPlan plan(batch, g.out_pixels(),
                       2 * int64_t(sizeof(T)) * (ncol + (nonneg ? 1 : 2) * in_g));
  RowBuffer<T> grads(plan, ncol, true, options), xs(plan, in_g, !nonneg, options),
      dxs(plan, in_g, true, options);
  plan.for_each([&](const Chunk& chunk) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const auto [gl, gh] = planes(o.g_lo, o.g_hi, out_channels, grp * g.channels,
                                   g.image_pixels());
      im2col(g, chunk, gl, gh, grads.lo, grads.hi);
      if (!nonneg) {
        gather_rows(o.x_lo, o.x_hi, in_channels, g.out_h, g.out_w, grp * in_g, in_g, chunk, xs);
      }
      const auto [x_lo, x_hi] = nonneg ? zero_input<T>() : std::pair{xs.const_lo(), xs.const_hi()};
      interval_gemm_backward_input<T>(chunk.rows(), ncol, in_g, grads.const_lo(),
                                      grads.const_hi(), x_lo, x_hi,
                                      ConstView<T>{o.w_lo + grp * ncol * in_g, in_g, 1},
                                      ConstView<T>{o.w_hi + grp * ncol * in_g, in_g, 1},
                                      dxs.view_lo(), dxs.view_hi(), nonneg, false);
      scatter_add_rows(dxs, o.out_lo, o.out_hi, in_channels, g.out_h, g.out_w, grp * in_g, in_g,
                       chunk);
    }
  });
}

// Writes the weight gradient transposed like the weight in Operands: (groups, ncol, C_in/groups).
template <typename T>
void conv_transpose2d_backward_weight_kernel(const ConvGeometry& g, int64_t batch,
                                             int64_t groups, int64_t in_channels,
                                             const Operands<T>& o, bool nonneg,
                                             const at::TensorOptions& options) {
  const int64_t ncol = g.column_rows(), in_g = in_channels / groups;
  const int64_t out_channels = g.channels * groups;
  const ChunkPlan plan(batch, g.out_pixels(), 2 * int64_t(sizeof(T)) * (ncol + in_g));
  RowBuffer<T> grads(plan, ncol, true, options), xs(plan, in_g, true, options);
  plan.for_each([&](const Chunk& chunk) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const auto [gl, gh] = planes(o.g_lo, o.g_hi, out_channels, grp * g.channels,
                                   g.image_pixels());
      im2col(g, chunk, gl, gh, grads.lo, grads.hi);
      gather_rows(o.x_lo, o.x_hi, in_channels, g.out_h, g.out_w, grp * in_g, in_g, chunk, xs);
      const int64_t w_offset = grp * ncol * in_g;
      interval_gemm_backward_weight<T>(
          chunk.rows(), ncol, in_g, grads.const_lo(), grads.const_hi(), xs.const_lo(),
          xs.const_hi(), ConstView<T>{o.w_lo + w_offset, in_g, 1},
          ConstView<T>{o.w_hi + w_offset, in_g, 1}, View<T>{o.out_lo + w_offset, in_g, 1},
          View<T>{o.out_hi + w_offset, in_g, 1}, nonneg, true);
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
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_), w_lo = nchw(w_lo_), w_hi = nchw(w_hi_);
  const int64_t batch = x_lo.size(0), out_channels = w_lo.size(0);
  auto [y_lo, y_hi] = init_output({batch, out_channels, g.out_h, g.out_w}, x_lo.options(), b_lo,
                                  b_hi);
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_conv2d_cpu", [&] {
    conv2d_forward_kernel<scalar_t>(
        g, batch, groups, out_channels,
        operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, nullptr, nullptr, y_lo, y_hi), input_nonneg,
        x_lo.options());
  });
  return {y_lo, y_hi};
}

Pair conv2d_backward_input(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                           const at::Tensor& x_lo_, const at::Tensor& x_hi_,
                           const at::Tensor& w_lo_, const at::Tensor& w_hi_,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation, int64_t groups, bool input_nonneg) {
  const ConvGeometry g =
      conv2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding, dilation, groups);
  const int64_t batch = x_lo_.size(0), out_channels = w_lo_.size(0);
  check_grad("interval_conv2d_backward_input", grad_lo, grad_hi,
             {batch, out_channels, g.out_h, g.out_w});
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_), w_lo = nchw(w_lo_), w_hi = nchw(w_hi_);
  const at::Tensor g_lo = nchw(grad_lo), g_hi = nchw(grad_hi);
  at::Tensor dx_lo = at::zeros(x_lo.sizes(), x_lo.options());
  at::Tensor dx_hi = at::zeros(x_lo.sizes(), x_lo.options());
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_conv2d_backward_input_cpu", [&] {
    conv2d_backward_input_kernel<scalar_t>(
        g, batch, groups, out_channels,
        operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, &g_lo, &g_hi, dx_lo, dx_hi), input_nonneg,
        x_lo.options());
  });
  return {dx_lo, dx_hi};
}

Pair conv2d_backward_weight(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                            const at::Tensor& x_lo_, const at::Tensor& x_hi_,
                            const at::Tensor& w_lo_, const at::Tensor& w_hi_,
                            at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups, bool input_nonneg) {
  const ConvGeometry g =
      conv2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding, dilation, groups);
  const int64_t batch = x_lo_.size(0), out_channels = w_lo_.size(0);
  check_grad("interval_conv2d_backward_weight", grad_lo, grad_hi,
             {batch, out_channels, g.out_h, g.out_w});
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_), w_lo = nchw(w_lo_), w_hi = nchw(w_hi_);
  const at::Tensor g_lo = nchw(grad_lo), g_hi = nchw(grad_hi);
  at::Tensor dw_lo = at::zeros(w_lo.sizes(), w_lo.options());
  at::Tensor dw_hi = at::zeros(w_lo.sizes(), w_lo.options());
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_conv2d_backward_weight_cpu", [&] {
    conv2d_backward_weight_kernel<scalar_t>(
        g, batch, groups, out_channels,
        operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, &g_lo, &g_hi, dw_lo, dw_hi), input_nonneg,
        x_lo.options());
  });
  return {dw_lo, dw_hi};
}

Pair conv_transpose2d_forward(const at::Tensor& x_lo_, const at::Tensor& x_hi_,
                              const at::Tensor& w_lo_, const at::Tensor& w_hi_,
                              const std::optional<at::Tensor>& b_lo,
                              const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef output_padding,
                              int64_t groups, at::IntArrayRef dilation, bool input_nonneg) {
  const ConvGeometry g = conv_transpose2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding,
                                                   output_padding, groups, dilation);
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_);
  const at::Tensor w_lo = transpose_weight(w_lo_, groups), w_hi = transpose_weight(w_hi_, groups);
  const int64_t batch = x_lo.size(0), in_channels = x_lo.size(1);
  auto [y_lo, y_hi] = init_output({batch, g.channels * groups, g.height, g.width},
                                  x_lo.options(), b_lo, b_hi);
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_conv_transpose2d_cpu", [&] {
    conv_transpose2d_forward_kernel<scalar_t>(
        g, batch, groups, in_channels,
        operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, nullptr, nullptr, y_lo, y_hi), input_nonneg,
        x_lo.options());
  });
  return {y_lo, y_hi};
}

Pair conv_transpose2d_backward_input(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                                     const at::Tensor& x_lo_, const at::Tensor& x_hi_,
                                     const at::Tensor& w_lo_, const at::Tensor& w_hi_,
                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef output_padding, int64_t groups,
                                     at::IntArrayRef dilation, bool input_nonneg) {
  const ConvGeometry g = conv_transpose2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding,
                                                   output_padding, groups, dilation);
  const int64_t batch = x_lo_.size(0), in_channels = x_lo_.size(1);
  check_grad("interval_conv_transpose2d_backward_input", grad_lo, grad_hi,
             {batch, g.channels * groups, g.height, g.width});
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_);
  const at::Tensor w_lo = transpose_weight(w_lo_, groups), w_hi = transpose_weight(w_hi_, groups);
  const at::Tensor g_lo = nchw(grad_lo), g_hi = nchw(grad_hi);
  at::Tensor dx_lo = at::zeros(x_lo.sizes(), x_lo.options());
  at::Tensor dx_hi = at::zeros(x_lo.sizes(), x_lo.options());
  AT_DISPATCH_FLOATING_TYPES(
      x_lo.scalar_type(), "interval_conv_transpose2d_backward_input_cpu", [&] {
        conv_transpose2d_backward_input_kernel<scalar_t>(
            g, batch, groups, in_channels,
            operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, &g_lo, &g_hi, dx_lo, dx_hi),
            input_nonneg, x_lo.options());
      });
  return {dx_lo, dx_hi};
}

Pair conv_transpose2d_backward_weight(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                                      const at::Tensor& x_lo_, const at::Tensor& x_hi_,
                                      const at::Tensor& w_lo_, const at::Tensor& w_hi_,
                                      at::IntArrayRef stride, at::IntArrayRef padding,
                                      at::IntArrayRef output_padding, int64_t groups,
                                      at::IntArrayRef dilation, bool input_nonneg) {
  const ConvGeometry g = conv_transpose2d_geometry(x_lo_, x_hi_, w_lo_, w_hi_, stride, padding,
                                                   output_padding, groups, dilation);
  const int64_t batch = x_lo_.size(0), in_channels = x_lo_.size(1);
  check_grad("interval_conv_transpose2d_backward_weight", grad_lo, grad_hi,
             {batch, g.channels * groups, g.height, g.width});
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_);
  const at::Tensor w_lo = transpose_weight(w_lo_, groups), w_hi = transpose_weight(w_hi_, groups);
  const at::Tensor g_lo = nchw(grad_lo), g_hi = nchw(grad_hi);
  at::Tensor dw_lo = at::zeros(w_lo.sizes(), w_lo.options());  // transposed like w_lo
  at::Tensor dw_hi = at::zeros(w_lo.sizes(), w_lo.options());
  AT_DISPATCH_FLOATING_TYPES(
      x_lo.scalar_type(), "interval_conv_transpose2d_backward_weight_cpu", [&] {
        conv_transpose2d_backward_weight_kernel<scalar_t>(
            g, batch, groups, in_channels,
            operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, &g_lo, &g_hi, dw_lo, dw_hi),
            input_nonneg, x_lo.options());
      });
  return {untranspose_weight(dw_lo, w_lo_.sizes()), untranspose_weight(dw_hi, w_lo_.sizes())};
}

const BackendOps registered(
    "cpu", {"interval_conv2d", "interval_conv2d_backward_input", "interval_conv2d_backward_weight",
            "interval_conv_transpose2d", "interval_conv_transpose2d_backward_input",
            "interval_conv_transpose2d_backward_weight"});

}  // namespace
}  // namespace inn::cpu

TORCH_LIBRARY_IMPL(inn_cuda, CPU, m) {
  m.impl("interval_conv2d", &inn::cpu::conv2d_forward);
  m.impl("interval_conv2d_backward_input", &inn::cpu::conv2d_backward_input);
  m.impl("interval_conv2d_backward_weight", &inn::cpu::conv2d_backward_weight);
  m.impl("interval_conv_transpose2d", &inn::cpu::conv_transpose2d_forward);
  m.impl("interval_conv_transpose2d_backward_input", &inn::cpu::conv_transpose2d_backward_input);
  m.impl("interval_conv_transpose2d_backward_weight",
         &inn::cpu::conv_transpose2d_backward_weight);
}
