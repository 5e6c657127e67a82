// The CPU interval convolution ops (conv2d, conv_transpose2d and their input and weight
// gradients): argument checks (op_checks.h) and shapes, the operands made contiguous NCHW, the
// choice of kernel family, and the registration for the CPU dispatch key. The kernels live in two
// families:
//  * pixel lanes (conv_pixel_lanes.h, conv_pixel_forward.cpp, conv_pixel_input_grad.cpp,
//    conv_pixel_weight_grad.cpp): every forward, every gradient but the one below;
//  * the fused interval GEMMs around im2col / col2im (conv_gemm.cpp): a conv2d input gradient
//    that has no direct pixel-lane form (stride > 1, or padding beyond the kernel's reach), and
//    the conv2d forward with many output channels per group on small images, or in general mode
//    where many weights straddle zero (forward_on_gemm, conv_cpu.h).
//
// Inputs of any layout (channels_last included) are made contiguous NCHW first; outputs and
// gradients are contiguous NCHW.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "../backend_registry.h"
#include "../library/library_path.h"
#include "../op_checks.h"
#include "conv_cpu.h"

namespace inn::cpu::conv {
namespace {

using Pair = std::tuple<at::Tensor, at::Tensor>;

// ----------------------------------------------------------------------------- shapes

at::Tensor nchw(const at::Tensor& t) { return t.contiguous(); }

// Output (or gradient) pair initialised to the bias / zeros, into which the kernels add.
Pair init_output(at::IntArrayRef shape, const at::TensorOptions& options,
                 const std::optional<at::Tensor>& b_lo, const std::optional<at::Tensor>& b_hi) {
  if (!b_lo.has_value()) return {at::zeros(shape, options), at::zeros(shape, options)};
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
  const ConvGeometry g = check_conv2d("interval_conv2d", x_lo_, x_hi_, w_lo_, w_hi_, b_lo, b_hi,
                                      stride, padding, dilation, groups);
  if (auto r = library::forward("interval_conv2d",
                                library::Map::conv2d(stride, padding, dilation, groups), x_lo_,
                                x_hi_, w_lo_, w_hi_, b_lo, b_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_), w_lo = nchw(w_lo_), w_hi = nchw(w_hi_);
  const int64_t batch = x_lo.size(0), out_channels = w_lo.size(0);
  const auto shape = conv2d_output_shape(g);
  if (x_lo.numel() == 0) {  // no terms (no batch or no input channels)
    return init_output(shape, x_lo.options(), b_lo, b_hi);
  }
  at::Tensor y_lo, y_hi;
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_conv2d_cpu", [&] {
    // Many output channels: the GEMM family on small images, and in general mode where many
    // weights straddle zero (see forward_on_gemm).
    const bool gemm = forward_on_gemm(g, out_channels / groups, input_nonneg, [&] {
      return straddling_tap_share(w_lo.const_data_ptr<scalar_t>(), w_hi.const_data_ptr<scalar_t>(),
                                  groups, out_channels / groups, g.big_depth(),
                                  select_tile_channels<scalar_t>());
    });
    // The GEMM adds into the bias; the pixel lanes write every element once, bias included (no
    // fill, no read back): the same sum, one rounding either way.
    if (gemm) {
      std::tie(y_lo, y_hi) = init_output(shape, x_lo.options(), b_lo, b_hi);
    } else {
      y_lo = at::empty(shape, x_lo.options());
      y_hi = at::empty(shape, x_lo.options());
    }
    Operands<scalar_t> o = operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, nullptr, nullptr, y_lo, y_hi);
    const at::Tensor bias_lo = b_lo ? b_lo->contiguous() : at::Tensor();
    const at::Tensor bias_hi = b_hi ? b_hi->contiguous() : at::Tensor();
    if (!gemm && b_lo) {
      o.b_lo = bias_lo.const_data_ptr<scalar_t>();
      o.b_hi = bias_hi.const_data_ptr<scalar_t>();
    }
    (gemm ? conv2d_forward_gemm<scalar_t> : conv2d_forward_pixels<scalar_t>)(
        {g, batch, groups, out_channels, o, input_nonneg, x_lo.options()});
  });
  return {y_lo, y_hi};
}

// The fused kernels of interval_conv2d_backward_input (kWeight false) and _backward_weight
// (true), on checked operands.
template <bool kWeight>
Pair conv2d_backward_fused(const ConvGeometry& g, const at::Tensor& grad_lo,
                           const at::Tensor& grad_hi, const at::Tensor& x_lo_,
                           const at::Tensor& x_hi_, const at::Tensor& w_lo_,
                           const at::Tensor& w_hi_, int64_t groups, bool input_nonneg) {
  const int64_t batch = x_lo_.size(0), out_channels = w_lo_.size(0);
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_), w_lo = nchw(w_lo_), w_hi = nchw(w_hi_);
  const at::Tensor g_lo = nchw(grad_lo), g_hi = nchw(grad_hi);
  auto [out_lo, out_hi] = zeros_pair(kWeight ? w_lo : x_lo);
  if (x_lo.numel() == 0 || g_lo.numel() == 0) return {out_lo, out_hi};  // no terms
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

