// The CPU interval convolution ops (conv2d, conv_transpose2d and their input and weight
// gradients): argument checks and shapes, the operands made contiguous NCHW, the choice of kernel
// family, and the registration for the CPU dispatch key. The kernels live in two families:
//  * pixel lanes (conv_pixel_lanes.h, conv_pixel_forward.cpp, conv_pixel_input_grad.cpp,
//    conv_pixel_weight_grad.cpp): every forward, every gradient but the one below;
//  * the fused interval GEMMs around im2col / col2im (conv_gemm.cpp): a conv2d input gradient
//    that has no direct pixel-lane form (stride > 1, or padding beyond the kernel's reach), and
//    the general conv2d forward with many output channels per group.
//
// Inputs of any layout (channels_last included) are made contiguous NCHW first; outputs and
// gradients are contiguous NCHW.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "../backend_registry.h"
#include "conv_cpu.h"

namespace inn::cpu::conv {
namespace {

using Pair = std::tuple<at::Tensor, at::Tensor>;

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
    // General mode with many output channels: the GEMM family (see kGemmGeneralChannels).
    const bool gemm = !input_nonneg && out_channels / groups >= kGemmGeneralChannels;
    (gemm ? conv2d_forward_gemm<scalar_t> : conv2d_forward_pixels<scalar_t>)(
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
        if (kWeight) {
          conv2d_backward_weight_pixels<scalar_t>(call);
        } else if (conv2d_input_grad_is_direct(g)) {
          conv2d_backward_input_pixels<scalar_t>(call);
        } else {
          conv2d_backward_input_gemm<scalar_t>(call);
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
}  // namespace inn::cpu::conv

TORCH_LIBRARY_IMPL(inn_cuda, CPU, m) {
  m.impl("interval_conv2d", &inn::cpu::conv::conv2d_forward);
  m.impl("interval_conv2d_backward_input", &inn::cpu::conv::conv2d_backward<false>);
  m.impl("interval_conv2d_backward_weight", &inn::cpu::conv::conv2d_backward<true>);
  m.impl("interval_conv_transpose2d", &inn::cpu::conv::conv_transpose2d_forward);
  m.impl("interval_conv_transpose2d_backward_input",
         &inn::cpu::conv::conv_transpose2d_backward<false>);
  m.impl("interval_conv_transpose2d_backward_weight",
         &inn::cpu::conv::conv_transpose2d_backward<true>);
}
