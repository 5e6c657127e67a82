// CUDA launchers of the interval conv2d ops (NCHW; operands made contiguous; arguments checked by
// op_checks.h): conv2d is the "big = x, small = y" case of the shared convolution index maps in
// csrc/kernels/conv_problems.cuh.
#include <torch/library.h>

#include "../backend_registry.h"
#include "conv_launch.cuh"

namespace inn::gpu {
namespace {

template <typename T>
struct Conv2dProblems {
  static constexpr auto forward = kernels::conv2d_forward_problem<T>;
  static constexpr auto input_grad = kernels::conv2d_input_grad_problem<T>;
  static constexpr auto weight_grad = kernels::conv2d_weight_grad_problem<T>;
};

Pair conv2d_forward(const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                    const at::Tensor& w_hi, const std::optional<at::Tensor>& b_lo,
                    const std::optional<at::Tensor>& b_hi, at::IntArrayRef stride,
                    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                    bool input_nonneg) {
  constexpr const char* op = "interval_conv2d";
  const ConvGeometry geo =
      check_conv2d(op, x_lo, x_hi, w_lo, w_hi, b_lo, b_hi, stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(x_lo.device());
  return conv_forward<Conv2dProblems>(op, library::Map::conv2d(stride, padding, dilation, groups),
                                      geo, conv2d_output_shape(geo), x_lo, x_hi, w_lo, w_hi,
                                      b_lo, b_hi, input_nonneg);
}

// interval_conv2d_backward_input (kWeight false) and interval_conv2d_backward_weight (true).
template <bool kWeight>
Pair conv2d_backward(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                     const at::Tensor& x_lo, const at::Tensor& x_hi, const at::Tensor& w_lo,
                     const at::Tensor& w_hi, at::IntArrayRef stride, at::IntArrayRef padding,
                     at::IntArrayRef dilation, int64_t groups, bool input_nonneg) {
  constexpr const char* op =
      kWeight ? "interval_conv2d_backward_weight" : "interval_conv2d_backward_input";
  const ConvGeometry geo = check_conv2d_backward(op, grad_lo, grad_hi, x_lo, x_hi, w_lo, w_hi,
                                                 stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(x_lo.device());
  return conv_backward<Conv2dProblems, kWeight>(
      op, library::Map::conv2d(stride, padding, dilation, groups), geo, grad_lo, grad_hi,
      x_lo, x_hi, w_lo, w_hi, input_nonneg);
}

// interval_conv2d_backward_weight_point: dw_lo + dw_hi of the point weight w.
at::Tensor conv2d_backward_weight_point(const at::Tensor& grad_lo, const at::Tensor& grad_hi,
                                        const at::Tensor& x_lo, const at::Tensor& x_hi,
                                        const at::Tensor& w, at::IntArrayRef stride,
                                        at::IntArrayRef padding, at::IntArrayRef dilation,
                                        int64_t groups, bool input_nonneg) {
  constexpr const char* op = "interval_conv2d_backward_weight_point";
  const ConvGeometry geo = check_conv2d_backward(kConv2dPointChecks, grad_lo, grad_hi, x_lo,
                                                 x_hi, w, w, stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(x_lo.device());
  return conv_backward_weight_point<Conv2dProblems>(
      op, library::Map::conv2d(stride, padding, dilation, groups), geo, grad_lo, grad_hi, x_lo,
      x_hi, w, input_nonneg);
}

const BackendOps registered("cuda", {"interval_conv2d", "interval_conv2d_backward_input",
                                     "interval_conv2d_backward_weight",
                                     "interval_conv2d_backward_weight_point"});

}  // namespace
}  // namespace inn::gpu

TORCH_LIBRARY_IMPL(inn_cuda, CUDA, m) {
  m.impl("interval_conv2d", &inn::gpu::conv2d_forward);
  m.impl("interval_conv2d_backward_input", &inn::gpu::conv2d_backward<false>);
  m.impl("interval_conv2d_backward_weight", &inn::gpu::conv2d_backward<true>);
  m.impl("interval_conv2d_backward_weight_point", &inn::gpu::conv2d_backward_weight_point);
}