// interval_conv2d_backward_input (kWeight false) and interval_conv2d_backward_weight (true).
template <bool kWeight>
Pair conv2d_backward(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                     const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                     const at::Tensor& w_hi, at::IntArrayRef stride, at::IntArrayRef padding,
                     at::IntArrayRef dilation, int64_t groups, bool input_nonneg) {
  const ConvGeometry g = check_conv2d_backward(
      kWeight ? "interval_conv2d_backward_weight" : "interval_conv2d_backward_input", grad_lo,
      grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding, dilation, groups);
  if (auto r = library::backward(
          kWeight ? "interval_conv2d_backward_weight" : "interval_conv2d_backward_input",
          library::Map::conv2d(stride, padding, dilation, groups), kWeight, grad_lo, grad_hi,
          x_lo, x_hi, w_lo, w_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  return conv2d_backward_fused<kWeight>(g, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, groups,
                                        input_nonneg);
}

// interval_conv2d_backward_weight_point: dw_lo + dw_hi of the point weight w (library_path.h),
// else the fused kernel's two bounds summed.
at::Tensor conv2d_backward_weight_point(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                                        const at::Tensor& x_lo, const at::Tensor& x_hi,
                                        const at::Tensor& w, at::IntArrayRef stride,
                                        at::IntArrayRef padding, at::IntArrayRef dilation,
                                        int64_t groups, bool input_nonneg) {
  constexpr const char* op = "interval_conv2d_backward_weight_point";
  const ConvGeometry g = check_conv2d_backward(kConv2dPointChecks, grad_lo, grad_hi, x_lo, x_hi,
                                               w, w, stride, padding, dilation, groups);
  if (auto r = library::weight_grad_point(op, library::Map::conv2d(stride, padding, dilation,
                                                                   groups),
                                          grad_lo, grad_hi, x_lo, x_hi, w, input_nonneg)) {
    return r->total;
  }
  auto [lo, hi] =
      conv2d_backward_fused<true>(g, grad_lo, grad_hi, x_lo, x_hi, w, w, groups, input_nonneg);
  return lo.add_(hi);
}

Pair conv_transpose2d_forward(const at::Tensor& x_lo_, const at::Tensor& x_hi_,
                              const at::Tensor& w_lo_, const at::Tensor& w_hi_,
                              const std::optional<at::Tensor>& b_lo,
                              const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef output_padding,
                              int64_t groups, at::IntArrayRef dilation, bool input_nonneg) {
  const ConvGeometry g =
      check_conv_transpose2d("interval_conv_transpose2d", x_lo_, x_hi_, w_lo_, w_hi_, b_lo, b_hi,
                             stride, padding, output_padding, groups, dilation);
  if (auto r = library::forward(
          "interval_conv_transpose2d",
          library::Map::conv_transpose2d(stride, padding, output_padding, groups, dilation), x_lo_,
          x_hi_, w_lo_, w_hi_, b_lo, b_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_);
  const at::Tensor w_lo = transpose_weight(w_lo_, groups), w_hi = transpose_weight(w_hi_, groups);
  const int64_t batch = x_lo.size(0), in_channels = x_lo.size(1);
  auto [y_lo, y_hi] = init_output(conv_transpose2d_output_shape(g), x_lo.options(), b_lo, b_hi);
  if (x_lo.numel() == 0) return {y_lo, y_hi};  // no terms (no batch)
  AT_DISPATCH_FLOATING_TYPES(x_lo.scalar_type(), "interval_conv_transpose2d_cpu", [&] {
    conv_transpose2d_forward_pixels<scalar_t>(
        {g, batch, groups, in_channels,
         operands<scalar_t>(x_lo, x_hi, w_lo, w_hi, nullptr, nullptr, y_lo, y_hi), input_nonneg,
         x_lo.options()});
  });
  return {y_lo, y_hi};
}

// The fused kernels of interval_conv_transpose2d_backward_input (kWeight false) and
// _backward_weight (true), on checked operands. The weight gradient is computed transposed like
// the kernels' weight, then put back in the weight's layout.
template <bool kWeight>
Pair conv_transpose2d_backward_fused(const ConvGeometry& g, const at::Tensor& grad_lo,
                                     const at::Tensor& grad_hi, const at::Tensor& x_lo_,
                                     const at::Tensor& x_hi_, const at::Tensor& w_lo_,
                                     const at::Tensor& w_hi_, int64_t groups, bool input_nonneg) {
  const int64_t batch = x_lo_.size(0), in_channels = x_lo_.size(1);
  const at::Tensor x_lo = nchw(x_lo_), x_hi = nchw(x_hi_);
  const at::Tensor w_lo = transpose_weight(w_lo_, groups), w_hi = transpose_weight(w_hi_, groups);
  const at::Tensor g_lo = nchw(grad_lo), g_hi = nchw(grad_hi);
  auto [out_lo, out_hi] = zeros_pair(kWeight ? w_lo : x_lo);
  if (x_lo.numel() == 0) {  // no terms (no batch)
    if (!kWeight) return {out_lo, out_hi};
    return {at::zeros_like(w_lo_, at::MemoryFormat::Contiguous),
            at::zeros_like(w_lo_, at::MemoryFormat::Contiguous)};
  }
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

// interval_conv_transpose2d_backward_input (kWeight false) and _backward_weight (true).
template <bool kWeight>
Pair conv_transpose2d_backward(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                               const at::Tensor& x_lo, const at::Tensor& x_hi,
                               const at::Tensor& w_lo, const at::Tensor& w_hi,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef output_padding, int64_t groups,
                               at::IntArrayRef dilation, bool input_nonneg) {
  const ConvGeometry g = check_conv_transpose2d_backward(
      kWeight ? "interval_conv_transpose2d_backward_weight"
              : "interval_conv_transpose2d_backward_input",
      grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, stride, padding, output_padding, groups,
      dilation);
  if (auto r = library::backward(
          kWeight ? "interval_conv_transpose2d_backward_weight"
                  : "interval_conv_transpose2d_backward_input",
          library::Map::conv_transpose2d(stride, padding, output_padding, groups, dilation),
          kWeight, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg)) {
    return {r->lo, r->hi};
  }
  return conv_transpose2d_backward_fused<kWeight>(g, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi,
                                                  groups, input_nonneg);
}

// interval_conv_transpose2d_backward_weight_point: dw_lo + dw_hi of the point weight w
// (library_path.h), else the fused kernel's two bounds summed.
at::Tensor conv_transpose2d_backward_weight_point(
    const at::Tensor& grad_lo, const at::Tensor& grad_hi, const at::Tensor& x_lo,
    const at::Tensor& x_hi, const at::Tensor& w, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation, bool input_nonneg) {
  constexpr const char* op = "interval_conv_transpose2d_backward_weight_point";
  const ConvGeometry g = check_conv_transpose2d_backward(
      kConvTranspose2dPointChecks, grad_lo, grad_hi, x_lo, x_hi, w, w, stride, padding,
      output_padding, groups, dilation);
  if (auto r = library::weight_grad_point(
          op, library::Map::conv_transpose2d(stride, padding, output_padding, groups, dilation),
          grad_lo, grad_hi, x_lo, x_hi, w, input_nonneg)) {
    return r->total;
  }
  auto [lo, hi] = conv_transpose2d_backward_fused<true>(g, grad_lo, grad_hi, x_lo, x_hi, w, w,
                                                        groups, input_nonneg);
  return lo.add_(hi);
}

const BackendOps registered(
    "cpu", {"interval_conv2d", "interval_conv2d_backward_input", "interval_conv2d_backward_weight",
            "interval_conv2d_backward_weight_point", "interval_conv_transpose2d",
            "interval_conv_transpose2d_backward_input", "interval_conv_transpose2d_backward_weight",
            "interval_conv_transpose2d_backward_weight_point"});

}  // namespace
}  // namespace inn::cpu::conv

TORCH_LIBRARY_IMPL(inn_cuda, CPU, m) {
  m.impl("interval_conv2d", &inn::cpu::conv::conv2d_forward);
  m.impl("interval_conv2d_backward_input", &inn::cpu::conv::conv2d_backward<false>);
  m.impl("interval_conv2d_backward_weight", &inn::cpu::conv::conv2d_backward<true>);
  m.impl("interval_conv2d_backward_weight_point", &inn::cpu::conv::conv2d_backward_weight_point);
  m.impl("interval_conv_transpose2d", &inn::cpu::conv::conv_transpose2d_forward);
  m.impl("interval_conv_transpose2d_backward_input",
         &inn::cpu::conv::conv_transpose2d_backward<false>);
  m.impl("interval_conv_transpose2d_backward_weight",
         &inn::cpu::conv::conv_transpose2d_backward<true>);
  m.impl("interval_conv_transpose2d_backward_weight_point",
         &inn::cpu::conv::conv_transpose2d_backward_weight_point);
}
