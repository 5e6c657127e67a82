// CUDA launchers of the interval conv_transpose2d ops (NCHW; operands made contiguous): the
// transposed convolution is the "big = y, small = x" case of the shared convolution index maps in
// csrc/kernels/conv_problems.cuh, so its forward runs the conv2d input-gradient index map and its
// input gradient the conv2d forward one.
#include <torch/library.h>

#include <algorithm>

#include "../backend_registry.h"
#include "conv_launch.cuh"

namespace inn::gpu {
namespace {

kernels::ConvGeometry checked_geometry(const char* op, const at::Tensor& x, const at::Tensor& w,
                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef output_padding, int64_t groups,
                                       at::IntArrayRef dilation) {
  TORCH_CHECK(x.dim() == 4, op, ": x must be (N, C_in, H, W), got shape ", x.sizes());
  TORCH_CHECK(w.dim() == 4, op, ": w must be (C_in, C_out / groups, kH, kW), got shape ",
              w.sizes());
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && output_padding.size() == 2 &&
                  dilation.size() == 2,
              op, ": stride, padding, output_padding and dilation must have 2 values each");
  TORCH_CHECK(groups >= 1 && x.size(1) == w.size(0) && x.size(1) % groups == 0, op, ": x has ",
              x.size(1), " channels and w shape ", w.sizes(), ", which groups ", groups,
              " do not fit");
  TORCH_CHECK(stride[0] >= 1 && stride[1] >= 1 && dilation[0] >= 1 && dilation[1] >= 1 &&
                  padding[0] >= 0 && padding[1] >= 0 && output_padding[0] >= 0 &&
                  output_padding[1] >= 0,
              op, ": stride and dilation must be >= 1, padding and output_padding >= 0");
  for (int64_t v : {x.size(1), x.size(2), x.size(3), w.size(1) * groups, w.size(2),
                    w.size(3), stride[0], stride[1], padding[0], padding[1], output_padding[0],
                    output_padding[1], dilation[0], dilation[1]}) {
    to_int(op, "a size or argument", v);
  }
  // depth indices over (channel, tap) are decoded in 32 bits
  to_int(op, "channels x kernel taps",
         std::max(x.size(1), w.size(1) * groups) * w.size(2) * w.size(3));
  const int64_t out_h = kernels::conv_transpose_output_size(x.size(2), w.size(2), stride[0],
                                                            padding[0], output_padding[0],
                                                            dilation[0]);
  const int64_t out_w = kernels::conv_transpose_output_size(x.size(3), w.size(3), stride[1],
                                                            padding[1], output_padding[1],
                                                            dilation[1]);
  TORCH_CHECK(out_h >= 1 && out_w >= 1, op, ": padding ", padding, " leaves no output pixels");
  to_int(op, "output height", out_h);
  to_int(op, "output width", out_w);
  // pixels within an image are decoded in 32 bits
  to_int(op, "pixels per output image", out_h * out_w);
  return kernels::conv_transpose2d_geometry(x.sizes().data(), w.sizes().data(), stride.data(),
                                            padding.data(), output_padding.data(), groups,
                                            dilation.data());
}

template <typename T>
struct ConvTranspose2dProblems {
  static constexpr auto forward = kernels::conv_transpose2d_forward_problem<T>;
  static constexpr auto input_grad = kernels::conv_transpose2d_input_grad_problem<T>;
  static constexpr auto weight_grad = kernels::conv_transpose2d_weight_grad_problem<T>;
};

std::vector<int64_t> output_shape(const kernels::ConvGeometry& geo) {
  return {geo.batch, geo.big_c, geo.big_h, geo.big_w};
}

Pair conv_transpose2d_forward(const at::Tensor& x_lo, const at::Tensor& x_hi,
                              const at::Tensor& w_lo, const at::Tensor& w_hi,
                              const std::optional<at::Tensor>& b_lo,
                              const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef output_padding,
                              int64_t groups, at::IntArrayRef dilation, bool input_nonneg) {
  constexpr const char* op = "interval_conv_transpose2d";
  const c10::cuda::CUDAGuard guard(x_lo.device());
  check_operands(op, {{"x_lo", &x_lo}, {"x_hi", &x_hi}, {"w_lo", &w_lo}, {"w_hi", &w_hi}});
  const kernels::ConvGeometry geo =
      checked_geometry(op, x_lo, w_lo, stride, padding, output_padding, groups, dilation);
  return conv_forward<ConvTranspose2dProblems>(
      op, library::Map::conv_transpose2d(stride, padding, output_padding, groups, dilation), geo,
      output_shape(geo), x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, input_nonneg);
}

// interval_conv_transpose2d_backward_input (kWeight false) and _backward_weight (true).
template <bool kWeight>
Pair conv_transpose2d_backward(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                               const at::Tensor& x_lo, const at::Tensor& x_hi,
                               const at::Tensor& w_lo, const at::Tensor& w_hi,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef output_padding, int64_t groups,
                               at::IntArrayRef dilation, bool input_nonneg) {
  constexpr const char* op = kWeight ? "interval_conv_transpose2d_backward_weight"
                                     : "interval_conv_transpose2d_backward_input";
  const c10::cuda::CUDAGuard guard(x_lo.device());
  check_operands(op, {{"grad_lo", &grad_lo}, {"grad_hi", &grad_hi}, {"x_lo", &x_lo},
                      {"x_hi", &x_hi}, {"w_lo", &w_lo}, {"w_hi", &w_hi}});
  const kernels::ConvGeometry geo =
      checked_geometry(op, x_lo, w_lo, stride, padding, output_padding, groups, dilation);
  return conv_backward<ConvTranspose2dProblems, kWeight>(
      op, library::Map::conv_transpose2d(stride, padding, output_padding, groups, dilation), geo,
      output_shape(geo), grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi, input_nonneg);
}

const BackendOps registered("cuda", {"interval_conv_transpose2d",
                                     "interval_conv_transpose2d_backward_input",
                                     "interval_conv_transpose2d_backward_weight"});

}  // namespace
}  // namespace inn::gpu

TORCH_LIBRARY_IMPL(inn_cuda, CUDA, m) {
  m.impl("interval_conv_transpose2d", &inn::gpu::conv_transpose2d_forward);
  m.impl("interval_conv_transpose2d_backward_input",
         &inn::gpu::conv_transpose2d_backward<false>);
  m.impl("interval_conv_transpose2d_backward_weight", &inn::gpu::conv_transpose2d_backward<true>);
}
